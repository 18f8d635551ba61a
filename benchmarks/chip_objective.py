"""``--objective chip`` against the default ``latency`` objective, judged on the chip.

Reads ``cimc-rl search`` folders named ``OBJECTIVE-sSEED`` under ``--runs`` (searches of the
same model and checkpoint with ``--objective chip`` and ``--objective latency``, the same
``--hw-set``), and prints per search the best-reward policy's speedup over W8A8 twice: in the
paper's latency (single array) and in the chip's time per inference on ``--hw-set``; then the
means per objective. ``--json`` keeps the table. How the committed result was made::

    for s in 0 1 2; do for obj in chip latency; do
      cimc-rl search --model lenet --dataset fashion_mnist --ckpt lenet_w8a8/model.pt --seed $s \\
        --episodes 300 --warmup 30 --acc-drop 1 --no-first-last --eval-limit 2000 --train-limit 60000 \\
        --hw-set arrays=16 --objective $obj --no-export --no-uniform --out runs/chip/$obj-s$s
    done; done
    .venv/bin/python benchmarks/chip_objective.py --runs runs/chip --hw-set arrays=16 --json table.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=Path, default=Path("runs/chip"))
    ap.add_argument("--hw-set", default="arrays=16")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    from cimc.loaders import load_hardware
    from cimc.rl.compiler_cost import CompilerCost
    from cimc.target.energy import energy_model, load_preset

    hw = load_hardware(None, args.hw_set)
    rows = []
    costs: dict[str, CompilerCost] = {}
    for d in sorted(args.runs.glob("*-s*")):
        objective, seed = d.name.rsplit("-s", 1)
        summary = json.loads((d / "summary.json").read_text())
        model = summary["model"]
        if model not in costs:
            costs[model] = CompilerCost(model, hw, energy=energy_model(load_preset(None), hw), objective="chip")
        cost = costs[model]
        policy = np.asarray(summary["best_policy"], dtype=np.int64)
        rows.append({"objective": objective, "seed": int(seed), "policy": summary["best_policy"],
                     "accuracy": summary["best_accuracy"], "acc_8bit": summary["acc_8bit"],
                     "paper_speedup": cost.baseline_latency() / cost.latency(policy),
                     "chip_speedup": cost.baseline_value() / cost.value(policy),
                     "chip_us": cost.value(policy), "baseline_chip_us": cost.baseline_value()})
    print(f"best-reward policy of each search; chip: {args.hw_set}")
    print(f"{'objective':10s} {'seed':>4s} {'val %':>6s} {'paper':>7s} {'chip':>7s}  policy (w, a)")
    for r in rows:
        print(f"{r['objective']:10s} {r['seed']:4d} {r['accuracy']:6.2f} {r['paper_speedup']:6.3f}x "
              f"{r['chip_speedup']:6.3f}x  {r['policy']}")
    means = {}
    for objective in sorted({r["objective"] for r in rows}):
        mine = [r for r in rows if r["objective"] == objective]
        means[objective] = {k: float(np.mean([r[k] for r in mine])) for k in ("paper_speedup", "chip_speedup")}
        print(f"{objective + ' mean':15s} {'':6s} {means[objective]['paper_speedup']:6.3f}x "
              f"{means[objective]['chip_speedup']:6.3f}x")
    if args.json:
        args.json.write_text(json.dumps({"hw_set": args.hw_set, "rows": rows, "means": means}, indent=1) + "\n")


if __name__ == "__main__":
    main()
