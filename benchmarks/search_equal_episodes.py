"""The searches of ``bench_search.py`` compared at equal episodes, also while they still run.

Reads every ``METHOD-sSEED/episodes.jsonl`` under ``--out`` (the folder ``bench_search.py``
writes), cuts every run to the episodes all of them have (or ``--episodes``), and prints per
method and seed: the best reward, the best speedup among the episodes that meet the accuracy
target (validation accuracy >= the W8A8 accuracy minus ``--acc-drop``) and that episode's
accuracy, then the means over seeds. ``--json`` keeps the table.

    .venv/bin/python benchmarks/search_equal_episodes.py --out runs/bench_search --json table.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("runs/bench_search"))
    ap.add_argument("--episodes", type=int, default=None)
    ap.add_argument("--acc-drop", type=float, default=1.0)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    runs = {}
    for d in sorted(args.out.glob("*-s*")):
        recs = [json.loads(line) for line in (d / "episodes.jsonl").read_text().splitlines() if line]
        acc8 = json.loads((d / "best_policy.json").read_text())["acc_8bit"]
        method, seed = d.name.rsplit("-s", 1)
        runs[(method, int(seed))] = (recs, acc8)
    n = args.episodes or min(len(r) for r, _ in runs.values())
    rows = []
    for (method, seed), (recs, acc8) in sorted(runs.items()):
        recs = recs[:n]
        ok = [r for r in recs if r["accuracy"] >= acc8 - args.acc_drop]
        best = max(ok, key=lambda r: r["speedup"]) if ok else None
        rows.append({"method": method, "seed": seed, "episodes": len(recs), "acc_8bit": acc8,
                     "best_reward": max(r["reward"] for r in recs),
                     "best_speedup_at_target": best["speedup"] if best else None,
                     "accuracy_at_best": best["accuracy"] if best else None})
    print(f"{n} episodes per run; target: accuracy >= W8A8 - {args.acc_drop} point(s)")
    print(f"{'method':8s} {'seed':>4s} {'best reward':>12s} {'speedup':>8s} {'val %':>6s}")
    for r in rows:
        sp = f"{r['best_speedup_at_target']:.3f}x" if r["best_speedup_at_target"] else "none"
        acc = f"{r['accuracy_at_best']:.2f}" if r["accuracy_at_best"] else "-"
        print(f"{r['method']:8s} {r['seed']:4d} {r['best_reward']:12.2f} {sp:>8s} {acc:>6s}")
    means = {}
    for method in sorted({r["method"] for r in rows}):
        mine = [r for r in rows if r["method"] == method]
        sp = [r["best_speedup_at_target"] or 1.0 for r in mine]  # none found: the W8A8 model, 1x
        means[method] = {"best_reward": float(np.mean([r["best_reward"] for r in mine])),
                         "best_speedup_at_target": float(np.mean(sp))}
        print(f"{method + ' mean':13s} {means[method]['best_reward']:12.2f} "
              f"{means[method]['best_speedup_at_target']:7.3f}x  (a seed with none counts as 1x)")
    if args.json:
        args.json.write_text(json.dumps({"episodes": n, "acc_drop": args.acc_drop, "rows": rows,
                                         "means": means}, indent=1) + "\n")


if __name__ == "__main__":
    main()
