"""cimc.pipeline and cimc.ir_io: levels, verification after every pass, file round trips."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp
from xdsl.passes import ModulePass

from cimc.errors import CimcError, InputFileError
from cimc.ir_io import bind_blobs, module_level, module_text, parse_module_text, read_module, write_module
from cimc.pipeline import apply_passes, levels, lower, passes_between
from cimc.weights import WeightStore, sidecar_path

SRC = """
func.func @main(%x: tensor<1x4xf32>) -> tensor<1x2xf32> {
  %q = cimq.quantize %x : (tensor<1x4xf32>) -> tensor<1x4x!cimq.q<u4:0.5>>
  %w = cimq.const #cimq.blob<"fc.weight", "DIGEST"> : tensor<4x2x!cimq.q<s4n:0.25>>
  %a = cimq.matmul %q, %w {layer = "fc"} : (tensor<1x4x!cimq.q<u4:0.5>>, tensor<4x2x!cimq.q<s4n:0.25>>) -> tensor<1x2x!cimq.q<s32:0.125>>
  %f = cimq.dequantize %a : (tensor<1x2x!cimq.q<s32:0.125>>) -> tensor<1x2xf32>
  %r = cimq.relu %f : (tensor<1x2xf32>) -> tensor<1x2xf32>
  %o = cimq.quantize %r : (tensor<1x2xf32>) -> tensor<1x2x!cimq.q<u8:0.1>>
  %d = cimq.dequantize %o : (tensor<1x2x!cimq.q<u8:0.1>>) -> tensor<1x2xf32>
  func.return %d : tensor<1x2xf32>
}
"""


def _module() -> ModuleOp:
    store = WeightStore()
    digest = store.put(np.array([[1, -1], [2, 3], [0, 7], [-7, 1]], np.int8))
    module = parse_module_text(SRC.replace("DIGEST", digest))
    assert not bind_blobs(module, store)
    return module


def test_levels_are_ordered_and_documented() -> None:
    names = [n for n, _ in levels()]
    assert names[:2] == ["cimq", "cimq-fused"]
    assert "xbar" in names and names.index("xbar-mm") < names.index("xbar")
    assert all(doc for _, doc in levels())


def test_lower_sets_level_and_refuses_to_raise() -> None:
    m = _module()
    lower(m, "cimq-fused")
    assert module_level(m) == "cimq-fused"
    assert "cimq.requantize" in module_text(m)
    with pytest.raises(CimcError, match="cannot raise IR"):
        passes_between("cimq-fused", "cimq")


def test_print_between_passes_names_each_pass() -> None:
    m = _module()
    out = io.StringIO()
    lower(m, "xbar", print_between=True, stream=out)
    text = out.getvalue()
    for name in ("cimq-fuse-requantize", "convert-cimq-to-xbar", "xbar-tile"):
        assert f"IR after {name}" in text


def test_verification_after_every_pass() -> None:
    from xdsl.dialects import func

    class Breaker(ModulePass):
        name = "break-types"

        def apply(self, ctx: Context, op: ModuleOp) -> None:
            for f in op.ops:
                if isinstance(f, func.FuncOp):
                    ret = f.body.block.last_op
                    ret.operands = [f.body.block.args[0]]

    with pytest.raises(CimcError, match="pass 'break-types' produced invalid IR"):
        apply_passes(Context(), _module(), [Breaker()])


def test_write_and_read_module_with_weights(tmp_path: Path) -> None:
    m = _module()
    path = tmp_path / "m.mlir"
    side = write_module(m, path)
    assert side == sidecar_path(path) and side.exists()
    back = read_module(path)
    assert back.is_structurally_equivalent(m)


def test_read_module_errors(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="file not found"):
        read_module(tmp_path / "none.mlir")
    bad = tmp_path / "bad.mlir"
    bad.write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(InputFileError):
        read_module(bad)
