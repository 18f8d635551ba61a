"""Ray workers against one process: the same search, K episodes per round, side by side.

Runs the same ``cimc-rl search`` episodes (model, checkpoint, evaluator and cost of the CLI) three
ways in one process: K = 1 in this process, K = ``--workers`` in this process (the sequential
run with the same rounds), and K = ``--workers`` on Ray workers (a local instance). The last two
give identical episodes (checked); the printout has their wall time per episode, the speed-up of
Ray over the sequential K run, and the per-episode split (accuracy on the workers; agent, cost and
the rest in the learner), from which the expected scaling with K follows:
``wall(K) ~ accuracy / K + learner`` per episode, as long as K <= cores.

Usage::

    .venv/bin/python benchmarks/bench_workers.py --model resnet20 --ckpt runs/resnet20_w8a8/model.pt \\
        --episodes 40 --workers 2
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="resnet20")
    ap.add_argument("--dataset", default="fashion_mnist")
    ap.add_argument("--ckpt", required=True)
    ap.add_argument("--episodes", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--method", default="ddpg")
    ap.add_argument("--calib-images", type=int, default=512)
    ap.add_argument("--eval-limit", type=int, default=2000)
    ap.add_argument("--out", default="runs/bench_workers")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    os.environ.setdefault("CIMC_THREADS", "1")

    import torch

    from cimc.rl.accuracy import EvalSettings, EvaluatorFactory
    from cimc.rl.compiler_cost import CompilerCost
    from cimc.rl.costs import prefill
    from cimc.rl.env import SearchConfig
    from cimc.rl.parallel import LocalExecutor, RayExecutor
    from cimc.rl.search import EnvSpec, read_episodes, run_search, time_split
    from cimc.rl.search_model import describe_model
    from cimc.target.hw import Hardware

    torch.set_num_threads(1)
    state = torch.load(args.ckpt, map_location="cpu", weights_only=True)
    factory = EvaluatorFactory(args.model, args.dataset, state,
                               EvalSettings(calib_images=args.calib_images, eval_limit=args.eval_limit))
    infos, _ = describe_model(args.model)
    spec = EnvSpec(tuple(infos), model=args.model)
    cost = CompilerCost(args.model, Hardware())
    prefill(cost, len(infos), SearchConfig(cell_bits=4))  # compiled once, before any timing
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    results = {}
    for name, k, ray in (("K=1 local", 1, False), (f"K={args.workers} local", args.workers, False),
                         (f"K={args.workers} Ray", args.workers, True)):
        cfg = SearchConfig(episodes=args.episodes, warmup=args.warmup, seed=0, method=args.method,
                           allowed_drop=1.0, cell_bits=4, workers=k)
        ex = RayExecutor(factory, k) if ray else LocalExecutor(factory(), k)
        t = time.perf_counter()
        try:
            run_search(cfg, spec, cost, None, out / name.replace(" ", "_"), progress=False, executor=ex)
        finally:
            ex.close()
        wall = time.perf_counter() - t
        recs = read_episodes(out / name.replace(" ", "_") / "episodes.jsonl")
        results[name] = {"wall_s": wall, "per_episode_s": wall / args.episodes, "split": time_split(recs),
                         "episodes": [{k2: v for k2, v in r.items() if k2 != "time"} for r in recs]}
        split = results[name]["split"]
        print(f"{name:12s} {wall:7.1f} s  {wall / args.episodes:6.2f} s/episode   accuracy "
              f"{split['accuracy_s']:.2f}  cost {split['cost_s']:.3f}  agent {split['agent_s']:.3f}  "
              f"(learner wall per episode {split['wall_s']:.2f})", flush=True)
    seq, par = results[f"K={args.workers} local"], results[f"K={args.workers} Ray"]
    same = seq["episodes"] == par["episodes"]
    print(f"\nRay K={args.workers} vs sequential K={args.workers}: speed-up "
          f"{seq['wall_s'] / par['wall_s']:.2f}x, identical episodes: {same}")
    s = seq["split"]
    learner = max(s["wall_s"] - s["accuracy_s"], 0.0)
    print(f"per episode: evaluation {s['accuracy_s']:.2f} s (parallel), learner {learner:.2f} s "
          f"(sequential) -> expected speed-up with K workers on K free cores: "
          + ", ".join(f"K={kk}: {(s['accuracy_s'] + learner) / (s['accuracy_s'] / kk + learner):.2f}x"
                      for kk in (2, 4, 8, 16)))
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), **{
            k: {kk: vv for kk, vv in v.items() if kk != "episodes"} for k, v in results.items()},
            "identical": same}, indent=1) + "\n")


if __name__ == "__main__":
    main()
