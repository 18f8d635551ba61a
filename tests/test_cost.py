"""Tests for cimc.target.cost: the paper's closed-form latency (checks T1-T9) and its invariants."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cimc.target import LayerDesc, layer_cost, network_cost, slices, speedup, uniform_policy
from cimc.errors import CimcError
from cimc.target.hw import Hardware

HW = Hardware()

# case: (m, n, P, H), w, a, c, mapping, writes, executes, latency (cim-model.md section 3)
TABLE = {
    "T1": ((64, 576, 3136, 1), 8, 8, 4, "dc", 3, 75264, 105537.6),
    "T2": ((64, 576, 3136, 1), 4, 4, 4, "dc", 3, 37632, 52852.8),
    "T3": ((1000, 512, 1, 1), 8, 8, 4, "dc", 32, 256, 2150.4),
    "T4": ((50, 64, 50, 12), 8, 8, 4, "dc", 12, 4800, 7392.0),
    "T5": ((4096, 25088, 1, 1), 4, 8, 4, "dc", 3136, 25088, 210739.2),
    "T6": ((64, 147, 12544, 1), 2, 1, 2, "dc", 1, 12544, 17617.6),
    "T7": ((256, 1152, 196, 1), 8, 8, 4, "dr", 18, 28224, 40521.6),
    "T8": ((256, 1152, 196, 1), 8, 8, 4, "of", 15, 23520, 33768.0),
    "T9": ((128, 1152, 784, 1), 5, 8, 4, "dc", 10, 62720, 88368.0),
}


@pytest.mark.parametrize("case", sorted(TABLE))
def test_reference_table(case: str) -> None:
    (m, n, p, h), w, a, c, mapping, writes, executes, latency = TABLE[case]
    hw = dataclasses.replace(HW, cell_bits=c, mapping=mapping)
    cost = layer_cost(LayerDesc(case, m, n, p, h, "conv"), w, a, hw)
    assert cost.writes == writes
    assert cost.executes == executes
    assert cost.latency_us == pytest.approx(latency, rel=1e-12)


def test_t4_per_head() -> None:
    cost = layer_cost(LayerDesc("T4", 50, 64, 50, 12, "matmul"), 8, 8, HW)
    assert cost.tiles == 1 and cost.executes // 12 == 400


def test_t1_details() -> None:
    cost = layer_cost(LayerDesc("T1", 64, 576, 3136, 1, "conv"), 8, 8, HW)
    assert (cost.slices, cost.phys_rows, cost.phys_cols) == (2, 576, 256)
    assert (cost.row_tiles, cost.col_tiles) == (3, 1)
    assert cost.adc_conversions == 3136 * 8 * 256 * 3
    assert cost.dac_activations == 3136 * 8 * 576
    assert cost.lossless_adc_bits == 12


def test_physical_shapes_per_mapping() -> None:
    d = LayerDesc("x", 10, 20)
    for mapping, shape in (("dc", (20, 40)), ("dr", (40, 20)), ("of", (20, 21))):
        c = layer_cost(d, 8, 8, dataclasses.replace(HW, mapping=mapping))
        assert (c.phys_rows, c.phys_cols) == shape
    assert layer_cost(d, 8, 8, dataclasses.replace(HW, mapping="dr")).lossless_adc_bits == 11  # 40 rows * 15 = 600: 10 bits + sign


def test_slices() -> None:
    assert [slices(w, 4) for w in range(1, 9)] == [1, 1, 1, 1, 2, 2, 2, 2]
    assert [slices(w, 3) for w in (2, 3, 4, 6, 7)] == [1, 1, 2, 2, 3]


def test_network_cost_and_speedup() -> None:
    descs = [LayerDesc("a", 64, 576, 3136, 1, "conv"), LayerDesc("b", 1000, 512, 1, 1, "linear")]
    net = network_cost(descs, [[4, 4], [8, 8]], HW)
    assert net.latency_us == pytest.approx(52852.8 + 2150.4)
    assert net.writes == 3 + 32 and net.executes == 37632 + 256
    assert [c.name for c in net.layers] == ["a", "b"]
    base = network_cost(descs, uniform_policy(descs), HW).latency_us
    assert base == pytest.approx(105537.6 + 2150.4)
    assert speedup(descs, [[4, 4], [8, 8]], HW) == pytest.approx(base / net.latency_us)
    assert speedup(descs, uniform_policy(descs), HW) == pytest.approx(1.0)


def test_numpy_policy_accepted() -> None:
    np = pytest.importorskip("numpy")
    descs = [LayerDesc("a", 8, 8)]
    assert network_cost(descs, np.array([[4, 4]]), HW).executes == 4


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: network_cost([LayerDesc("a", 8, 8)], [[8, 8], [8, 8]], HW), "2 rows"),
        (lambda: network_cost([LayerDesc("a", 8, 8)], [[8]], HW), "expected"),
        (lambda: layer_cost(LayerDesc("a", 8, 8), 0, 8, HW), "weight bits"),
        (lambda: LayerDesc("a", 0, 8), "m = 0"),
        (lambda: LayerDesc("a", 8, 8, kind="pool"), "kind"),
    ],
)
def test_errors(call, match: str) -> None:
    with pytest.raises(CimcError, match=match):
        call()


hws = st.builds(
    Hardware,
    rows=st.integers(1, 512), cols=st.integers(1, 512), cell_bits=st.integers(1, 8),
    dac_bits=st.integers(1, 8), mapping=st.sampled_from(["dc", "dr", "of"]),
    t_write_us=st.floats(0, 100), t_exec_us=st.floats(0, 10),
)
descs = st.builds(
    LayerDesc, name=st.just("l"), m=st.integers(1, 3000), n=st.integers(1, 30000),
    P=st.integers(1, 20000), H=st.integers(1, 16), kind=st.sampled_from(["conv", "linear", "matmul"]),
)
bits = st.integers(1, 8)


@given(d=descs, hw=hws, w=bits, a=bits)
def test_latency_is_writes_plus_executes(d: LayerDesc, hw: Hardware, w: int, a: int) -> None:
    c = layer_cost(d, w, a, hw)
    assert c.latency_us == pytest.approx(c.writes * hw.t_write_us + c.executes * hw.t_exec_us, rel=1e-9, abs=1e-9)
    assert c.writes == d.H * c.row_tiles * c.col_tiles
    assert c.executes == d.H * d.P * c.tiles * -(-a // hw.dac_bits)
    # every physical cell fits in some tile, no tile is wasted
    assert (c.row_tiles - 1) * hw.rows < c.phys_rows <= c.row_tiles * hw.rows
    assert (c.col_tiles - 1) * hw.cols < c.phys_cols <= c.col_tiles * hw.cols
    cycles = d.H * d.P * -(-a // hw.dac_bits)
    assert c.adc_conversions == cycles * c.phys_cols * c.row_tiles
    assert c.dac_activations == cycles * c.phys_rows * c.col_tiles


@given(d=descs, hw=hws, w=st.integers(1, 7), a=st.integers(1, 7))
def test_monotone_in_bits(d: LayerDesc, hw: Hardware, w: int, a: int) -> None:
    c = layer_cost(d, w, a, hw)
    more_w = layer_cost(d, w + 1, a, hw)
    more_a = layer_cost(d, w, a + 1, hw)
    assert more_w.writes >= c.writes and more_w.executes >= c.executes
    assert more_w.latency_us >= c.latency_us
    assert more_a.writes == c.writes and more_a.executes >= c.executes
    assert more_a.latency_us >= c.latency_us


@given(d=descs, w=bits, a=bits)
def test_bigger_crossbar_never_slower(d: LayerDesc, w: int, a: int) -> None:
    small = layer_cost(d, w, a, dataclasses.replace(HW, rows=128, cols=128))
    assert layer_cost(d, w, a, HW).latency_us <= small.latency_us


@given(d=descs, w=bits, a=bits, h=st.integers(1, 8))
def test_linear_in_repeats(d: LayerDesc, w: int, a: int, h: int) -> None:
    one = layer_cost(dataclasses.replace(d, H=1), w, a, HW)
    many = layer_cost(dataclasses.replace(d, H=h), w, a, HW)
    assert many.writes == h * one.writes and many.executes == h * one.executes
    assert many.latency_us == pytest.approx(h * one.latency_us)
