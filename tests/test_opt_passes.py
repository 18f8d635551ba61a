"""The xbar-opt passes one by one: what each removes, that the results stay cimq's, and errors.

* ``xbar-skip-zero-weights``: all-zero columns dropped and all-zero tiles not programmed;
* ``xbar-pack``: block-diagonal repeats (static grouped conv, run-time attention heads) cut
  writes and cycles by the packing factor; consecutive one-tile layers share one write, and an
  array that no longer holds its group is an execution error;
* arrays = 1 with every optimisation off is the paper's number exactly (==, not approx).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from cimc.analysis import analyse_layer, module_layers
from cimc.chip_report import chip_schedule
from cimc.context import make_context
from cimc.errors import ExecutionError
from cimc.exec.cimq_exec import run_cimq
from cimc.exec.xbar_exec import run_xbar
from cimc.passes.xbar_pack import XbarPackPass
from cimc.passes.xbar_skip_zero_weights import XbarSkipZeroWeightsPass
from cimc.pipeline import lower
from cimc.target import LayerDesc, latency_us, layer_counters, layer_geometry, network_cost
from cimc.target.hw import Hardware
from xbar_ir import attention_module, conv_module, linear_module


def _xbar(module, hw, *passes):
    prog = module.clone()
    lower(prog, "xbar", hw=hw)
    for p in passes:
        p.apply(make_context(), prog)
        prog.verify()
    return prog


def _same(module, prog, inputs, hw):
    ref, _ = run_cimq(module, inputs)
    runs = [run_xbar(prog, inputs, hw=hw, fast=f) for f in (False, True)]
    for r in runs:
        assert all(np.array_equal(a, b) for a, b in zip(ref, r.outputs))
    assert runs[0].report["total"] == {**runs[1].report["total"], "latency_us": runs[0].report["total"]["latency_us"]}
    return runs[0].report


def _linear(W: np.ndarray, a_bits: int, tokens: int, rng):
    """``main(x [1, tokens, k])`` -> one ``cimq.matmul`` with the 8-bit weight ``W [k, n]``."""
    from xbar_ir import blob, parse_bound, q, t
    from cimc.weights import WeightStore

    store = WeightStore()
    k, n = W.shape
    xt, qt = t([1, tokens, k], "f32"), t([1, tokens, k], q(a_bits, False))
    wt, yt = t([k, n], q(8, True, 0.25, True)), t([1, tokens, n], q(32, True, 0.125))
    src = f"""
