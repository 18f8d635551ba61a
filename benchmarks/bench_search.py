"""DDPG against random search at the same number of episodes, over several seeds.

The cost is the compiler's by default (``--cost compiler``: :class:`cimc.rl.compiler_cost.CompilerCost`,
the latency read off the compiled xbar program of the policy, cached per ``(layer, w, a)``; a fresh
cost model per run so every run pays its own compiles), or ``--cost closed-form`` (cimc.target.cost).

Two accuracy sources:

* ``--accuracy real`` (default): the real inner loop (rebuild, 8-bit QAT weights,
  ``--finetune-steps`` of fine-tuning, top-1 on ``--eval-limit`` validation images of
  ``--dataset``). Without ``--ckpt`` a float model is trained for ``--pretrain-epochs`` and
  quantisation-aware trained to W8A8 first. After each search the best policy gets a short final
  fine-tune (``--final-steps``) and its top-1 on the full test split is reported;
* ``--accuracy synthetic`` (seconds): ``acc = 90 - sum over layers and operands of
  0.05 * (8 - b) + 1.5 * max(0, 4 - b)^2``, which tests the plumbing and the agent's ability to
  trade cost against a steep accuracy cliff.

Printed: per method and seed the best reward, speedup over W8A8, validation accuracy during the
search, test accuracy after the final fine-tune, and the time per episode split into
fine-tune/evaluate (``accuracy_s``), cost (``cost_s``, with the number of compiles) and agent;
the mean reward of the episodes after the warm-up (``mean R>wu``: does the agent learn, even when
the best policy was met during the warm-up?); then the mean over seeds and the uniform
W8A8/W6A6/W4A4/W2A2 policies under the same cost and accuracy. DDPG and random search share the
warm-up's random actions for one seed, so a best policy found in the warm-up is the same for both.

Usage: ``.venv/bin/python benchmarks/bench_search.py --model lenet --ckpt CKPT --episodes 100
--warmup 15 --no-first-last --json benchmarks/results/search_lenet.json``
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


def make_cost(kind: str, model: str, descs: list, hw):
    """A fresh cost model (the compiler's has an empty cache)."""
    from cimc.rl.search_cli import make_cost_model

    return make_cost_model(kind, model, descs, hw)


def run_one(args: argparse.Namespace, method: str, seed: int, spec, descs, hw, acc_fn, acc8, out: Path,
            state) -> dict:
    """One search; with real accuracy also the final fine-tune and test accuracy of its best."""
    from cimc.rl.env import SearchConfig
    from cimc.rl.search import read_episodes, run_search

    cfg = SearchConfig(episodes=args.episodes, warmup=args.warmup, seed=seed, method=method,
                       allowed_drop=args.acc_drop, acc_8bit=acc8, cell_bits=hw.cell_bits,
                       first_last_8bit=not args.no_first_last)
    cost = make_cost(args.cost, args.model, descs, hw)
    t = time.perf_counter()
    res = run_search(cfg, spec, cost, acc_fn, out / f"{method}-s{seed}", progress=False)
    wall = time.perf_counter() - t
    recs = read_episodes(out / f"{method}-s{seed}" / "episodes.jsonl")
    mean = {k: statistics.fmean(r["time"][k] for r in recs) for k in ("accuracy_s", "cost_s", "agent_s")}
    post = [r["reward"] for r in recs if r["episode"] >= args.warmup]
    row = {"method": method, "seed": seed, "reward": res.best_reward, "speedup": res.best_speedup,
           "post_warmup_mean_reward": statistics.fmean(post) if post else None,
           "val_accuracy": res.best_accuracy, "acc_8bit": res.acc_8bit, "episode": res.best_episode,
           "wall_s": wall, **mean, "compiles": getattr(cost, "compiles", None),
           "compile_s": getattr(cost, "compile_seconds", None), "policy": res.best_policy.tolist(),
           "test_accuracy": None, "final_s": None}
    if state is not None and args.final_steps > 0:
        from cimc.rl.search_cli import final_qat

        t = time.perf_counter()
        _, row["test_accuracy"] = final_qat(args.model, res.best_policy, state, dataset=args.dataset,
                                            steps=args.final_steps, train_limit=args.train_limit,
                                            seed=seed)
        row["final_s"] = time.perf_counter() - t
    return row


def _fmt(v, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def print_table(rows: list[dict], args: argparse.Namespace, acc8: float) -> None:
    print(f"\n{args.model} / {args.dataset} / {args.accuracy} accuracy / {args.cost} cost, "
          f"{args.episodes} episodes (warm-up {args.warmup}), acc_8bit (val) {acc8:.2f} %, allowed drop "
          f"{args.acc_drop}, first/last 8/8 {'off' if args.no_first_last else 'on'}, "
          f"{args.finetune_steps} fine-tune steps/episode, final fine-tune {args.final_steps} steps")
    head = (f"{'method':8s}{'seed':>5s}{'reward':>9s}{'speedup':>9s}{'val %':>8s}{'test %':>8s}"
            f"{'best ep':>8s}{'ft+eval s/ep':>13s}{'cost s/ep':>10s}{'agent s/ep':>11s}"
            f"{'compiles':>9s}{'wall s':>8s}{'mean R>wu':>10s}")
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['method']:8s}{r['seed']:5d}{r['reward']:9.2f}{r['speedup']:8.2f}x"
              f"{r['val_accuracy']:8.2f}{_fmt(r['test_accuracy'], '8.2f'):>8s}{r['episode']:8d}"
              f"{r['accuracy_s']:13.3f}{r['cost_s']:10.3f}{r['agent_s']:11.3f}"
              f"{_fmt(r['compiles'], 'd'):>9s}{r['wall_s']:8.0f}"
              f"{_fmt(r['post_warmup_mean_reward'], '10.1f'):>10s}")
    for method in ("ddpg", "random"):
        sel = [r for r in rows if r["method"] == method]
        if not sel:
            continue
        tests = [r["test_accuracy"] for r in sel if r["test_accuracy"] is not None]
        print(f"{method + ' mean':13s}{statistics.fmean(r['reward'] for r in sel):9.2f}"
              f"{statistics.fmean(r['speedup'] for r in sel):8.2f}x"
              f"{statistics.fmean(r['val_accuracy'] for r in sel):8.2f}"
              f"{_fmt(statistics.fmean(tests) if tests else None, '8.2f'):>8s}{'':8s}"
              f"{statistics.fmean(r['accuracy_s'] for r in sel):13.3f}"
              f"{statistics.fmean(r['cost_s'] for r in sel):10.3f}"
              f"{statistics.fmean(r['agent_s'] for r in sel):11.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="lenet")
    ap.add_argument("--dataset", default="fashion_mnist")
    ap.add_argument("--accuracy", choices=("synthetic", "real"), default="real")
    ap.add_argument("--cost", choices=("compiler", "closed-form"), default="compiler")
    ap.add_argument("--episodes", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=15)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--methods", nargs="+", default=["ddpg", "random"])
    ap.add_argument("--acc-drop", type=float, default=1.0)
    ap.add_argument("--ckpt", default=None)
    ap.add_argument("--finetune-steps", type=int, default=30)
    ap.add_argument("--final-steps", type=int, default=200,
                    help="Final fine-tune steps of each best policy before the test accuracy (0: none).")
    ap.add_argument("--train-limit", type=int, default=20000)
    ap.add_argument("--eval-limit", type=int, default=2000)
    ap.add_argument("--pretrain-epochs", type=float, default=2.0)
    ap.add_argument("--no-first-last", action="store_true",
                    help="Let the first and last layers be searched too (on in the paper's runs).")
    ap.add_argument("--out", default="/tmp/cimc_bench_search")
    ap.add_argument("--json", default=None, help="Also write the rows as JSON here (after every run).")
    ap.add_argument("--threads", type=int, default=None,
                    help="Torch threads for fine-tuning (default cimc.training's 2; 1 on a busy machine).")
    args = ap.parse_args()
    if args.threads is not None:
        import torch

        import cimc.training

        cimc.training.NUM_THREADS = args.threads
        torch.set_num_threads(args.threads)

    from cimc.target.hw import Hardware
    from cimc.rl.baselines import uniform_policies
    from cimc.rl.env import SearchConfig
    from cimc.rl.search import EnvSpec
    from cimc.rl.search_cli import describe_model, make_accuracy_fn

    out = Path(args.out) / f"{args.model}-{args.accuracy}-{int(time.time())}"
    out.mkdir(parents=True, exist_ok=True)
    hw = Hardware()
    infos, descs = describe_model(args.model)
    spec = EnvSpec(tuple(infos), model=args.model, dataset=args.dataset)
    state = None
    if args.accuracy == "real":
        import torch

        ckpt = ensure_checkpoint(args, out)
        state = torch.load(ckpt, map_location="cpu", weights_only=True)
        acc_fn = make_accuracy_fn(args.model, args.dataset, state, finetune_steps=args.finetune_steps,
                                  train_limit=args.train_limit, eval_limit=args.eval_limit)
    else:
        acc_fn = synthetic_accuracy

    def dump(rows: list[dict], uni: list | None = None) -> None:
        if args.json:
            Path(args.json).write_text(json.dumps(
                {"rows": rows, "uniform": [u.to_dict() for u in uni or []], "acc_8bit": acc8,
                 "hw": hw.to_dict(), "args": vars(args)}, indent=1))

    rows: list[dict] = []
    acc8 = None
    for seed in args.seeds:
        for method in args.methods:
            row = run_one(args, method, seed, spec, descs, hw, acc_fn, acc8, out, state)
            acc8 = row["acc_8bit"]  # measure the W8A8 reference once
            rows.append(row)
            dump(rows)
            print(f"{method:6s} seed {seed}: R {row['reward']:8.2f}  {row['speedup']:5.2f}x  "
                  f"val {row['val_accuracy']:6.2f} %  test {_fmt(row['test_accuracy'], '6.2f')} %  "
                  f"(ep {row['episode']}, {row['wall_s']:.0f} s, {row['compiles']} compiles)", flush=True)

    assert acc8 is not None
    print_table(rows, args, acc8)
    cfg = SearchConfig(allowed_drop=args.acc_drop, first_last_8bit=not args.no_first_last,
                       cell_bits=hw.cell_bits)
    uni = uniform_policies(cfg, spec, make_cost(args.cost, args.model, descs, hw), acc_fn, acc_8bit=acc8)
    print("\nuniform policies" + ("" if args.no_first_last else " (first/last at 8/8)") + ":")
    for u in uni:
        print(f"  {u.label:5s} {u.speedup:5.2f}x  val {u.accuracy:6.2f} %  reward {u.reward:8.2f}")
    dump(rows, uni)


if __name__ == "__main__":
    main()
