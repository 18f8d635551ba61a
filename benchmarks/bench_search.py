"""cimc's DDPG against random search and Stable-Baselines3's TD3, at equal episodes, over seeds.

Every method runs the same search (same model, constraints, cost, accuracy evaluator and reward:
CIM-AQ's, with an allowed top-1 drop of ``--acc-drop`` points below the W8A8 accuracy) for
``--episodes`` episodes per seed; DDPG and random search share their warm-up episodes (the same
uniform random actions for one seed). The cost is the compiler's (the latency of the compiled
xbar program, cached per layer and bits, prefilled once); the accuracy is the episode evaluator
of ``cimc-rl search`` (8-bit QAT weights at the policy, BatchNorm re-estimated on
``--calib-images`` training images, ``--finetune-steps`` of fine-tuning, top-1 on the first
``--eval-limit`` validation images).

Printed: per method and seed the best reward, its speedup over W8A8 and validation accuracy, the
episode it was found in, and the time per episode split into accuracy / cost / agent; the mean
over seeds; the uniform policies (every W{w}A{a} the search can choose, first/last at 8/8) with
the best that meets the accuracy target. Written: ``--json`` (every number, per-episode curves)
and ``--png`` (best-so-far reward and best-so-far speedup at the target against the episode,
mean and min-max range over seeds). Runs are resumable: a finished or checkpointed run in
``--out`` is continued, not repeated.

Usage (the deep model; hours of CPU, run it niced)::

    nice -n 10 .venv/bin/python benchmarks/bench_search.py --model resnet20 \\
        --ckpt runs/resnet20_w8a8/model.pt --episodes 300 --out runs/bench_search \\
        --json benchmarks/results/search_resnet20.json --png benchmarks/results/search_resnet20.png
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="resnet20")
    ap.add_argument("--dataset", default="fashion_mnist")
    ap.add_argument("--ckpt", required=True, help="8-bit QAT checkpoint of the model.")
    ap.add_argument("--episodes", type=int, default=300)
    ap.add_argument("--warmup", type=int, default=30)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--methods", nargs="*", default=["ddpg", "random", "td3"])
    ap.add_argument("--acc-drop", type=float, default=1.0)
    ap.add_argument("--finetune-steps", type=int, default=0)
    ap.add_argument("--calib-images", type=int, default=512)
    ap.add_argument("--eval-limit", type=int, default=2000)
    ap.add_argument("--train-limit", type=int, default=20000)
    ap.add_argument("--ddpg", default=None, help="JSON object of DDPG settings (default cimc's).")
    ap.add_argument("--out", default="runs/bench_search")
    ap.add_argument("--json", default=None)
    ap.add_argument("--png", default=None)
    ap.add_argument("--uniform-json", default=None,
                    help="Uniform baselines: read from this JSON if it exists, else computed and written "
                         "there (with --methods and no method: only the baselines, in a parallel process).")
    return ap.parse_args()


def run_one(args, method: str, seed: int, spec, cost, evaluator, out: Path) -> dict[str, Any]:
    from cimc.rl.env import SearchConfig
    from cimc.rl.search import read_episodes, run_search, time_split

    cfg = SearchConfig(episodes=args.episodes, warmup=args.warmup, seed=seed, method=method,
                       allowed_drop=args.acc_drop, cell_bits=4)
    if args.ddpg:
        for key, value in json.loads(args.ddpg).items():
            setattr(cfg.ddpg, key, value)
    run_dir = out / f"{method}-s{seed}"
    done = run_dir / "episodes.jsonl"
    if method == "td3" and run_dir.exists() and len(read_episodes(done) if done.exists() else []) < args.episodes:
        shutil.rmtree(run_dir)  # SB3's state is not resumable: an unfinished TD3 run starts again
    if method == "td3" and done.exists():
        recs = read_episodes(done)
    else:
        t = time.perf_counter()
        run_search(cfg, spec, cost, evaluator, run_dir, resume=True, progress=False)
        print(f"  {method} seed {seed}: {time.perf_counter() - t:.0f} s", flush=True)
        recs = read_episodes(done)
    acc8 = json.loads((run_dir / "best_policy.json").read_text())["acc_8bit"]
    target = acc8 - args.acc_drop
    rewards = np.array([r["reward"] for r in recs])
    feasible = np.array([r["speedup"] if r["accuracy"] >= target else 1.0 for r in recs])
    best = recs[int(np.argmax(rewards))]
    return {"method": method, "seed": seed, "reward": best["reward"], "speedup": best["speedup"],
            "accuracy": best["accuracy"], "episode": best["episode"], "policy": best["policy"],
            "acc_8bit": acc8, "meets_target": best["accuracy"] >= target,
            "evaluated": sum(not r["acc_cached"] for r in recs),
            "post_warmup_mean_reward": float(rewards[args.warmup:].mean()),
            "time": time_split(recs),
            "curve_reward": np.maximum.accumulate(rewards).tolist(),
            "curve_speedup": np.maximum.accumulate(feasible).tolist()}


def uniform_rows(args, spec, cost, evaluator, acc8: float | None) -> list[dict[str, Any]]:
    from cimc.rl.baselines import uniform_policies
    from cimc.rl.costs import search_bit_pairs
    from cimc.rl.env import SearchConfig

    if args.uniform_json and Path(args.uniform_json).exists():
        return json.loads(Path(args.uniform_json).read_text())["uniform"]
    cfg = SearchConfig(allowed_drop=args.acc_drop, cell_bits=4)
    rows = uniform_policies(cfg, spec, cost, evaluator, bits=search_bit_pairs(cfg), acc_8bit=acc8)
    if acc8 is None:  # the W8A8 row's accuracy (the same evaluator gives the search's acc_8bit)
        acc8 = next(u.accuracy for u in rows if u.label == "W8A8")
    uni = [{**u.to_dict(), "meets_target": u.accuracy >= acc8 - args.acc_drop} for u in rows]
    if args.uniform_json:
        Path(args.uniform_json).write_text(json.dumps({"acc_8bit": acc8, "uniform": uni}, indent=1) + "\n")
    return uni


def print_tables(rows: list[dict], uni: list[dict], args) -> None:
    head = (f"{'method':8s}{'seed':>5s}{'reward':>9s}{'speedup':>9s}{'val %':>8s}{'best ep':>8s}"
            f"{'evals':>7s}{'acc s/ep':>9s}{'cost s/ep':>10s}{'agent s/ep':>11s}{'wall s/ep':>10s}")
    print(f"\n{args.model}: {args.episodes} episodes (warm-up {args.warmup}), allowed drop "
          f"{args.acc_drop}, W8A8 val {rows[0]['acc_8bit']:.2f} %")
    print(head + "\n" + "-" * len(head))
    for r in rows:
        t = r["time"]
        print(f"{r['method']:8s}{r['seed']:5d}{r['reward']:9.2f}{r['speedup']:8.2f}x{r['accuracy']:8.2f}"
              f"{r['episode']:8d}{r['evaluated']:7d}{t['accuracy_s']:9.3f}{t['cost_s']:10.4f}"
              f"{t['agent_s']:11.3f}{t['wall_s']:10.3f}")
    for method in args.methods:
        sel = [r for r in rows if r["method"] == method]
        if sel:
            mean = {k: statistics.fmean(r[k] for r in sel) for k in ("reward", "speedup", "accuracy")}
            wall = statistics.fmean(r["time"]["wall_s"] for r in sel)
            print(f"{method + ' mean':13s}{mean['reward']:9.2f}{mean['speedup']:8.2f}x{mean['accuracy']:8.2f}"
                  f"{'':15s}{'':30s}{wall:21.3f}  -> 600 episodes in {600 * wall / 60:.0f} min")
    print("\nuniform policies (first/last at 8/8):")
    for u in uni:
        print(f"  {u['label']:6s} {u['speedup']:5.2f}x  val {u['accuracy']:6.2f} %  reward {u['reward']:8.2f}"
              f"{'  meets the target' if u['meets_target'] else ''}")


def plot(rows: list[dict], args, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), constrained_layout=True)
    for ax, key, label in ((axes[0], "curve_reward", "best reward so far"),
                           (axes[1], "curve_speedup", f"best speedup so far at <= {args.acc_drop:g} pt drop")):
        for method in args.methods:
            curves = np.array([r[key] for r in rows if r["method"] == method])
            if not len(curves):
                continue
            x = np.arange(1, curves.shape[1] + 1)
            line, = ax.plot(x, curves.mean(axis=0), label=f"{method} (mean of {len(curves)} seeds)")
            ax.fill_between(x, curves.min(axis=0), curves.max(axis=0), color=line.get_color(), alpha=0.2)
        ax.axvline(args.warmup, color="grey", lw=0.8, ls=":")
        ax.set_xlabel("episode")
        ax.set_ylabel(label)
        ax.legend(loc="lower right")
    fig.suptitle(f"{args.model}: best so far, mean and range over seeds {args.seeds}")
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    args = parse_args()
    import torch

    from cimc.target.hw import Hardware
    from cimc.rl.accuracy import EvalSettings, PolicyEvaluator
    from cimc.rl.compiler_cost import CompilerCost
    from cimc.rl.costs import prefill
    from cimc.rl.env import SearchConfig
    from cimc.rl.search import EnvSpec
    from cimc.rl.search_model import describe_model

    torch.set_num_threads(1)
    out = Path(args.out)
    infos, _ = describe_model(args.model)
    spec = EnvSpec(tuple(infos), model=args.model, dataset=args.dataset)
    state = torch.load(args.ckpt, map_location="cpu", weights_only=True)
    evaluator = PolicyEvaluator(args.model, args.dataset, state, EvalSettings(
        finetune_steps=args.finetune_steps, calib_images=args.calib_images, eval_limit=args.eval_limit,
        train_limit=args.train_limit))
    t = time.perf_counter()
    cost = CompilerCost(args.model, Hardware())
    prefill(cost, len(infos), SearchConfig(cell_bits=4))
    print(f"compiler cost prefilled: {cost.compiles} compiles in {time.perf_counter() - t:.0f} s", flush=True)

    rows: list[dict] = []
    uni: list[dict] = []

    def dump() -> None:
        if args.json:
            Path(args.json).write_text(json.dumps({"args": vars(args), "rows": rows, "uniform": uni},
                                                  indent=1) + "\n")

    for seed in args.seeds:
        for method in args.methods:
            rows.append(run_one(args, method, seed, spec, cost, evaluator, out))
            r = rows[-1]
            print(f"{method:6s} seed {seed}: R {r['reward']:8.2f}  {r['speedup']:5.2f}x  val "
                  f"{r['accuracy']:6.2f} %  (ep {r['episode']}, {r['time']['wall_s']:.2f} s/ep)", flush=True)
            dump()
    uni = uniform_rows(args, spec, cost, evaluator, rows[0]["acc_8bit"] if rows else None)
    dump()
    if rows:
        print_tables(rows, uni, args)
    if args.png:
        plot(rows, args, args.png)


if __name__ == "__main__":
    main()
