"""Run-time skipping of zero input bit-planes (``xbar-skip-zero-planes``).

On layers fed with sparse (ReLU-like) inputs, for every mapping, DAC width and kind of layer:
the outputs equal cimq's; the fused chunk loop, the op-by-op loop and the exact fast path count
the same cycles, skipped cycles and per-plane distribution; the skipped count equals a count
made here from the quantized inputs with plain loops; executed + skipped is the static worst
case; every other counter is the per-tile closed form of the cycles that ran.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from cimc.context import make_context
from cimc.dialects import cimq
from cimc.exec.cimq_exec import run_cimq
from cimc.exec.xbar_exec import run_xbar
from cimc.passes.xbar_skip_zero_planes import XbarSkipZeroPlanesPass
from cimc.pipeline import lower
from cimc.target import LayerDesc, layer_counters, layer_geometry
from cimc.target.counters import Counters, cycle_counters, layer_tiles, tile_counters
from cimc.target.geometry import tile_bounds
from cimc.target.hw import Hardware
from xbar_ir import attention_module, conv_module, linear_module

CASES = [
    ("conv", "dc", 2, 1), ("conv", "dr", 4, 2), ("conv", "of", 1, 1), ("linear", "dc", 4, 1),
    ("linear", "dr", 2, 2), ("depthwise", "dc", 2, 1), ("attention", "of", 2, 1), ("attention", "dc", 4, 2),
]


def _sparse(x: np.ndarray, rng) -> np.ndarray:
    """ReLU-like: about half zero, the rest mostly small (empty high planes)."""
    y = np.maximum(x, 0) * (rng.random(x.shape) < 0.6)
    return (y * rng.choice([0.2, 1.0], size=x.shape)).astype(np.float32)


def _module(kind: str, rng, signed: bool):
    if kind == "conv":
        return conv_module(rng, cin=5, cout=6, k=3, size=7, pad=1, w_bits=6, a_bits=5, a_signed=signed)
    if kind == "depthwise":
        return conv_module(rng, cin=4, cout=4, k=3, size=6, pad=1, groups=4, w_bits=5, a_bits=6, a_signed=signed)
    if kind == "linear":
        return linear_module(rng, k=40, n=7, tokens=5, w_bits=7, a_bits=6, a_signed=signed)
    return attention_module(rng, heads=2, tokens=6, dim=9, w_bits=6, a_bits=5, a_signed=signed)


def _reference_skips(xu: np.ndarray, rows: int, n: int, dual: bool, a_bits: int, d: int, col_tiles: int) -> int:
    """Plain loops: cycles of tiles whose chunk is zero on every row they drive."""
    phys = 2 * n if dual else n
    skipped = 0
    for rep in range(xu.shape[1]):
        for b in range(xu.shape[0]):
            for p in range(xu.shape[2]):
                v = xu[b, rep, p]
                for r0, r1 in tile_bounds(phys, rows):
                    drive = [int(v[r % n]) for r in range(r0, r1)]
                    for i in range(-(-a_bits // d)):
                        if all((x >> (i * d)) & ((1 << d) - 1) == 0 for x in drive):
                            skipped += col_tiles
    return skipped


@pytest.mark.parametrize("kind,mapping,c,d", CASES)
@pytest.mark.parametrize("signed", [False, True])
def test_skipping_is_exact_and_counted_alike(kind, mapping, c, d, signed):
    rng = np.random.default_rng(hash((kind, mapping, c, d, signed)) % 2**32)
    module, inputs = _module(kind, rng, signed)
    inputs = [np.concatenate([_sparse(x, rng), _sparse(x, rng)]) for x in inputs]  # batch 2
    hw = Hardware(rows=8, cols=16, cell_bits=c, dac_bits=d, mapping=mapping, cols_per_adc=3)
    ref, rec = run_cimq(module, inputs, record=lambda op: isinstance(op, (cimq.QuantizeOp,)))
    prog = module.clone()
    lower(prog, "xbar", hw=hw)
    worst = run_xbar(prog, inputs, hw=hw, fast=False).report
    XbarSkipZeroPlanesPass().apply(make_context(), prog)
    runs = [run_xbar(prog, inputs, hw=hw, fast=False), run_xbar(prog, inputs, hw=hw, fast=False, fuse=False),
            run_xbar(prog, inputs, hw=hw, fast=True)]
    for r in runs:
        assert all(np.array_equal(a, b) for a, b in zip(ref, r.outputs))
    strip = lambda rep: [{k: v for k, v in row.items() if k not in ("path", "seconds")} for row in rep["layers"]]  # noqa: E731
    assert strip(runs[0].report) == strip(runs[1].report) == strip(runs[2].report)
    assert runs[0].tile_cycles == runs[1].tile_cycles == runs[2].tile_cycles
    row, w_row = runs[0].report["layers"][0], worst["layers"][0]
    assert row["executes"] + row["skipped_cycles"] == w_row["executes"]
    assert sum(row["skipped_by_plane"]) == row["skipped_cycles"] and len(row["skipped_by_plane"]) == row["chunks"]
    # the count, made here from the quantized streamed inputs
    xq = [np.asarray(v[0] if isinstance(v, tuple) else v) for op, v in rec.items()][0]
    a_bits = row["a_bits"]
    xu = xq.astype(np.int64) + ((1 << (a_bits - 1)) if signed else 0)
    if kind not in ("conv", "depthwise"):  # conv inputs are im2col patches: per-tile form only
        xu = xu.reshape(xu.shape[0], row["H"], row["P"], row["n"])
        expect = _reference_skips(xu, hw.rows, row["n"], mapping == "dr", a_bits, d, row["col_tiles"])
        assert row["skipped_cycles"] == expect and (expect > 0 or signed)
    _per_tile_checks(row, runs[0], hw)


def _per_tile_checks(row, run, hw):
    """Every counter is the per-tile closed form of the cycles that ran on that tile."""
    geom = layer_geometry(LayerDesc("l", row["m"], row["n"], row["P"], row["H"]), row["w_bits"], row["a_bits"], hw)
    full = run.report["batch"] * row["P"] * row["chunks"]
    dynamic = row["kind"] == "matmul"
    total = Counters()
    for h, rt, ct, rows_t, cols_t in layer_tiles(geom):
        ran = run.tile_cycles[row["name"]][(h, rt, ct)]
        total += tile_counters(rows_t, cols_t, 0, run.report["batch"], hw.adcs)
        total += cycle_counters(rows_t, cols_t, ran, hw.adcs, skipped=full - ran)
    worst = layer_counters(geom, hw, batch=run.report["batch"], dynamic=dynamic)
    total.recombine_adds = worst.recombine_adds  # once per layer, after its tiles (not skipped)
    got = {k: row[k] for k in total.as_dict()}
    assert got == total.as_dict()
    assert total.executes + total.skipped_cycles == worst.executes and total.writes == worst.writes


def test_skipping_on_a_lossy_adc_changes_nothing_but_the_counts():
    rng = np.random.default_rng(11)
    module, inputs = linear_module(rng, k=50, n=9, tokens=6, w_bits=8, a_bits=8)
    inputs = [_sparse(inputs[0], rng)]
    hw = Hardware(rows=16, cols=16, cell_bits=4, dac_bits=2, adc_bits=5)
    prog = module.clone()
    lower(prog, "xbar", hw=dataclasses.replace(hw, adc_bits=None))
    plain = run_xbar(prog, inputs, hw=hw, fast=False)
    XbarSkipZeroPlanesPass().apply(make_context(), prog)
    skip = run_xbar(prog, inputs, hw=hw, fast=False)
    assert plain.report["total"]["adc_saturations"] > 0
    assert all(np.array_equal(a, b) for a, b in zip(plain.outputs, skip.outputs))
    assert skip.report["total"]["adc_saturations"] == plain.report["total"]["adc_saturations"]
    assert skip.report["total"]["skipped_cycles"] > 0
