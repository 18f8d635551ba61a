"""Whole-model run time of the bit-serial simulator against its BLAS bound and onnxruntime.

ResNet-18 at 224x224 (Brevitas, seeded weights, W8A8 QCDQ, :func:`cimc.models.zoo_onnx`) on the
paper's hardware (256x256 crossbar, 4-bit cells, 1-bit DAC, ``dc``, lossless ADC), batch 1.
Printed in one run (timings interleaved, best of ``--repeat``):

* ``bit-serial``: ``run_xbar(module, [x], fast=False)``: every tile programmed, every chunk
  plane of every vector through the tile, ADC per conversion, shift-add, recombination, plus the
  host ops (the whole model);
* ``BLAS bound``: the same bit-plane products as plain numpy matmuls: per tile, the stacked
  chunk planes (``[chunks * P, rows_t]``, float32) @ the tile's cells (float32), nothing else
  (planes and float tiles prepared beforehand, not timed);
* ``fast``: ``run_xbar(module, [x], fast=True)`` (exact one-step layers, same counters);
* ``onnxruntime``: ``InferenceSession.run`` on the same ONNX file (default optimisations,
  session created beforehand);

and the ratios bit-serial / BLAS bound and fast / onnxruntime. The bit-serial and fast outputs
are checked identical. Usage: ``.venv/bin/python benchmarks/bench_run.py [--repeat 3]
[--model resnet18] [--json out.json]``.
"""

from __future__ import annotations

import argparse
import gc
import json
import time
from pathlib import Path

import numpy as np


def blas_bound_work(module) -> list[tuple[np.ndarray, list[np.ndarray]]]:
    """Per (layer, repeat, row tile): stacked random 0/1 planes and the float tiles they drive."""
    from cimc.analysis import analyse_layer, module_layers
    from cimc.dialects import xbar
    from cimc.exec.xbar_records import static_blob
    from cimc.target.mapping import map_cells

    rng = np.random.default_rng(0)
    work = []
    for layer in module_layers(module):
        prog = analyse_layer(layer)
        if prog.dynamic:
            continue
        mapped = next(op for op in layer.body.walk() if isinstance(op, xbar.MapOp))
        weight = static_blob(layer.weight).array.reshape(layer.weight.type.get_shape())
        g = map_cells(weight, prog.w_bits, mapped.cells.type.cell_bits.data, mapped.mapping.data,
                      prog.slices)
        tile_t = next(op for op in layer.body.walk() if isinstance(op, xbar.ProgramOp)).tile.type
        R, C = tile_t.rows.data, tile_t.cols.data
        for h in range(prog.H):
            for rt in range(prog.row_tiles):
                rows = g[h, rt * R : (rt + 1) * R]
                planes = (rng.random((prog.chunks * prog.P, rows.shape[0])) < 0.5).astype(np.float32)
                tiles = [np.ascontiguousarray(rows[:, ct * C : (ct + 1) * C], dtype=np.float32)
                         for ct in range(prog.col_tiles)]
                work.append((planes, tiles))
    return work


def run_blas_bound(work) -> None:
    for planes, tiles in work:
        for tile in tiles:
            planes @ tile


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="resnet18")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    import onnxruntime as ort

    from cimc.exec.xbar_exec import run_xbar
    from cimc.frontend import import_onnx
    from cimc.target.hw import Hardware
    from cimc.models import input_shape, zoo_onnx
    from cimc.pipeline import lower

    path = zoo_onnx(args.model)
    hw = Hardware()
    module = import_onnx(path).module
    lower(module, "xbar", hw=hw)
    x = np.random.default_rng(0).standard_normal((1, *input_shape(args.model))).astype(np.float32)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = {sess.get_inputs()[0].name: x}
    work = blas_bound_work(module)

    slow = run_xbar(module, [x], hw=hw, fast=False)  # warm-up (numba, caches) and the reference
    fast = run_xbar(module, [x], hw=hw, fast=True)
    assert all(np.array_equal(a, b) for a, b in zip(slow.outputs, fast.outputs)), "fast != bit-serial"
    assert slow.report["total"] == fast.report["total"], "fast counters != bit-serial counters"
    sess.run(None, feed)

    fns = {
        "bit-serial": lambda: run_xbar(module, [x], hw=hw, fast=False),
        "BLAS bound": lambda: run_blas_bound(work),
        "fast": lambda: run_xbar(module, [x], hw=hw, fast=True),
        "onnxruntime": lambda: sess.run(None, feed),
    }
    best = {k: float("inf") for k in fns}
    for _ in range(args.repeat):  # interleaved: every repeat runs each once
        for k, fn in fns.items():
            gc.collect()
            t0 = time.perf_counter()
            fn()
            best[k] = min(best[k], time.perf_counter() - t0)
    flops = 2 * sum(p.shape[0] * p.shape[1] * t.shape[1] for p, ts in work for t in ts)
    rep = slow.report["total"]
    print(f"{args.model} 224x224 W8A8, 256x256 crossbar, c=4, d=1, dc, lossless ADC, batch 1")
    print(f"  crossbar cycles {rep['executes']:,}, tile writes {rep['writes']:,}, "
          f"bit-plane products {flops / 1e9:.1f} GFLOP")
    for k, v in best.items():
        print(f"  {k:12s} {v * 1e3:10.1f} ms")
    ratios = {
        "bit-serial / BLAS bound": best["bit-serial"] / best["BLAS bound"],
        "fast / onnxruntime": best["fast"] / best["onnxruntime"],
        "bit-serial / fast": best["bit-serial"] / best["fast"],
    }
    for k, v in ratios.items():
        print(f"  {k:24s} {v:8.2f}x")
    print("goals: bit-serial within 2x of the BLAS bound, fast within 3x of onnxruntime")
    if args.json:
        args.json.write_text(json.dumps({"seconds": best, "ratios": ratios, "gflop": flops / 1e9}, indent=2))


if __name__ == "__main__":
    main()
