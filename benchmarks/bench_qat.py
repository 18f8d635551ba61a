"""QAT benchmark: LeNet on Fashion-MNIST, float vs W8A8 QAT vs W4A4 / W2A2 fine-tuned.

Pipeline: float pre-training (``--float-epochs``), then W8A8 QAT from the float weights
(``--qat-epochs``), then W4A4 and W2A2 (uniform over all layers, no first/last exception),
each fine-tuned from the W8A8 weights for ``--qat-epochs``. Reports test top-1 accuracy and the
wall time per training epoch (2 threads), prints a table and writes JSON.

    .venv/bin/python benchmarks/bench_qat.py --json bench_qat.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="lenet")
    parser.add_argument("--dataset", default="fashion_mnist")
    parser.add_argument("--float-epochs", type=float, default=6)
    parser.add_argument("--qat-epochs", type=float, default=1)
    parser.add_argument("--limit", type=int, default=None, help="training images (default all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=Path("bench_qat.json"))
    parser.add_argument("--progress", action="store_true")
    args = parser.parse_args(argv)

    import torch

    from cimc.models import build, num_layers
    from cimc.training import evaluate, finetune, quantize_from_float, train

    common = {"limit": args.limit, "seed": args.seed, "progress": args.progress}
    rows: list[dict] = []

    def record(mode: str, model, stats: dict, started: float) -> None:
        acc = evaluate(model, args.dataset, "test")
        rows.append({"mode": mode, "test_accuracy": round(acc, 2),
                     "epoch_seconds": round(stats["epoch_seconds"], 2),
                     "total_seconds": round(time.perf_counter() - started, 1)})
        print(f"  {mode:<6} {acc:6.2f} %  {stats['epoch_seconds']:6.1f} s/epoch", flush=True)

    t0 = time.perf_counter()
    fmodel = build(args.model, seed=args.seed, quant=False)
    stats = train(fmodel, args.dataset, epochs=args.float_epochs, lr=2e-3, **common)
    record("float", fmodel, stats, t0)

    t0 = time.perf_counter()
    q8 = quantize_from_float(args.model, fmodel.state_dict(), seed=args.seed)
    stats = train(q8, args.dataset, epochs=args.qat_epochs, lr=5e-4, **common)
    record("W8A8", q8, stats, t0)

    layers = num_layers(args.model)
    for bits in (4, 2):
        t0 = time.perf_counter()
        policy = np.full((layers, 2), bits)
        model = finetune(args.model, policy, q8.state_dict(), args.dataset,
                         epochs=args.qat_epochs, lr=5e-4, **common)
        # finetune() does not report timings; time a second model for one epoch's share
        record(f"W{bits}A{bits}", model, {"epoch_seconds": (time.perf_counter() - t0)
                                         / args.qat_epochs}, t0)

    table = ["| mode | test top-1 % | s / epoch |", "|---|---|---|"]
    table += [f"| {r['mode']} | {r['test_accuracy']:.2f} | {r['epoch_seconds']:.1f} |" for r in rows]
    print("\n".join(table))
    result = {
        "model": args.model, "dataset": args.dataset, "float_epochs": args.float_epochs,
        "qat_epochs": args.qat_epochs, "limit": args.limit, "seed": args.seed,
        "threads": torch.get_num_threads(), "machine": platform.machine(), "results": rows,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
