"""Why the agent does (not) learn: agent settings compared on a surrogate of the deep model.

A real search spends seconds per episode on the accuracy; comparing agent settings needs many
seeds of hundreds of episodes, so this benchmark replaces the accuracy by a surrogate fitted to
the real model, and keeps everything else real (the search loop, the agents, the constraints, the
reward, the compiler's cost of the model's layers):

* ``measure``: the real evaluator (``cimc-rl search``'s: 8-bit QAT weights at the policy,
  BatchNorm re-estimated, top-1 on the fixed validation subset) gives, for every searchable layer
  ``i``, the drop ``d_i(8, a)`` with only that layer's inputs at ``a`` bits (2..7) and
  ``d_i(4, 8)`` with only its weights at 4 bits; written to ``--sens`` (JSON);
* ``compare``: ``acc(policy) = acc_8bit - sum_i max(0, d_i(8, a_i)) + max(0, d_i(w_i, 8))``
  (additive per-layer drops, weights at 8 bits cost nothing) drives searches of ``--episodes``
  episodes over ``--seeds`` for each agent setting of :data:`VARIANTS` named in ``--variants``:
  cimc's DDPG with CIM-AQ's settings (:data:`cimc.rl.env.CIMAQ_DDPG`), with each of cimc's
  changes alone, with cimc's defaults (all of them), TD3 (Stable-Baselines3, with cimc's
  exploration schedule) and random search. Printed: mean and per-seed best reward and speedup, the
  mean reward of the last 50 episodes, and the episode where each run reached 95 % of its best;
  ``--png`` the best-so-far reward against the episode (mean and range over seeds).

Usage::

    .venv/bin/python benchmarks/bench_agent.py measure --ckpt runs/resnet20_w8a8/model.pt \\
        --sens benchmarks/results/sensitivity_resnet20.json
    .venv/bin/python benchmarks/bench_agent.py compare --sens benchmarks/results/sensitivity_resnet20.json \\
        --json benchmarks/results/agents_resnet20.json --png benchmarks/results/agents_resnet20.png
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

#: name -> (method, base settings "cimaq" or "cimc", changes over the base).
VARIANTS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "random": ("random", "cimaq", {}),
    "ddpg-cimaq": ("ddpg", "cimaq", {}),
    "ddpg-discount0": ("ddpg", "cimaq", {"discount": 0.0}),
    "ddpg-norm": ("ddpg", "cimaq", {"reward_norm": "buffer"}),
    "ddpg-sigma": ("ddpg", "cimaq", {"sigma0": 0.5, "sigma_end": 0.05}),
    "ddpg-lr": ("ddpg", "cimaq", {"lr_actor": 3e-4}),
    "ddpg-cimc": ("ddpg", "cimc", {}),
    "ddpg-cimc-sigmoid": ("ddpg", "cimc", {"actor_grad": "sigmoid"}),
    "ddpg-cimc-upd0.25": ("ddpg", "cimc", {"updates_per_step": 0.25}),
    "ddpg-cimaq-inv": ("ddpg", "cimaq", {"actor_grad": "inverting"}),
    "ddpg-cimc-inv-lr3e-4": ("ddpg", "cimc", {"actor_grad": "inverting", "lr_actor": 3e-4}),
    "ddpg-cimc-inv-sigma0.3": ("ddpg", "cimc", {"actor_grad": "inverting", "sigma0": 0.3}),
    "ddpg-cimc-lr3e-4": ("ddpg", "cimc", {"lr_actor": 3e-4}),
    "td3": ("td3", "cimc", {}),
}


def measure(args: argparse.Namespace) -> None:
    import torch

    from cimc.rl.accuracy import EvalSettings, PolicyEvaluator
    from cimc.rl.env import uniform_policy

    torch.set_num_threads(1)
    state = torch.load(args.ckpt, map_location="cpu", weights_only=True)
    ev = PolicyEvaluator(args.model, args.dataset, state,
                         EvalSettings(calib_images=args.calib_images, eval_limit=args.eval_limit))
    from cimc.models import layer_names

    names = layer_names(args.model)
    n = len(names)
    t = time.perf_counter()
    acc8 = ev(uniform_policy(n, 8))
    drops: dict[str, dict[str, float]] = {}
    for i in range(1, n - 1):  # the first and last layers stay at 8/8 in the search
        row = {}
        for w, a in [(8, a) for a in range(2, 8)] + [(4, 8)]:
            pol = uniform_policy(n, 8)
            pol[i] = (w, a)
            row[f"{w}/{a}"] = acc8 - ev(pol)
        drops[names[i]] = row
        print(f"{names[i]:24s} " + " ".join(f"{k}:{v:5.2f}" for k, v in row.items()), flush=True)
    Path(args.sens).write_text(json.dumps({"model": args.model, "acc_8bit": acc8, "layers": names,
                                           "drops": drops, "eval_limit": args.eval_limit,
                                           "seconds": time.perf_counter() - t}, indent=1) + "\n")


class Surrogate:
    """``acc_8bit`` minus the additive per-layer drops of :func:`measure` (see the module)."""

    def __init__(self, sens: dict[str, Any]):
        self.acc8 = float(sens["acc_8bit"])
        self.names = list(sens["layers"])
        self.drops = sens["drops"]

    def __call__(self, policy: np.ndarray) -> float:
        total = 0.0
        for name, (w, a) in zip(self.names, np.asarray(policy)):
            row = self.drops.get(name)
            if row is None:
                continue
            total += max(0.0, row.get(f"8/{int(a)}", 0.0)) + max(0.0, row.get(f"{int(w)}/8", 0.0))
        return self.acc8 - total


def compare(args: argparse.Namespace) -> None:
    from cimc.rl.compiler_cost import CompilerCost
    from cimc.rl.env import CIMAQ_DDPG, DDPGConfig, SearchConfig
    from cimc.rl.search import EnvSpec, read_episodes, run_search
    from cimc.rl.search_model import describe_model
    from cimc.target.hw import Hardware

    sens = json.loads(Path(args.sens).read_text())
    model = sens["model"]
    surrogate = Surrogate(sens)
    infos, _ = describe_model(model)
    spec = EnvSpec(tuple(infos), model=model)
    cost = CompilerCost(model, Hardware())
    rows: list[dict[str, Any]] = []
    for name in args.variants:
        method, base, over = VARIANTS[name]
        settings = dict(CIMAQ_DDPG) if base == "cimaq" else {}
        settings.update(over)
        for seed in args.seeds:
            cfg = SearchConfig(episodes=args.episodes, warmup=args.warmup, seed=seed, method=method,
                               allowed_drop=args.acc_drop, acc_8bit=surrogate.acc8, cell_bits=4,
                               ddpg=DDPGConfig(**settings))
            out = Path(args.out) / f"{name}-s{seed}"
            t = time.perf_counter()
            res = run_search(cfg, spec, cost, surrogate, out, resume=method != "td3" and out.exists(),
                             progress=False) if not (out / "done").exists() else None
            (out / "done").write_text("")
            recs = read_episodes(out / "episodes.jsonl")
            r = np.array([x["reward"] for x in recs])
            best = recs[int(np.argmax(r))]
            curve = np.maximum.accumulate(r)
            rows.append({"variant": name, "seed": seed, "reward": float(r.max()),
                         "speedup": best["speedup"], "accuracy": best["accuracy"],
                         "episode": best["episode"], "last50": float(r[-50:].mean()),
                         "reach95": int(np.argmax(curve >= r.max() - 0.05 * abs(r.max()))),
                         "curve": curve.tolist(), "settings": settings})
            x = rows[-1]
            print(f"{name:15s} seed {seed}: best {x['reward']:7.2f} ({x['speedup']:.2f}x, ep "
                  f"{x['episode']}), last-50 mean {x['last50']:7.2f}"
                  + (f"  {time.perf_counter() - t:.0f} s" if res is not None else ""), flush=True)
            if args.json:
                Path(args.json).write_text(json.dumps({"args": vars(args), "rows": rows}, indent=1) + "\n")
    print(f"\n{'variant':16s}{'best R':>9s}{'speedup':>9s}{'last-50 R':>11s}{'95% at ep':>11s}  per seed")
    for name in args.variants:
        sel = [r for r in rows if r["variant"] == name]
        print(f"{name:16s}{statistics.fmean(r['reward'] for r in sel):9.2f}"
              f"{statistics.fmean(r['speedup'] for r in sel):8.2f}x"
              f"{statistics.fmean(r['last50'] for r in sel):11.2f}"
              f"{statistics.fmean(r['reach95'] for r in sel):11.0f}  "
              + " ".join(f"{r['reward']:.1f}" for r in sel))
    if args.png:
        plot(rows, args)


def plot(rows: list[dict[str, Any]], args: argparse.Namespace) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5), constrained_layout=True)
    for name in args.variants:
        curves = np.array([r["curve"] for r in rows if r["variant"] == name])
        x = np.arange(1, curves.shape[1] + 1)
        line, = ax.plot(x, curves.mean(axis=0), label=name)
        ax.fill_between(x, curves.min(axis=0), curves.max(axis=0), color=line.get_color(), alpha=0.12)
    ax.axvline(args.warmup, color="grey", lw=0.8, ls=":")
    ax.set_xlabel("episode")
    ax.set_ylabel("best reward so far (surrogate accuracy)")
    ax.set_title(f"agents on the surrogate of {args.sens}: mean and range over seeds {args.seeds}")
    ax.legend(loc="lower right", fontsize=8)
    fig.savefig(args.png, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("measure")
    m.add_argument("--model", default="resnet20")
    m.add_argument("--dataset", default="fashion_mnist")
    m.add_argument("--ckpt", required=True)
    m.add_argument("--calib-images", type=int, default=512)
    m.add_argument("--eval-limit", type=int, default=2000)
    m.add_argument("--sens", required=True)
    c = sub.add_parser("compare")
    c.add_argument("--sens", required=True)
    c.add_argument("--variants", nargs="+", default=list(VARIANTS))
    c.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    c.add_argument("--episodes", type=int, default=300)
    c.add_argument("--warmup", type=int, default=30)
    c.add_argument("--acc-drop", type=float, default=1.0)
    c.add_argument("--out", default="runs/bench_agent")
    c.add_argument("--json", default=None)
    c.add_argument("--png", default=None)
    args = ap.parse_args()
    measure(args) if args.cmd == "measure" else compare(args)


if __name__ == "__main__":
    main()
