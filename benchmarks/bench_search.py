"""DDPG against random search at the same number of episodes, over several seeds.

Two accuracy sources:

* ``--accuracy synthetic`` (default; seconds): the real layer shapes and closed-form cost of the
  model, with ``acc = 90 - sum over layers and operands of 0.05 * (8 - b) + 1.5 * max(0, 4 - b)^2``,
  which tests the plumbing and the agent's ability to trade cost against a steep accuracy cliff;
* ``--accuracy real``: the real inner loop (rebuild, 8-bit QAT weights, ``--finetune-steps`` of
  fine-tuning, top-1 on ``--eval-limit`` validation images of ``--dataset``). Without ``--ckpt``
  a float model is trained for ``--pretrain-epochs`` and quantisation-aware trained to W8A8 first.

Printed: per method and seed the best reward, speedup and accuracy, and the time per episode split
into fine-tune/evaluate (``accuracy_s``), cost and agent; then the mean over seeds and the uniform
W8A8/W6A6/W4A4/W2A2 policies under the same cost and accuracy.

Usage: ``.venv/bin/python benchmarks/bench_search.py [--accuracy real] [--episodes 120] [--seeds 0 1 2]``
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np


def synthetic_accuracy(policy: np.ndarray) -> float:
    b = np.asarray(policy, dtype=np.float64)
    return float(90.0 - np.sum(0.05 * (8 - b) + 1.5 * np.maximum(0.0, 4 - b) ** 2))


def ensure_checkpoint(args: argparse.Namespace, out: Path) -> Path:
    """The 8-bit QAT checkpoint: ``--ckpt`` or a quick float pre-train + W8A8 QAT."""
    if args.ckpt is not None:
        return Path(args.ckpt)
    path = out / "qat8" / "model.pt"
    if path.exists():
        return path
    from cimc.models import build
    from cimc.training import quantize_from_float, save_checkpoint, train

    t = time.perf_counter()
    fmodel = build(args.model, quant=False, seed=0)
    train(fmodel, args.dataset, epochs=args.pretrain_epochs, lr=2e-3, limit=args.train_limit,
          progress=False)
    qmodel = quantize_from_float(args.model, fmodel.state_dict())
    train(qmodel, args.dataset, epochs=args.pretrain_epochs / 2, lr=5e-4, limit=args.train_limit,
          progress=False)
    save_checkpoint(path, qmodel, {"model": args.model, "float": False, "policy": None})
    print(f"pre-trained {args.model} (float + W8A8 QAT) in {time.perf_counter() - t:.0f} s -> {path}")
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="lenet")
    ap.add_argument("--dataset", default="fashion_mnist")
    ap.add_argument("--accuracy", choices=("synthetic", "real"), default="synthetic")
    ap.add_argument("--episodes", type=int, default=120)
    ap.add_argument("--warmup", type=int, default=30)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--acc-drop", type=float, default=1.0)
    ap.add_argument("--ckpt", default=None)
    ap.add_argument("--finetune-steps", type=int, default=30)
    ap.add_argument("--train-limit", type=int, default=20000)
    ap.add_argument("--eval-limit", type=int, default=2000)
    ap.add_argument("--pretrain-epochs", type=float, default=2.0)
    ap.add_argument("--no-first-last", action="store_true",
                    help="Let the first and last layers be searched too (off in the paper's runs).")
    ap.add_argument("--out", default="/tmp/cimc_bench_search")
    ap.add_argument("--json", default=None, help="Also write the rows as JSON here.")
    args = ap.parse_args()

    from cimc.hw import Hardware
    from cimc.rl.baselines import uniform_policies
    from cimc.rl.env import SearchConfig
    from cimc.rl.search import ClosedFormCost, EnvSpec, read_episodes, run_search
    from cimc.rl.search_cli import describe_model, make_accuracy_fn

    out = Path(args.out) / f"{args.model}-{args.accuracy}-{int(time.time())}"
    out.mkdir(parents=True, exist_ok=True)
    infos, descs = describe_model(args.model)
    spec = EnvSpec(tuple(infos), model=args.model, dataset=args.dataset)
    cost = ClosedFormCost(descs, Hardware())
    if args.accuracy == "real":
        import torch

        ckpt = ensure_checkpoint(args, out)
        state = torch.load(ckpt, map_location="cpu", weights_only=True)
        acc_fn = make_accuracy_fn(args.model, args.dataset, state, finetune_steps=args.finetune_steps,
                                  train_limit=args.train_limit, eval_limit=args.eval_limit)
    else:
        acc_fn = synthetic_accuracy

    rows = []
    acc8 = None
    for seed in args.seeds:
        for method in ("ddpg", "random"):
            cfg = SearchConfig(episodes=args.episodes, warmup=args.warmup, seed=seed, method=method,
                               allowed_drop=args.acc_drop, acc_8bit=acc8,
                               first_last_8bit=not args.no_first_last)
            t = time.perf_counter()
            res = run_search(cfg, spec, cost, acc_fn, out / f"{method}-s{seed}", progress=False)
            wall = time.perf_counter() - t
            acc8 = res.acc_8bit  # measure the W8A8 reference once
            recs = read_episodes(out / f"{method}-s{seed}" / "episodes.jsonl")
            mean = {k: statistics.fmean(r["time"][k] for r in recs) for k in ("accuracy_s", "cost_s", "agent_s")}
            rows.append({"method": method, "seed": seed, "reward": res.best_reward,
                         "speedup": res.best_speedup, "accuracy": res.best_accuracy,
                         "episode": res.best_episode, "wall_s": wall, **mean,
                         "policy": res.best_policy.tolist()})
            print(f"{method:6s} seed {seed}: R {res.best_reward:8.2f}  {res.best_speedup:5.2f}x  "
                  f"{res.best_accuracy:6.2f} %  (ep {res.best_episode}, {wall:.0f} s)", flush=True)

    print(f"\n{args.model} / {args.dataset} / {args.accuracy} accuracy, {args.episodes} episodes "
          f"(warm-up {args.warmup}), acc_8bit {acc8:.2f} %, allowed drop {args.acc_drop}, "
          f"first/last 8/8 {'off' if args.no_first_last else 'on'}")
    head = f"{'method':8s}{'seed':>5s}{'reward':>9s}{'speedup':>9s}{'top-1 %':>9s}{'best ep':>8s}" \
           f"{'acc s/ep':>10s}{'cost s/ep':>11s}{'agent s/ep':>11s}"
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['method']:8s}{r['seed']:5d}{r['reward']:9.2f}{r['speedup']:8.2f}x{r['accuracy']:9.2f}"
              f"{r['episode']:8d}{r['accuracy_s']:10.4f}{r['cost_s']:11.5f}{r['agent_s']:11.4f}")
    for method in ("ddpg", "random"):
        sel = [r for r in rows if r["method"] == method]
        print(f"{method + ' mean':13s}{statistics.fmean(r['reward'] for r in sel):9.2f}"
              f"{statistics.fmean(r['speedup'] for r in sel):8.2f}x"
              f"{statistics.fmean(r['accuracy'] for r in sel):9.2f}")
    cfg = SearchConfig(allowed_drop=args.acc_drop, first_last_8bit=not args.no_first_last)
    uni = uniform_policies(cfg, spec, cost, acc_fn, acc_8bit=acc8)
    print("\nuniform policies" + ("" if args.no_first_last else " (first/last at 8/8)") + ":")
    for u in uni:
        print(f"  {u.label:5s} {u.speedup:5.2f}x  {u.accuracy:6.2f} %  reward {u.reward:8.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "uniform": [u.to_dict() for u in uni],
                                               "acc_8bit": acc8, "args": vars(args)}, indent=1))


if __name__ == "__main__":
    main()
