"""The crossbar passes: convert-cimq-to-xbar, xbar-tile, xbar-narrow-slices, xbar-set-bits."""

from __future__ import annotations

import numpy as np
import pytest

from cimc.context import make_context
from cimc.target import LayerDesc, layer_cost
from cimc.dialects import xbar
from cimc.errors import CimcError, HardwareError, UnsupportedModelError
from cimc.exec.cimq_exec import run_cimq
from cimc.analysis import analyse_layer, module_layers
from cimc.exec.xbar_exec import run_xbar
from cimc.target.hw import Hardware
from cimc.ir_io import parse_module_text
from cimc.passes import get_all_passes
from cimc.passes.xbar_set_bits import XbarSetBitsPass
from cimc.passes.xbar_tile import XbarTilePass
from cimc.pipeline import levels, lower
from xbar_ir import attention_module, conv_module, linear_module


def _lowered(module, level, hw):
    out = module.clone()
    lower(out, level, hw=hw)
    return out


def _ops(module, cls):
    return [op for op in module.walk() if isinstance(op, cls)]


def test_levels_and_registry():
    names = [n for n, _ in levels()]
    assert names[names.index("cimq-fused") + 1 :] == ["xbar-mm", "xbar", "xbar-opt"]
    passes = get_all_passes()
    for name in ("convert-cimq-to-xbar", "xbar-tile", "xbar-narrow-slices", "xbar-set-bits"):
        assert passes[name]().name == name


