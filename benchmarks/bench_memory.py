"""Resident memory over many compiles in one process: nothing may pile up between models.

Compiles ``--n`` random policies of a zoo model (default 200 of LeNet) one after another in this
process, the way the search's compiler cost does (Brevitas build at the policy, ONNX QCDQ export,
import, lower to ``xbar``, the report's per-layer rows read off the program), and also runs each
compiled program once on the fast path (so the executor's derived data, cells and float32
weights, are made too). Prints the resident set size (``/proc/self/statm``) after the first 10
compiles and after all of them; the goal is growth below 50 MB after the first 10, which holds
when every weight belongs to its module and goes with it.

    .venv/bin/python benchmarks/bench_memory.py [--model lenet] [--n 200] [--json out.json]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np


def rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        pages = int(fh.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="lenet")
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    from cimc.exec import run_at_level
    from cimc.frontend import import_onnx
    from cimc.models import build, export_onnx, input_shape, num_layers
    from cimc.pipeline import lower
    from cimc.report import layer_rows
    from cimc.target.hw import Hardware

    hw = Hardware()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, *input_shape(args.model))).astype(np.float32)
    samples: list[tuple[int, float]] = []
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="cimc-mem-") as tmp:
        path = Path(tmp) / "policy.onnx"
        for i in range(args.n):
            policy = rng.integers(2, 9, size=(num_layers(args.model), 2))
            export_onnx(build(args.model, policy, seed=i), path)
            module = import_onnx(path).module
            lower(module, "xbar", hw=hw)
            rows = layer_rows(module, hw)
            assert [[r["w_bits"], r["a_bits"]] for r in rows] == policy.tolist()
            run_at_level(module, "xbar", [x], hw=hw)
            del module, rows
            gc.collect()
            if i + 1 in (1, 10) or (i + 1) % 50 == 0 or i + 1 == args.n:
                samples.append((i + 1, rss_mb()))
                print(f"after {i + 1:4d} compiles: RSS {samples[-1][1]:8.1f} MB", flush=True)
    at10 = dict(samples).get(10, samples[0][1])
    growth = samples[-1][1] - at10
    print(f"{args.model}: {args.n} compiles in {time.perf_counter() - t0:.0f} s; RSS growth after "
          f"the first 10: {growth:+.1f} MB (goal < 50 MB)")
    if args.json:
        args.json.write_text(json.dumps({"samples": samples, "growth_mb": growth}, indent=2))


if __name__ == "__main__":
    main()
