"""Zero points of the stored operand on crossbars (issue 11, must-show 1 on the last two corpus
models): a static weight whose ``w - zw`` needs 9 bits, and a zero point on an operand written
at run time (onnxruntime's uint8 attention). The crossbar holds the integers as they are (uint8
in unsigned cells at 8 bits) and ``xbar.zp_correct`` subtracts ``zw * rowsum(x - zx)``; every
level computes the integers of ``cimq``, the bit-serial counters equal the closed form (the
correction's adds included), and what the lowering still refuses is one line.
"""

from __future__ import annotations

import numpy as np
import pytest
from xdsl.utils.exceptions import VerifyException

from cimc.analysis import analyse_layer, module_layers
from cimc.dialects import xbar
from cimc.errors import ExecutionError, UnsupportedModelError
from cimc.exec import run_at_level
from cimc.exec.xbar_exec import run_xbar
from cimc.ir_io import parse_module_text
from cimc.pipeline import lower
from cimc.target.counters import latency_us, layer_counters, zero_point_adds
from cimc.target.hw import Hardware
from cimc.target.mapping import map_cells, recomb_table, recombine
from cimc.target.occupancy import column_occupancy

#: A uint8 weight with zero point 100 (w - 100 needs 9 bits), an int8 weight with zero point
#: -50 (w + 50 up to 177), a uint8 written operand with zero point 125 (streamed uint8 with 7),
#: and a uint4 weight whose w - 3 fits 5 signed bits (stored centred: no correction).
MODULE = """
func.func @main(%x: tensor<?x5xf32>, %a: tensor<?x3x5xf32>, %b: tensor<?x5x2xf32>) -> (tensor<?x3x!cimq.q<s32:0.125>>, tensor<?x3x!cimq.q<s32:0.125>>, tensor<?x3x2x!cimq.q<s32:0.125>>, tensor<?x3x!cimq.q<s32:0.125>>) {
  %q = cimq.quantize %x : (tensor<?x5xf32>) -> tensor<?x5x!cimq.q<u8:0.5:zp=3>>
  %w = cimq.const dense<[[0, 255, 17], [100, 7, 230], [200, 99, 0], [1, 150, 64], [255, 254, 3]]> : tensor<5x3xi64> : tensor<5x3x!cimq.q<u8:0.25:zp=100>>
  %y = cimq.matmul %q, %w {layer = "fc"} : (tensor<?x5x!cimq.q<u8:0.5:zp=3>>, tensor<5x3x!cimq.q<u8:0.25:zp=100>>) -> tensor<?x3x!cimq.q<s32:0.125>>
  %v = cimq.const dense<[[-128, 127, 0], [0, 7, -7], [3, -99, 64], [1, 50, -1], [127, -127, 5]]> : tensor<5x3xi64> : tensor<5x3x!cimq.q<s8:0.25:zp=-50>>
  %z = cimq.matmul %q, %v {layer = "fs"} : (tensor<?x5x!cimq.q<u8:0.5:zp=3>>, tensor<5x3x!cimq.q<s8:0.25:zp=-50>>) -> tensor<?x3x!cimq.q<s32:0.125>>
  %qa = cimq.quantize %a : (tensor<?x3x5xf32>) -> tensor<?x3x5x!cimq.q<u8:0.5:zp=7>>
  %qb = cimq.quantize %b : (tensor<?x5x2xf32>) -> tensor<?x5x2x!cimq.q<u8:0.25:zp=125>>
  %s = cimq.matmul_act %qa, %qb {layer = "qk"} : (tensor<?x3x5x!cimq.q<u8:0.5:zp=7>>, tensor<?x5x2x!cimq.q<u8:0.25:zp=125>>) -> tensor<?x3x2x!cimq.q<s32:0.125>>
  %u = cimq.const dense<[[0, 15, 4], [3, 7, 2], [2, 9, 1], [1, 5, 0], [15, 0, 8]]> : tensor<5x3xi64> : tensor<5x3x!cimq.q<u4:0.25:zp=3>>
  %t = cimq.matmul %q, %u {layer = "f4"} : (tensor<?x5x!cimq.q<u8:0.5:zp=3>>, tensor<5x3x!cimq.q<u4:0.25:zp=3>>) -> tensor<?x3x!cimq.q<s32:0.125>>
  func.return %y, %z, %s, %t : tensor<?x3x!cimq.q<s32:0.125>>, tensor<?x3x!cimq.q<s32:0.125>>, tensor<?x3x2x!cimq.q<s32:0.125>>, tensor<?x3x!cimq.q<s32:0.125>>
}"""

