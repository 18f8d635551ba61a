"""What run-time zero-plane skipping costs the bit-serial simulator (goal: at most 10 % slower).

The same ``xbar`` program with and without ``xbar-skip-zero-planes`` (the executor then finds,
per tile and vector block, the planes that are zero on every row of the tile and counts what it
skips; results are identical), run bit-serially (``fast=False``) in alternation, best of
``--repeat`` each (process CPU time, which other processes on a shared machine disturb less than
wall time), in one process: ResNet-18 at 224x224 (W8A8, seeded weights and image) and the
bundled LeNet on 64 Fashion-MNIST test images. On a loaded machine the two times wander more
than the difference between them, so the script also times the skipping work itself (the zero
count of every row tile's planes, wrapped with a timer in this process) against the whole run.

    .venv/bin/python benchmarks/bench_skip.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _models():
    from cimc.frontend import import_onnx
    from cimc.models import input_shape, zoo_onnx

    x = np.random.default_rng(0).standard_normal((1, *input_shape("resnet18"))).astype(np.float32)
    yield "ResNet-18 W8A8, 1 image", import_onnx(zoo_onnx("resnet18")).module, x, 1
    lenet = import_onnx(ROOT / "examples" / "lenet_fmnist_mixed.onnx").module
    yield "LeNet FMNIST mixed, 64 images", lenet, np.load(ROOT / "examples" / "fmnist_test64_x.npy"), 10


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    from cimc.context import make_context
    from cimc.exec import xbar_tiles
    from cimc.exec.xbar_exec import run_xbar
    from cimc.passes.xbar_skip_zero_planes import XbarSkipZeroPlanesPass
    from cimc.pipeline import lower
    from cimc.target.hw import Hardware

    spent = [0.0]
    count = xbar_tiles.zero_plane_counts

    def timed(*a):
        t0 = time.process_time()
        out = count(*a)
        spent[0] += time.process_time() - t0
        return out

    xbar_tiles.zero_plane_counts = timed
    hw = Hardware()
    print(f"{'model (CPU seconds)':32} {'plain s':>9} {'skipping s':>11} {'ratio':>7} {'cycles skipped':>15}")
    work = 0.0
    for label, module, x, more in _models():
        plain = module.clone()
        lower(plain, "xbar", hw=hw)
        skip = plain.clone()
        XbarSkipZeroPlanesPass().apply(make_context(), skip)
        best = {"plain": float("inf"), "skip": float("inf")}
        outs = {}
        for rep in range(args.repeat * more):  # short runs: more repeats
            order = (("plain", plain), ("skip", skip))
            for key, prog in order if rep % 2 == 0 else order[::-1]:  # alternate who runs first
                spent[0] = 0.0
                t0 = time.process_time()
                res = run_xbar(prog, [x], hw=hw, fast=False)
                took = time.process_time() - t0
                if took < best[key]:
                    best[key] = took
                    if key == "skip":
                        work = spent[0]
                outs[key] = res
        assert all(np.array_equal(a, b) for a, b in zip(outs["plain"].outputs, outs["skip"].outputs))
        tot = outs["skip"].report["total"]
        frac = tot["skipped_cycles"] / (tot["skipped_cycles"] + tot["executes"])
        print(f"{label:32} {best['plain']:9.2f} {best['skip']:11.2f} {best['skip'] / best['plain']:7.3f} "
              f"{100 * frac:14.1f}%   skipping work {work:.3f} s = {100 * work / best['skip']:.1f}% of the run")


if __name__ == "__main__":
    main()
