"""The xbar dialect: types, assembly formats, print/parse round trips (with blobs), verifiers."""

from __future__ import annotations

import numpy as np
import pytest
from xdsl.dialects.builtin import StringAttr
from xdsl.utils.exceptions import ParseError, VerifyException

from cimc.dialects import xbar
from cimc.errors import InputFileError
from cimc.target.hw import Hardware
from cimc.ir_io import module_text, parse_module_text
from cimc.pipeline import lower
from xbar_ir import attention_module, conv_module, linear_module


def _lowered(level: str, hw: Hardware, maker, **kw):
    module, _ = maker(np.random.default_rng(0), **kw)
    lower(module, level, hw=hw)
    return module


CASES = [
    (conv_module, dict(cin=4, cout=6, k=3, size=5, groups=2, a_signed=True, w_bits=5)),
    (linear_module, dict(k=7, n=5, tokens=3)),
    (attention_module, dict(heads=2, tokens=4, dim=3)),
]


@pytest.mark.parametrize("level", ["xbar-mm", "xbar", "xbar-opt"])
@pytest.mark.parametrize("maker,kw", CASES, ids=["conv", "linear", "attention"])
@pytest.mark.parametrize("generic", [False, True])
def test_round_trip(level, maker, kw, generic):
    hw = Hardware(rows=8, cols=8, cell_bits=2, mapping="dr")
    module = _lowered(level, hw, maker, **kw)
    text = module_text(module, generic=generic)
    again = parse_module_text(text)
    assert again.is_structurally_equivalent(module)
    assert module_text(again, generic=generic) == text
    if level != "xbar-mm":
        assert "xbar.layer" in text
        assert ("xbar.map" if generic else "xbar.map %w") in text
        # static weights stay the module's blobs; no cells are made to print a program
        assert ("#cimq.blob<" in text) == (maker is not attention_module)
        assert "cells\"" not in text


def test_custom_types_print_and_parse():
    text = """
func.func @f(%g: !xbar.cells<2x27x32, c4>, %t: !xbar.tile<256x128, c2>, %p: !xbar.plane<256, d2>,
             %c: !xbar.columns<128>, %b: !xbar.buf<2x32>) {
  func.return
}"""
    module = parse_module_text(text)
    out = module_text(module)
    for piece in ("!xbar.cells<2x27x32, c4>", "!xbar.tile<256x128, c2>", "!xbar.plane<256, d2>",
                  "!xbar.columns<128>", "!xbar.buf<2x32>"):
        assert piece in out
    fn = next(iter(module.ops))
    cells = fn.body.block.args[0].type
    assert isinstance(cells, xbar.CellsType) and cells.cols.data == 32


@pytest.mark.parametrize("bad", ["!xbar.cells<2x27, c4>", "!xbar.tile<8x8, q4>", "!xbar.cells<1x2x3, c9>"])
def test_bad_types_are_clear_errors(bad):
    with pytest.raises(InputFileError):
        parse_module_text(f"func.func @f(%g: {bad}) {{\n func.return\n}}")


def test_program_cycle_verifiers():
    ok = """
func.func @f(%g: !xbar.cells<1x8x8, c4>, %i: index, %x: tensor<1x1x3x8xi32>) {
  %t = xbar.program %g[%i, %i, %i] : !xbar.cells<1x8x8, c4> -> !xbar.tile<8x8, c4>
  %p = xbar.plane %x[%i, %i], %i : tensor<1x1x3x8xi32> -> !xbar.plane<8, d1>
  %c = xbar.cycle %t, %p : !xbar.tile<8x8, c4>, !xbar.plane<8, d1> -> !xbar.columns<8>
  func.return
}"""
    parse_module_text(ok)
    with pytest.raises(InputFileError, match="cells of 4 bits on a tile of 2-bit cells"):
        parse_module_text(ok.replace("!xbar.tile<8x8, c4>", "!xbar.tile<8x8, c2>"))
    with pytest.raises(InputFileError, match="a plane of 4 rows on a tile of 8 rows"):
        parse_module_text(ok.replace("!xbar.plane<8, d1>", "!xbar.plane<4, d1>"))


def test_layer_verifier_names_the_layer():
    module = _lowered("xbar", Hardware(rows=8, cols=8), linear_module, k=7, n=5)
    layer = next(op for op in module.walk() if isinstance(op, xbar.LayerOp))
    layer.properties["slices"] = xbar.i64_attr(5)
    with pytest.raises(VerifyException, match="xbar.layer 'fc': slices 5 != ceil"):
        layer.verify()
    layer.properties["slices"] = xbar.i64_attr(2)
    layer.properties["chunks"] = xbar.i64_attr(3)
    with pytest.raises(VerifyException, match="chunks 3 != ceil"):
        layer.verify()
    layer.properties["chunks"] = xbar.i64_attr(8)
    layer.properties["mapping"] = StringAttr("xy")
    with pytest.raises(VerifyException, match="mapping 'xy'"):
        layer.verify()


def test_matmul_bits_can_only_grow():
    module = _lowered("xbar-mm", Hardware(), linear_module, k=7, n=5, w_bits=6, a_bits=5)
    mm = next(op for op in module.walk() if isinstance(op, xbar.MatMulOp))
    assert (mm.w_bits.value.data, mm.a_bits.value.data) == (6, 5)
    mm.properties["w_bits"] = xbar.i64_attr(4)
    with pytest.raises(VerifyException, match="needs 6 bits but the layer uses 4"):
        mm.verify()


def test_im2col_shape_checked():
    module = _lowered("xbar-mm", Hardware(), conv_module, cin=2, cout=3, k=3, size=5)
    text = module_text(module).replace("tensor<1x1x9x18x", "tensor<1x1x10x18x")
    with pytest.raises((InputFileError, ParseError)):
        parse_module_text(text)