#: The layers with a run-time correction and their zero point.
CORRECTED = {"fc": 100, "fs": -50, "qk": 125}


def _inputs(batch: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.uniform(-2.0, 130.0, (batch, 5)).astype(np.float32),
            rng.uniform(-4.0, 126.0, (batch, 3, 5)).astype(np.float32),
            rng.uniform(-33.0, 34.0, (batch, 5, 2)).astype(np.float32)]


def _lowered(level: str, hw: Hardware):
    module = parse_module_text(MODULE)
    lower(module, level, hw=hw)
    return module


@pytest.mark.parametrize("cell_bits", [1, 2, 4, 8])
@pytest.mark.parametrize("mapping", ["dc", "dr", "of"])
def test_unsigned_cells_recombine_exactly(mapping: str, cell_bits: int) -> None:
    """uint8 values in unsigned cells: the recombined column sums are ``x @ W`` exactly."""
    rng = np.random.default_rng(cell_bits)
    W = rng.integers(0, 256, (7, 4))
    W[0, 0], W[1, 1] = 0, 255
    x = rng.integers(0, 256, (6, 7))
    s = -(-8 // cell_bits)
    g = map_cells(W, 8, cell_bits, mapping, s, signed=False).astype(np.int64)
    drive = np.concatenate([x, x], axis=1) if mapping == "dr" else x
    y = recombine(drive @ g, recomb_table(4, 8, cell_bits, mapping, s, signed=False), 4)
    assert np.array_equal(y, x @ W)
    occupied = column_occupancy(W, 8, cell_bits, mapping, s, 256, signed=False)[0, 0]
    assert np.array_equal(occupied, (g != 0).any(axis=0) | (np.arange(g.shape[1]) == g.shape[1] - 1)
                          if mapping == "of" else (g != 0).any(axis=0))


def test_unsigned_cells_range_is_one_line() -> None:
    with pytest.raises(ExecutionError, match=r"^fc: values in \[-1, 3\] exceed 8-bit unsigned integers$"):
        map_cells(np.array([[-1, 3]]), 8, 4, "dc", 2, where="fc", signed=False)


@pytest.mark.parametrize("mapping,cell_bits", [("dc", 4), ("dr", 2), ("of", 1), ("dc", 8)])
def test_zero_points_equal_cimq_at_every_level(mapping: str, cell_bits: int) -> None:
    """xbar-mm, xbar (exact path, bit-serial fused and op by op) and xbar-opt equal cimq, at
    batch 2, on small tiles (several row and column tiles)."""
    hw = Hardware(rows=4, cols=8, cell_bits=cell_bits, mapping=mapping)
    ins = _inputs(2, seed=cell_bits)
    ref = run_at_level(parse_module_text(MODULE), "cimq", ins).outputs
    runs = [("xbar-mm", dict(fast=True)), ("xbar", dict(fast=True)), ("xbar", dict(fast=False)),
            ("xbar", dict(fast=False, fuse=False)), ("xbar-opt", dict(fast=False))]
    for level, kw in runs:
        module = _lowered(level, hw)
        out = run_xbar(module, ins, hw=hw, **kw).outputs
        for a, b in zip(out, ref):
            np.testing.assert_array_equal(a, b, err_msg=f"{level} {kw}")


def test_correction_is_in_the_ir() -> None:
    """Each corrected layer has one ``xbar.zp_correct`` of its input with the weight's zero
    point; uint8 operands are stored in unsigned cells at 8 bits; the centred uint4 has none."""
    module = _lowered("xbar", Hardware(rows=4, cols=8))
    for layer in module_layers(module):
        name = layer.layer.data
        ops = [op for op in layer.body.block.ops if isinstance(op, xbar.ZpCorrectOp)]
        assert [op.w_zp.value.data for op in ops] == ([CORRECTED[name]] if name in CORRECTED else [])
        assert analyse_layer(layer).w_zp == CORRECTED.get(name, 0)
        (mapped,) = [op for op in layer.body.walk() if isinstance(op, xbar.MapOp)]
        assert (mapped.w_unsigned is not None) == (name in ("fc", "qk")) == layer.w_unsigned
        assert layer.value("w_bits") == (5 if name == "f4" else 8)


def test_layer_without_its_correction_does_not_verify() -> None:
    module = _lowered("xbar", Hardware(rows=4, cols=8))
    layer = next(op for op in module_layers(module) if op.layer.data == "fc")
    (corr,) = [op for op in layer.body.block.ops if isinstance(op, xbar.ZpCorrectOp)]
    corr.output.replace_all_uses_with(corr.acc)
    corr.detach()
    corr.erase()
    with pytest.raises(VerifyException, match="xbar.layer 'fc': the weight's zero point 100 needs one "
                       "xbar.zp_correct of the input with w_zp = 100, got 0"):
        layer.verify()


@pytest.mark.parametrize("batch", [1, 3])
def test_bit_serial_counters_equal_the_closed_form(batch: int) -> None:
    """The interpreter's counters (bit-serial) equal the closed form, the correction's
    ``H * P * B * (n + m)`` adds included; the latency is the same as without a zero point."""
    hw = Hardware(rows=4, cols=8)
    module = _lowered("xbar", hw)
    res = run_xbar(module, _inputs(batch), hw=hw, fast=False)
    rows = {r["name"]: r for r in res.report["layers"]}
    for layer in module_layers(module):
        prog = analyse_layer(layer)
        want = prog.counters(batch, hw).as_dict()
        got = {k: rows[prog.name][k] for k in want}
        assert got == want, prog.name
        plain = layer_counters(prog.geometry, hw, batch=batch, dynamic=prog.dynamic)
        d = prog.geometry.desc
        extra = zero_point_adds(d.H, d.P, d.n, d.m, batch) if prog.name in CORRECTED else 0
        assert want["recombine_adds"] == plain.recombine_adds + extra
        assert rows[prog.name]["latency_us"] == pytest.approx(latency_us(plain, hw))
    fast = run_xbar(module, _inputs(batch), hw=hw, fast=True).report["layers"]
    assert [r["recombine_adds"] for r in fast] == [rows[r["name"]]["recombine_adds"] for r in fast]


#: What the crossbar lowering still refuses: (cimq text, the line's start).
REFUSALS = {
    "weight computed at run time": ("""
func.func @main(%x: tensor<1x4xf32>, %v: tensor<4x2xf32>) -> tensor<1x2x!cimq.q<s32:0.125>> {
  %q = cimq.quantize %x : (tensor<1x4xf32>) -> tensor<1x4x!cimq.q<u4:0.5>>
  %w = cimq.quantize %v : (tensor<4x2xf32>) -> tensor<4x2x!cimq.q<s4n:0.25>>
  %a = cimq.matmul %q, %w {layer = "fc"} : (tensor<1x4x!cimq.q<u4:0.5>>, tensor<4x2x!cimq.q<s4n:0.25>>) -> tensor<1x2x!cimq.q<s32:0.125>>
  func.return %a : tensor<1x2x!cimq.q<s32:0.125>>
}""", "linear layer 'fc' (cimq.matmul): the weight is computed at run time, not a constant"),
    "conv weight computed at run time": ("""
func.func @main(%x: tensor<1x1x4x4xf32>, %v: tensor<2x1x3x3xf32>) -> tensor<1x2x2x2x!cimq.q<s32:0.125>> {
  %q = cimq.quantize %x : (tensor<1x1x4x4xf32>) -> tensor<1x1x4x4x!cimq.q<u4:0.5>>
  %w = cimq.quantize %v : (tensor<2x1x3x3xf32>) -> tensor<2x1x3x3x!cimq.q<s4n:0.25>>
  %a = cimq.conv %q, %w {layer = "c1", strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, group = 1 : i64} : (tensor<1x1x4x4x!cimq.q<u4:0.5>>, tensor<2x1x3x3x!cimq.q<s4n:0.25>>) -> tensor<1x2x2x2x!cimq.q<s32:0.125>>
  func.return %a : tensor<1x2x2x2x!cimq.q<s32:0.125>>
}""", "conv layer 'c1' (cimq.conv): the weight is computed at run time, not a constant"),
    "input broadcast against a weight batch": ("""
func.func @main(%x: tensor<4x5xf32>) -> tensor<3x4x6x!cimq.q<s32:0.125>> {
  %q = cimq.quantize %x : (tensor<4x5xf32>) -> tensor<4x5x!cimq.q<u4:0.5>>
  %w = cimq.const dense<1> : tensor<3x5x6xi8> : tensor<3x5x6x!cimq.q<s4n:0.25>>
  %a = cimq.matmul %q, %w {layer = "mm"} : (tensor<4x5x!cimq.q<u4:0.5>>, tensor<3x5x6x!cimq.q<s4n:0.25>>) -> tensor<3x4x6x!cimq.q<s32:0.125>>
  func.return %a : tensor<3x4x6x!cimq.q<s32:0.125>>
}""", "linear layer 'mm' (cimq.matmul): input [4, 5] against the weight batch [3] broadcasts the input"),
    "several batch dims before a weight batch": ("""
func.func @main(%x: tensor<?x2x3x4x5xf32>) -> tensor<?x2x3x4x6x!cimq.q<s32:0.125>> {
  %q = cimq.quantize %x : (tensor<?x2x3x4x5xf32>) -> tensor<?x2x3x4x5x!cimq.q<u4:0.5>>
  %w = cimq.const dense<1> : tensor<3x5x6xi8> : tensor<3x5x6x!cimq.q<s4n:0.25>>
  %a = cimq.matmul %q, %w {layer = "mm"} : (tensor<?x2x3x4x5x!cimq.q<u4:0.5>>, tensor<3x5x6x!cimq.q<s4n:0.25>>) -> tensor<?x2x3x4x6x!cimq.q<s32:0.125>>
  func.return %a : tensor<?x2x3x4x6x!cimq.q<s32:0.125>>
}""", "linear layer 'mm' (cimq.matmul): input [?, 2, 3, 4, 5] has several batch dims before the weight batch [3]"),
    "attention batch dims differ": ("""
func.func @main(%a: tensor<2x3x4xf32>, %b: tensor<1x4x3xf32>) -> tensor<2x3x3x!cimq.q<s32:0.125>> {
  %qa = cimq.quantize %a : (tensor<2x3x4xf32>) -> tensor<2x3x4x!cimq.q<s8:0.5>>
  %qb = cimq.quantize %b : (tensor<1x4x3xf32>) -> tensor<1x4x3x!cimq.q<s8:0.25>>
  %y = cimq.matmul_act %qa, %qb {layer = "av"} : (tensor<2x3x4x!cimq.q<s8:0.5>>, tensor<1x4x3x!cimq.q<s8:0.25>>) -> tensor<2x3x3x!cimq.q<s32:0.125>>
  func.return %y : tensor<2x3x3x!cimq.q<s32:0.125>>
}""", "attention matmul 'av' (cimq.matmul_act): batch dims [2] and [1] differ (no broadcasting on the crossbar)"),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_remaining_refusals_are_one_line(case: str) -> None:
    """Every refusal of the crossbar lowering names the layer (the ONNX node), the op and the
    reason on one line."""
    text, start = REFUSALS[case]
    with pytest.raises(UnsupportedModelError) as info:
        lower(parse_module_text(text), "xbar-mm")
    msg = str(info.value)
    assert msg.startswith(start) and "\n" not in msg, msg