def test_convert_conv_grouped_and_depthwise():
    rng = np.random.default_rng(0)
    for groups, kind in ((1, "conv"), (2, "conv"), (4, "depthwise")):
        module, _ = conv_module(rng, cin=4, cout=8, k=3, size=6, groups=groups)
        mm = _lowered(module, "xbar-mm", Hardware())
        (op,) = _ops(mm, xbar.MatMulOp)
        assert op.kind.data == kind and op.layer.data == "conv"
        assert op.rhs.type.get_shape() == (groups, 4 // groups * 9, 8 // groups)
        assert len(_ops(mm, xbar.Im2ColOp)) == 1 and len(_ops(mm, xbar.Col2ImOp)) == 1
        # the original OIHW weight constant is gone, only the [G, n, m] one is left
        assert sum(1 for o in mm.walk() if o.name == "cimq.const") == 1


def test_convert_keeps_bits_and_signedness():
    rng = np.random.default_rng(1)
    module, _ = attention_module(rng, heads=2, tokens=3, dim=4, w_bits=5, a_bits=3, a_signed=False)
    xb = _lowered(module, "xbar", Hardware(rows=8, cols=8))
    (layer,) = module_layers(xb)
    assert layer.is_dynamic and (layer.value("w_bits"), layer.value("a_bits"), layer.value("a_signed")) == (5, 3, 0)
    assert (layer.value("m"), layer.value("n"), layer.value("P"), layer.value("H")) == (3, 4, 3, 2)


def test_convert_rejects_runtime_weight():
    text = """
func.func @main(%x: tensor<1x4xf32>, %v: tensor<4x2xf32>) -> tensor<1x2x!cimq.q<s32:0.125>> {
  %q = cimq.quantize %x : (tensor<1x4xf32>) -> tensor<1x4x!cimq.q<u4:0.5>>
  %w = cimq.quantize %v : (tensor<4x2xf32>) -> tensor<4x2x!cimq.q<s4n:0.25>>
  %a = cimq.matmul %q, %w {layer = "fc"} : (tensor<1x4x!cimq.q<u4:0.5>>, tensor<4x2x!cimq.q<s4n:0.25>>) -> tensor<1x2x!cimq.q<s32:0.125>>
  func.return %a : tensor<1x2x!cimq.q<s32:0.125>>
}"""
    with pytest.raises(UnsupportedModelError, match=r"linear layer 'fc' \(cimq.matmul\): the weight is computed at run time"):
        lower(parse_module_text(text), "xbar-mm")


def test_unsigned_8bit_written_operand_in_unsigned_cells():
    text = """
func.func @main(%a: tensor<1x3x4xf32>, %b: tensor<1x4x3xf32>) -> tensor<1x3x3x!cimq.q<s32:0.125>> {
  %qa = cimq.quantize %a : (tensor<1x3x4xf32>) -> tensor<1x3x4x!cimq.q<s8:0.5>>
  %qb = cimq.quantize %b : (tensor<1x4x3xf32>) -> tensor<1x4x3x!cimq.q<u8:0.25>>
  %y = cimq.matmul_act %qa, %qb {layer = "av"} : (tensor<1x3x4x!cimq.q<s8:0.5>>, tensor<1x4x3x!cimq.q<u8:0.25>>) -> tensor<1x3x3x!cimq.q<s32:0.125>>
  func.return %y : tensor<1x3x3x!cimq.q<s32:0.125>>
}"""
    """A u8 written operand (9 bits as signed cells) is stored as unsigned cells at 8 bits; a u7
    one as 8-bit signed cells; both exact (bit-serial)."""
    rng = np.random.default_rng(0)
    ins = [rng.standard_normal((1, 3, 4)).astype(np.float32) * 5, np.abs(rng.standard_normal((1, 4, 3))).astype(np.float32) * 90]
    hw = Hardware(rows=4, cols=8)
    for spec, unsigned in (("u8", True), ("u7", False)):
        module = parse_module_text(text.replace("u8:0.25", f"{spec}:0.25"))
        ref, _ = run_cimq(module, ins)
        lowered = _lowered(module, "xbar", hw)
        (layer,) = [op for op in lowered.walk() if isinstance(op, xbar.LayerOp)]
        assert layer.value("w_bits") == 8 and layer.w_unsigned == unsigned
        res = run_xbar(lowered, ins, hw=hw, fast=False)
        assert np.array_equal(ref[0], res.outputs[0])


@pytest.mark.parametrize("bad", [dict(rows=0), dict(cell_bits=9), dict(dac_bits=0), dict(mapping="xy")])
def test_tile_rejects_bad_hardware(bad):
    module, _ = linear_module(np.random.default_rng(0), k=4, n=2)
    lower(module, "xbar-mm")
    with pytest.raises(HardwareError):
        XbarTilePass(**bad).apply(make_context(), module)
    with pytest.raises(HardwareError):
        Hardware(**bad)


@pytest.mark.parametrize("mapping", ["dc", "dr", "of"])
@pytest.mark.parametrize("w,c", [(5, 4), (3, 2), (4, 1), (8, 4), (6, 2)])
def test_narrow_slices_saves_and_stays_exact(mapping, w, c):
    rng = np.random.default_rng(w * 10 + c)
    module, inputs = conv_module(rng, cin=6, cout=12, k=3, size=5, w_bits=w, a_bits=4, a_signed=True)
    hw = Hardware(rows=16, cols=16, cell_bits=c, mapping=mapping)
    paper, opt = _lowered(module, "xbar", hw), _lowered(module, "xbar-opt", hw)
    p, o = analyse_layer(module_layers(paper)[0]), analyse_layer(module_layers(opt)[0])
    ref, _ = run_cimq(module, inputs)
    res = run_xbar(opt, inputs, hw=hw, fast=False)
    assert np.array_equal(ref[0], res.outputs[0])
    saves = mapping != "of" and -(-(w - 1) // c) < -(-w // c)
    assert (o.slices < p.slices) == saves
    if saves:
        assert o.phys_cols < p.phys_cols or o.phys_rows < p.phys_rows
        assert o.writes == o.row_tiles * o.col_tiles <= p.writes and o.executes <= p.executes
        assert res.report["layers"][0]["writes"] == o.writes
        if (mapping, w, c) == ("dc", 5, 4):  # 2*12*2 = 48 -> 24 columns: 3 -> 2 column tiles of 16
            assert (o.writes, p.writes) == (o.row_tiles * 2, p.row_tiles * 3)
    else:
        assert (o.writes, o.executes) == (p.writes, p.executes)
    # the paper's level is the closed form, exactly
    cost = layer_cost(LayerDesc("conv", p.m, p.n, p.P, p.H), w, 4, hw)
    assert (p.writes, p.executes) == (cost.writes, cost.executes)


def test_set_bits_widens_exactly_and_refuses_to_narrow():
    rng = np.random.default_rng(4)
    module, inputs = linear_module(rng, k=30, n=7, tokens=2, w_bits=3, a_bits=2, a_signed=True)
    hw = Hardware(rows=16, cols=16, cell_bits=2)
    for level in ("xbar-mm", "xbar-opt"):
        prog = _lowered(module, level, hw)
        XbarSetBitsPass(8, 8).apply(make_context(), prog)
        if level == "xbar-mm":
            lower(prog, "xbar", hw=hw)
        ref, _ = run_cimq(module, inputs)
        res = run_xbar(prog, inputs, hw=hw, fast=False)
        assert np.array_equal(ref[0], res.outputs[0])
        p = analyse_layer(module_layers(prog)[0])
        cost = layer_cost(LayerDesc("fc", 7, 30, 2), 8, 8, hw)
        assert (p.w_bits, p.a_bits, p.writes, p.executes) == (8, 8, cost.writes, cost.executes)
    with pytest.raises(CimcError, match="can only be widened"):
        XbarSetBitsPass(2, 8).apply(make_context(), _lowered(module, "xbar", hw))