func.func @main(%x: {xt}) -> {yt} {{
  %q = cimq.quantize %x : ({xt}) -> {qt}
  %w = cimq.const {blob(store, W.astype(np.int8), 'fc.w')} : {wt}
  %a = cimq.matmul %q, %w {{layer = "fc"}} : ({qt}, {wt}) -> {yt}
  func.return %a : {yt}
}}"""
    return parse_bound(src, store), [np.abs(rng.standard_normal((1, tokens, k))).astype(np.float32) * 4]


def test_zero_columns_and_tiles_are_skipped():
    rng = np.random.default_rng(0)
    W = rng.integers(-127, 128, size=(40, 12))
    W[8:24] = 0        # rows 8..23: two of the five row tiles of 8 hold only zeros
    W[:, :4] %= 9      # outputs 0..3: no high slice
    module, inputs = _linear(W, 6, 3, rng)
    hw = Hardware(rows=8, cols=16, cell_bits=4)
    base = _same(module, _xbar(module, hw), inputs, hw)
    prog = _xbar(module, hw, XbarSkipZeroWeightsPass())
    rep = _same(module, prog, inputs, hw)
    (p,) = map(analyse_layer, module_layers(prog))
    assert p.geometry.tile_list is not None and p.phys_cols < 2 * 12 * 2
    assert all(rt not in (1, 2) for _, rt, _ in p.geometry.tile_list)
    assert rep["total"]["writes"] == len(p.geometry.tile_list) < base["total"]["writes"]
    assert rep["total"]["executes"] < base["total"]["executes"]
    assert rep["total"] == {**p.counters(1, hw).as_dict(), "latency_us": rep["total"]["latency_us"]}


def test_block_diagonal_repeats_cut_writes_and_cycles():
    rng = np.random.default_rng(1)
    # depthwise 3x3, 8 channels: per group 9 rows x 4 columns (w = 4 on 2-bit cells, dc):
    # three fit a 32 x 32 tile (27 rows), so 8 groups take 3 programmed repeats instead of 8
    hw = Hardware(rows=32, cols=32, cell_bits=2)
    module, inputs = conv_module(rng, cin=8, cout=8, k=3, size=5, pad=1, groups=8, w_bits=4, a_bits=5)
    base = _same(module, _xbar(module, hw), inputs, hw)
    prog = _xbar(module, hw, XbarPackPass(share=False))
    rep = _same(module, prog, inputs, hw)
    (p,) = map(analyse_layer, module_layers(prog))
    assert (p.geometry.blocks, p.geometry.repeats, p.phys_rows, p.phys_cols) == (3, 3, 27, 12)
    assert (base["total"]["writes"], rep["total"]["writes"]) == (8, 3)
    assert base["total"]["executes"] * 3 == rep["total"]["executes"] * 8
    # dr needs 18 rows per group: one fits, nothing to pack
    dr = dataclasses.replace(hw, mapping="dr")
    (p,) = map(analyse_layer, module_layers(_xbar(module, dr, XbarPackPass(share=False))))
    assert p.geometry.blocks == 1
    module, inputs = attention_module(rng, heads=6, tokens=4, dim=5, w_bits=4, a_bits=4)
    hw = Hardware(rows=32, cols=32, cell_bits=4)
    base = _same(module, _xbar(module, hw), inputs, hw)
    prog = _xbar(module, hw, XbarPackPass(share=False))
    rep = _same(module, prog, inputs, hw)
    (p,) = map(analyse_layer, module_layers(prog))
    assert p.dynamic and p.geometry.blocks == 4  # 4 x 5 rows, 4 x 2 x 4 = 32 columns
    assert (base["total"]["writes"], base["total"]["executes"]) == (6, 6 * 4 * 4)
    assert (rep["total"]["writes"], rep["total"]["executes"]) == (2, 2 * 4 * 4)


def _chain(rng):
    """Two one-tile linear layers in a row (the second reads the first's requantized output)."""
    from xbar_ir import parse_bound, q, t, weights, blob
    from cimc.weights import WeightStore

    store = WeightStore()
    w1, w2 = weights(rng, (6, 4), 5), weights(rng, (4, 3), 5)
    x, qx = t([1, 6], "f32"), t([1, 6], q(6, False))
    a1, r1 = t([1, 4], q(32, True, 0.125)), t([1, 4], q(6, False))
    a2 = t([1, 3], q(32, True, 0.125))
    src = f"""
func.func @main(%x: {x}) -> {a2} {{
  %q = cimq.quantize %x : ({x}) -> {qx}
  %w1 = cimq.const {blob(store, w1, 'fc1.w')} : {t([6, 4], q(5, True, 0.25, True))}
  %a = cimq.matmul %q, %w1 {{layer = "fc1"}} : ({qx}, {t([6, 4], q(5, True, 0.25, True))}) -> {a1}
  %r = cimq.requantize %a : ({a1}) -> {r1}
  %w2 = cimq.const {blob(store, w2, 'fc2.w')} : {t([4, 3], q(5, True, 0.25, True))}
  %b = cimq.matmul %r, %w2 {{layer = "fc2"}} : ({r1}, {t([4, 3], q(5, True, 0.25, True))}) -> {a2}
  func.return %b : {a2}
}}"""
    return parse_bound(src, store), [np.abs(rng.standard_normal((1, 6))).astype(np.float32) * 4]


def test_shared_array_one_write_for_the_group_and_checked():
    rng = np.random.default_rng(2)
    module, inputs = _chain(rng)
    hw = Hardware(rows=16, cols=32, cell_bits=4)
    base = _same(module, _xbar(module, hw), inputs, hw)
    prog = _xbar(module, hw, XbarPackPass(blocks=False))
    rep = _same(module, prog, inputs, hw)
    assert (base["total"]["writes"], rep["total"]["writes"]) == (2, 1)
    assert rep["total"]["cells_written"] == base["total"]["cells_written"]
    fc1, fc2 = map(analyse_layer, module_layers(prog))
    assert fc1.group == fc2.group is not None and fc2.shared and not fc1.shared
    # a chip schedule keeps the group together: one write per copy of it, none for fc2
    for arrays in (1, 4):
        sched = chip_schedule(prog, dataclasses.replace(hw, arrays=arrays))
        copies = sched.layers[0].arrays_used
        assert sched.run_writes == copies and sched.layers[1].arrays_used == copies
        assert sched.layers[1].counters.writes == 0
    # the group's array overwritten in between (its first layer's program not run): an error
    fc1_prog = next(op for op in module_layers(prog)[0].body.walk() if op.name == "xbar.program")
    fc1_prog.properties.pop("group")
    fc1_prog.properties.pop("offset")
    with pytest.raises(ExecutionError, match="shared array 'pack0' was overwritten"):
        run_xbar(prog, inputs, hw=hw, fast=False)


def test_one_array_without_optimisations_is_the_paper_exactly():
    rng = np.random.default_rng(3)
    from cimc.report import xbar_report

    for module, _ in (conv_module(rng, cin=6, cout=20, k=3, size=9, w_bits=5, a_bits=7),
                      linear_module(rng, k=300, n=70, tokens=2, w_bits=3, a_bits=8)):
        for hw in (Hardware(), Hardware(rows=64, cols=32, cell_bits=2, mapping="of")):
            rep = xbar_report(module, hw, baseline=False)
            descs = [LayerDesc(r["name"], r["m"], r["n"], r["P"], r["H"], r["kind"]) for r in rep["layers"]]
            closed = network_cost(descs, [[r["w_bits"], r["a_bits"]] for r in rep["layers"]], hw)
            assert rep["total"]["latency_us"] == closed.latency_us == rep["total"]["paper_latency_us"]
            for r, d in zip(rep["layers"], descs):
                lat = latency_us(layer_counters(layer_geometry(d, r["w_bits"], r["a_bits"], hw), hw), hw)
                assert r["latency_us"] == lat
            assert rep["chip"]["latency_us"] == closed.latency_us
