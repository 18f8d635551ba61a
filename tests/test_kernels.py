"""Tests for cimc.target.mapping / kernels / counters: weight mapping, bit-serial execution, ADC
clipping, counters."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cimc.target import LayerDesc, layer_cost
from cimc.errors import CimcError, ExecutionError
from cimc.target import Counters, layer_counters, layer_geometry
from cimc.target.kernels import bitserial_layer, bitserial_tile_reference, crossbar_layer, exact_layer
from cimc.target.mapping import (
    activation_offset,
    correction,
    encode_activations,
    map_weights,
    recombine,
)
from cimc.target.hw import Hardware

MAPPINGS = ("dc", "dr", "of")


def rand_w(rng: np.random.Generator, n: int, m: int, w_bits: int) -> np.ndarray:
    b = (1 << (w_bits - 1)) - 1
    return rng.integers(-b, b + 1, size=(n, m))


def rand_x(rng: np.random.Generator, r: int, n: int, a_bits: int, signed: bool) -> np.ndarray:
    if signed:
        return rng.integers(-(1 << (a_bits - 1)), 1 << (a_bits - 1), size=(r, n))
    return rng.integers(0, 1 << a_bits, size=(r, n))


def test_activation_offset() -> None:
    assert activation_offset(8, True) == 128
    assert activation_offset(8, False) == 0
    assert activation_offset(1, True) == 1
    W = np.array([[1, -2], [3, 4]])
    assert correction(W, 4, True).tolist() == [8 * 4, 8 * 2]
    assert correction(W, 4, False).tolist() == [0, 0]


def test_encode_rejects_out_of_range() -> None:
    with pytest.raises(ExecutionError, match="4-bit signed"):
        encode_activations(np.array([[8]]), 4, True)
    with pytest.raises(ExecutionError, match="4-bit unsigned"):
        encode_activations(np.array([[-1]]), 4, False)


def test_dc_layout_by_hand() -> None:
    # w = 8 bits, c = 4: S = 2. W = [[-37]] -> W- = 37 = 0x25: slices (5, 2) on the minus columns.
    mw = map_weights(np.array([[-37]]), 8, 4, "dc")
    assert mw.g.tolist() == [[0, 5, 0, 2]]
    assert mw.recomb.tolist() == [[0, 1], [0, -1], [0, 16], [0, -16]]
    assert not mw.dual and mw.g.dtype == np.int8


def test_dr_layout_by_hand() -> None:
    mw = map_weights(np.array([[37], [-5]]), 8, 4, "dr")
    assert mw.g.tolist() == [[5, 2], [0, 0], [0, 0], [-5, 0]]
    assert mw.recomb.tolist() == [[0, 1], [0, 16]]
    assert mw.dual


def test_of_layout_by_hand() -> None:
    # U = W + 128: -37 -> 91 = 0x5B: slices (11, 5); reference column of ones, recomb -128.
    mw = map_weights(np.array([[-37], [0]]), 8, 4, "of")
    assert mw.g.tolist() == [[11, 5, 1], [0, 8, 1]]
    assert mw.recomb.tolist() == [[0, 1], [0, 16], [-1, -128]]


def test_eight_bit_cells_use_int16() -> None:
    mw = map_weights(np.array([[127, -127]]), 8, 8, "dr")
    assert mw.g.dtype == np.int16 and mw.g.max() == 127 and mw.g.min() == -127


def test_map_weights_errors() -> None:
    with pytest.raises(ExecutionError, match="narrow range"):
        map_weights(np.array([[-128]]), 8, 4, "dc")
    with pytest.raises(ExecutionError, match="mapping"):
        map_weights(np.array([[1]]), 8, 4, "xx")
    with pytest.raises(ExecutionError, match="2-D"):
        map_weights(np.array([1]), 8, 4, "dc")


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 12), m=st.integers(1, 6), r=st.integers(1, 4),
    w_bits=st.integers(2, 8), a_bits=st.integers(1, 8), c=st.sampled_from([1, 2, 3, 4, 8]),
    mapping=st.sampled_from(MAPPINGS), seed=st.integers(0, 2**32 - 1),
)
def test_mapping_invariant(n, m, r, w_bits, a_bits, c, mapping, seed) -> None:
    rng = np.random.default_rng(seed)
    W = rand_w(rng, n, m, w_bits)
    xu = rand_x(rng, r, n, a_bits, signed=False)
    mw = map_weights(W, w_bits, c, mapping)
    s = -(-w_bits // c)
    expected_cols = {"dc": 2 * m * s, "dr": m * s, "of": m * s + 1}[mapping]
    assert mw.g.shape == ((2 * n if mapping == "dr" else n), expected_cols)
    assert mw.recomb.shape == (expected_cols, 2)
    if mapping != "dr":
        assert mw.g.min() >= 0
    assert np.abs(mw.g.astype(np.int64)).max(initial=0) <= (1 << c) - 1
    assert np.array_equal(recombine(mw.drive_rows(xu) @ mw.g.astype(np.int64), mw.recomb, m), xu @ W)


def _hw(mapping: str, c: int, d: int, rows: int, cols: int, adc_bits: int | None = None) -> Hardware:
    return Hardware(rows=rows, cols=cols, cell_bits=c, dac_bits=d, mapping=mapping, adc_bits=adc_bits)


@pytest.mark.parametrize("mapping", MAPPINGS)
@pytest.mark.parametrize("c", [1, 2, 4])
@pytest.mark.parametrize("d", [1, 2])
@pytest.mark.parametrize("signed", [False, True])
def test_bitserial_equals_fast_path_equals_matmul(mapping: str, c: int, d: int, signed: bool) -> None:
    rng = np.random.default_rng([c, d, int(signed), MAPPINGS.index(mapping)])
    for _ in range(2):
        n, m, r = rng.integers(5, 40), rng.integers(1, 12), rng.integers(1, 7)
        w_bits, a_bits = int(rng.integers(2, 9)), int(rng.integers(1, 9))
        W = rand_w(rng, n, m, w_bits)
        X = rand_x(rng, r, n, a_bits, signed)
        hw = _hw(mapping, c, d, rows=int(rng.integers(3, 17)), cols=int(rng.integers(2, 11)))
        y = crossbar_layer(X, W, w_bits, a_bits, signed, hw)
        assert np.array_equal(y, X @ W)
        assert np.array_equal(exact_layer(X, W), X @ W)


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 30), m=st.integers(1, 8), r=st.integers(1, 5), w_bits=st.integers(2, 8),
    a_bits=st.integers(1, 8), c=st.sampled_from([1, 2, 4]), d=st.sampled_from([1, 2, 3]),
    mapping=st.sampled_from(MAPPINGS), adc_bits=st.sampled_from([None, 2, 3, 5]),
    rows=st.integers(2, 16), cols=st.integers(2, 16), seed=st.integers(0, 2**32 - 1),
)
def test_blas_path_equals_integer_reference(n, m, r, w_bits, a_bits, c, d, mapping, adc_bits, rows, cols, seed) -> None:
    """The BLAS hot path is bit-identical to the integer-loop reference, lossy ADC included."""
    rng = np.random.default_rng(seed)
    W = rand_w(rng, n, m, w_bits)
    xu = rand_x(rng, r, n, a_bits, signed=False)
    hw = _hw(mapping, c, d, rows, cols, adc_bits)
    mw = map_weights(W, w_bits, c, mapping)
    fast, ref = Counters(), Counters()
    y_fast = bitserial_layer(xu, mw, a_bits, hw, counters=fast)
    y_ref = bitserial_layer(xu, mw, a_bits, hw, counters=ref, reference=True)
    assert np.array_equal(y_fast, y_ref)
    assert fast == ref
    if adc_bits is None:
        assert np.array_equal(y_fast, xu @ W) and fast.adc_saturations == 0


def test_tile_reference_by_hand() -> None:
    # x = [3, 1] (2 bits, d = 1), g = [[2], [5]]: plane 0 = [1, 1] -> 7, plane 1 = [1, 0] -> 2.
    xu = np.array([[3, 1]], dtype=np.int64)
    g = np.array([[2], [5]], dtype=np.int8)
    out, sat = bitserial_tile_reference(xu, g, 2, 1, 0, 100)
    assert out.tolist() == [[7 + 2 * 2]] and sat == 0
    out, sat = bitserial_tile_reference(xu, g, 2, 1, 0, 3)  # 3-level ADC clips the 7
    assert out.tolist() == [[3 + 2 * 2]] and sat == 1


def test_lossy_adc_changes_results_and_counts_saturations() -> None:
    rng = np.random.default_rng(7)
    W = rand_w(rng, 64, 8, 8)
    X = rand_x(rng, 10, 64, 8, signed=False)
    for mapping in MAPPINGS:
        lossless = _hw(mapping, 4, 1, rows=64, cols=32)
        lossy = dataclasses.replace(lossless, adc_bits=4)
        c_ok, c_lossy = Counters(), Counters()
        y_ok = crossbar_layer(X, W, 8, 8, False, lossless, counters=c_ok)
        y_lossy = crossbar_layer(X, W, 8, 8, False, lossy, counters=c_lossy)
        assert np.array_equal(y_ok, X @ W) and c_ok.adc_saturations == 0
        assert not np.array_equal(y_lossy, X @ W)
        assert 0 < c_lossy.adc_saturations <= c_lossy.adc_conversions
        # an ADC with exactly the lossless bits of the tile never clips
        exact_bits = lossless.lossless_adc_bits(64)
        c_edge = Counters()
        y_edge = crossbar_layer(X, W, 8, 8, False, dataclasses.replace(lossless, adc_bits=exact_bits),
                                counters=c_edge)
        assert np.array_equal(y_edge, X @ W) and c_edge.adc_saturations == 0


@settings(max_examples=30, deadline=None)
@given(
    m=st.integers(1, 300), n=st.integers(1, 300), p=st.integers(1, 4), w_bits=st.integers(2, 8),
    a_bits=st.integers(1, 8), c=st.sampled_from([1, 2, 4]), d=st.sampled_from([1, 2]),
    mapping=st.sampled_from(MAPPINGS), rows=st.integers(16, 128), cols=st.integers(16, 128),
)
def test_counters_match_cost_model(m, n, p, w_bits, a_bits, c, d, mapping, rows, cols) -> None:
    hw = _hw(mapping, c, d, rows, cols)
    rng = np.random.default_rng(m * 1000 + n)
    W = rand_w(rng, n, m, w_bits)
    X = rand_x(rng, p, n, a_bits, signed=True)
    counters = Counters()
    y = crossbar_layer(X, W, w_bits, a_bits, True, hw, counters=counters)
    assert np.array_equal(y, X @ W)
    cost = layer_cost(LayerDesc("l", m, n, p, 1, "linear"), w_bits, a_bits, hw)
    assert counters.writes == cost.writes == cost.tiles
    assert counters.executes == cost.executes == p * cost.tiles * -(-a_bits // d)
    assert counters.adc_conversions == cost.adc_conversions
    assert counters.dac_activations == cost.dac_activations
    assert counters.cells_written == cost.phys_rows * cost.phys_cols
    assert counters == cost.counters  # every counter, cell reads and digital adds included


def test_counters_add() -> None:
    a = Counters(writes=1, executes=2, adc_saturations=3)
    b = Counters(writes=10, cells_written=5)
    assert (a + b).as_dict() == {"writes": 11, "cells_written": 5, "executes": 2,
                                 "adc_conversions": 0, "adc_saturations": 3, "dac_activations": 0,
                                 "adc_slots": 0, "skipped_cycles": 0, "cell_reads": 0, "shift_adds": 0,
                                 "recombine_adds": 0, "host_elements": 0, "host_macs": 0}
    a += b
    assert a.writes == 11 and b.writes == 10


def test_counters_scale_and_closed_form_batch() -> None:
    a = Counters(writes=1, cells_written=2, executes=3, adc_conversions=4, adc_saturations=5,
                 dac_activations=6)
    assert (a * 3).as_dict() == {k: 3 * v for k, v in a.as_dict().items()} == (3 * a).as_dict()
    hw = _hw("dc", 2, 1, rows=8, cols=8)
    geom = layer_geometry(LayerDesc("l", 3, 20, 5, 2, "matmul"), 4, 3, hw)
    one, four = layer_counters(geom), layer_counters(geom, batch=4)
    assert four.executes == 4 * one.executes and four.writes == 4 * one.writes  # every inference writes
    once = layer_counters(geom, batch=4, amortised=True)
    assert once.executes == four.executes and once.writes == one.writes  # xbar-batch-amortise
    dyn = layer_counters(geom, batch=4, dynamic=True, amortised=True)  # run-time cells: per input
    assert dyn.writes == 4 * one.writes and dyn.cells_written == 4 * one.cells_written


def test_bitserial_errors() -> None:
    hw = Hardware()
    mw = map_weights(np.ones((4, 2), dtype=np.int64), 4, 4, "dc")
    with pytest.raises(ExecutionError, match="do not match"):
        bitserial_layer(np.ones((2, 5), dtype=np.int64), mw, 4, hw)
    with pytest.raises(ExecutionError, match="unsigned 4-bit"):
        bitserial_layer(np.full((2, 4), 16), mw, 4, hw)
    with pytest.raises(ExecutionError, match="mapped for"):
        bitserial_layer(np.ones((2, 4), dtype=np.int64), mw, 4, dataclasses.replace(hw, mapping="dr"))
    with pytest.raises(CimcError, match="shapes"):
        exact_layer(np.ones((2, 3)), np.ones((4, 2)))


def test_exact_layer_large_values_use_integers() -> None:
    x = np.array([[2**40, 3]], dtype=np.int64)
    W = np.array([[2**20 + 1], [5]], dtype=np.int64)
    assert exact_layer(x, W).tolist() == [[2**40 * (2**20 + 1) + 15]]


def test_wide_tiles_fall_back_to_float64() -> None:
    # 2048 rows x 8-bit DAC x 8-bit cells: partial sums up to ~1.3e8 > 2^24 -> float64 planes.
    rng = np.random.default_rng(3)
    hw = _hw("dc", 8, 8, rows=2048, cols=64)
    W = rand_w(rng, 2048, 4, 8)
    X = rand_x(rng, 3, 2048, 8, signed=False)
    X[0] = 255
    W[:, 0] = 127
    assert np.array_equal(crossbar_layer(X, W, 8, 8, False, hw), X @ W)


def test_large_layer_is_blocked_over_vectors() -> None:
    """Many vectors are processed in blocks; the result is unchanged."""
    rng = np.random.default_rng(5)
    hw = _hw("of", 4, 1, rows=256, cols=256)
    W = rand_w(rng, 300, 70, 8)
    X = rand_x(rng, 9000, 300, 8, signed=True)
    counters = Counters()
    y = crossbar_layer(X, W, 8, 8, True, hw, counters=counters)
    assert np.array_equal(y, X @ W)
    assert counters.executes == layer_cost(LayerDesc("l", 70, 300, 9000), 8, 8, hw).executes


@settings(max_examples=30, deadline=None)
@given(
    groups=st.sampled_from([1, 2, 4]),
    k=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    s=st.tuples(st.integers(1, 2), st.integers(1, 2)),
    p=st.tuples(st.integers(0, 2), st.integers(0, 2), st.integers(0, 2), st.integers(0, 2)),
    d=st.tuples(st.integers(1, 2), st.integers(1, 2)),
    seed=st.integers(0, 10_000),
)
def test_im2col_grouped_equals_reference_per_group(groups, k, s, p, d, seed) -> None:
    from cimc.exec.host import im2col_grouped
    from cimc.semantics import im2col

    rng = np.random.default_rng(seed)
    x = rng.integers(-128, 128, size=(2, 4, 7, 6)).astype(np.int64)
    if (7 + p[0] + p[2] - d[0] * (k[0] - 1) - 1) < 0 or (6 + p[1] + p[3] - d[1] * (k[1] - 1) - 1) < 0:
        return
    got = im2col_grouped(x, groups, k, s, p, d)
    cg = 4 // groups
    for g in range(groups):
        ref, _, _ = im2col(x[:, g * cg : (g + 1) * cg], k, s, p, d)
        assert np.array_equal(np.asarray(got[:, g]), ref)
    as_f32 = im2col_grouped(x, groups, k, s, p, d, dtype=np.float32)
    assert as_f32.dtype == np.float32 and np.array_equal(as_f32, got.astype(np.float32))
