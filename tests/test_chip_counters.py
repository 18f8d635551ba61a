"""The chip's counters against their closed form, over random shapes, bits and hardware.

Counted by the bit-serial layer kernel tile by tile (``cimc.target.kernels.bitserial_layer``,
both its BLAS and its integer-loop tile) and by the interpreter running the ``xbar`` program;
closed form from :func:`cimc.target.layer_counters`. Hardware includes ``cols_per_adc`` (ADC
slots) and ``arrays`` (which must not change any count of the program).
"""

from __future__ import annotations

import dataclasses

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from cimc.target import Counters, LayerDesc, latency_us, layer_counters, layer_geometry, layer_tiles
from cimc.target.counters import tile_counters
from cimc.target.hw import Hardware
from cimc.target.kernels import bitserial_layer
from cimc.target.mapping import encode_activations, map_weights

MAPPINGS = ("dc", "dr", "of")


@st.composite
def hardware(draw) -> Hardware:
    rows, cols = draw(st.integers(8, 96)), draw(st.integers(8, 96))
    return Hardware(
        rows=rows, cols=cols, cell_bits=draw(st.sampled_from([1, 2, 4])),
        dac_bits=draw(st.sampled_from([1, 2, 3])), mapping=draw(st.sampled_from(MAPPINGS)),
        arrays=draw(st.integers(1, 300)), cols_per_adc=draw(st.integers(1, cols)),
        t_adc_us=draw(st.sampled_from([0.0, 0.1, 0.37])),
    )


@settings(max_examples=60, deadline=None)
@given(hw=hardware(), m=st.integers(1, 120), n=st.integers(1, 200), p=st.integers(1, 3),
       w_bits=st.integers(2, 8), a_bits=st.integers(1, 8), reference=st.booleans())
def test_kernel_counts_equal_closed_form(hw, m, n, p, w_bits, a_bits, reference) -> None:
    rng = np.random.default_rng(m * 7919 + n)
    bound = (1 << (w_bits - 1)) - 1
    W = rng.integers(-bound, bound + 1, size=(n, m))
    X = rng.integers(0, 1 << a_bits, size=(p, n))
    counted = Counters()
    y = bitserial_layer(encode_activations(X, a_bits, False), map_weights(W, w_bits, hw.cell_bits, hw.mapping),
                        a_bits, hw, counters=counted, reference=reference)
    assert np.array_equal(y, X @ W)
    geom = layer_geometry(LayerDesc("l", m, n, p, 1), w_bits, a_bits, hw)
    closed = layer_counters(geom, hw)
    assert counted == closed
    # the closed form is the sum of the one per-tile term over the layer's tiles (plus the
    # layer's recombination, once per layer after its tiles)
    per_tile = Counters(recombine_adds=closed.recombine_adds)
    for *_, rows_t, cols_t in layer_tiles(geom):
        per_tile += tile_counters(rows_t, cols_t, p * geom.chunks, 1, hw.adcs)
    assert per_tile == closed
    # ADC slots: one per cycle with one ADC per column, cols_per_adc at most
    assert closed.executes <= closed.adc_slots <= closed.executes * hw.cols_per_adc
    if hw.cols_per_adc == 1:
        assert closed.adc_slots == closed.executes
    # the number of arrays is a schedule matter: no count of the program changes
    assert layer_counters(geom, dataclasses.replace(hw, arrays=1)) == closed


@settings(max_examples=40, deadline=None)
@given(hw=hardware(), m=st.integers(1, 400), n=st.integers(1, 400), p=st.integers(1, 50),
       h=st.integers(1, 4), batch=st.integers(1, 3), dynamic=st.booleans(), amortised=st.booleans(),
       w_bits=st.integers(1, 8), a_bits=st.integers(1, 8))
def test_closed_form_identities(hw, m, n, p, h, batch, dynamic, amortised, w_bits, a_bits) -> None:
    geom = layer_geometry(LayerDesc("l", m, n, p, h), w_bits, a_bits, hw)
    c = layer_counters(geom, hw, batch=batch, dynamic=dynamic, amortised=amortised)
    one = layer_counters(geom, hw)
    assert c.executes == batch * one.executes == h * geom.tiles * p * geom.chunks * batch
    per_run = 1 if amortised and not dynamic else batch  # the paper: every inference writes
    assert c.writes == per_run * one.writes == per_run * h * geom.tiles
    assert c.adc_conversions == h * batch * p * geom.chunks * geom.phys_cols * geom.row_tiles
    assert c.dac_activations == h * batch * p * geom.chunks * geom.phys_rows * geom.col_tiles
    assert c.skipped_cycles == 0 and c.adc_saturations == 0
    # latency: the paper's formula plus t_adc per extra slot; the paper's exactly at one ADC per column
    lat = latency_us(c, hw)
    paper = c.writes * hw.t_write_us + c.executes * hw.t_exec_us
    extra = c.adc_slots - c.executes
    assert lat == (paper + extra * hw.t_adc_us if extra else paper)
    flat = dataclasses.replace(hw, cols_per_adc=1)
    assert latency_us(layer_counters(geom, flat, batch=batch, dynamic=dynamic, amortised=amortised),
                      flat) == paper
