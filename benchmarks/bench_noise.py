"""What imperfect devices cost: the bit-serial run of a model with and without device noise.

ResNet-18 at 224x224 (Brevitas, seeded weights, W8A8 QCDQ) on the paper's hardware (256x256,
4-bit cells, 1-bit DAC, ``dc``, lossless ADC), batch 1, bit-serial (``fast=False``). Printed in
one run, timings interleaved, best of ``--repeat``:

* ``ideal``: ``run_xbar(module, [x], fast=False)`` (no device model: today's kernels);
* ``noise <preset>``: the same with ``noise=load_noise(preset)`` (default ``rram-moderate``:
  programming noise, read noise, stuck cells, ADC offset and gain; every effect on);
* ``programming only``: only programming noise and stuck cells (no per-conversion draws);

and the ratios to ``ideal`` (goal: noise adds at most 2x). Usage:
``.venv/bin/python benchmarks/bench_noise.py [--repeat 3] [--model resnet18] [--preset rram-moderate]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="resnet18")
    ap.add_argument("--preset", default="rram-moderate")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    from cimc.exec.xbar_exec import run_xbar
    from cimc.frontend import import_onnx
    from cimc.models import input_shape, zoo_onnx
    from cimc.pipeline import lower
    from cimc.target.hw import Hardware
    from cimc.target.noise import load_noise

    hw = Hardware()
    module = import_onnx(zoo_onnx(args.model)).module
    lower(module, "xbar", hw=hw)
    x = np.random.default_rng(0).standard_normal((1, *input_shape(args.model))).astype(np.float32)
    noise = load_noise(args.preset)
    prog_only = dataclasses.replace(noise, read_sigma=0.0, adc_offset_sigma=0.0, adc_gain_sigma=0.0)
    fns = {
        "ideal": lambda: run_xbar(module, [x], hw=hw, fast=False),
        f"noise {args.preset}": lambda: run_xbar(module, [x], hw=hw, fast=False, noise=noise, seed=1),
        "programming only": lambda: run_xbar(module, [x], hw=hw, fast=False, noise=prog_only, seed=1),
    }
    for fn in fns.values():  # warm-up: numba compilation, cells derived once per blob
        fn()
    best = {k: float("inf") for k in fns}
    for _ in range(args.repeat):
        for k, fn in fns.items():
            gc.collect()
            t0 = time.perf_counter()
            fn()
            best[k] = min(best[k], time.perf_counter() - t0)
    print(f"{args.model} 224x224 W8A8, 256x256 crossbar, c=4, d=1, dc, lossless ADC, batch 1, bit-serial")
    for k, v in best.items():
        print(f"  {k:26s} {v:8.2f} s   {v / best['ideal']:5.2f}x ideal")
    print("goal: noise adds at most 2x to the bit-serial run")
    if args.json:
        args.json.write_text(json.dumps({"seconds": best, "ratio": {k: v / best["ideal"] for k, v in best.items()}},
                                        indent=2))


if __name__ == "__main__":
    main()
