"""``xbar-set-bits{w-bits=8 a-bits=8}``: widen every crossbar layer to the given bits.

Used for the paper's baseline, "the same model at all-8/8 on the same hardware": the report
compiles the model once more with every layer's weight and input bits set to 8 and reads the
cost off that program. Widening is exact (the operands' integers fit the wider grid; signed
inputs get the wider offset), so the widened program still computes the same integers. Works on
``xbar.matmul``/``xbar.matmul_dyn`` (``xbar-mm``) and on ``xbar.layer`` (``xbar``, rebuilt
with the paper's slicing, also undoing ``xbar-narrow-slices``). A value of 0 leaves that side as it is.
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp
from xdsl.ir import Operation
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import PatternRewriter, PatternRewriteWalker, RewritePattern

from cimc.dialects import xbar
from cimc.errors import CimcError
from cimc.passes.options import check_int
from cimc.passes.xbar_tile import build_layer, layer_crossbar
from cimc.target.geometry import slices


@dataclass
class SetBits(RewritePattern):
    w_bits: int
    a_bits: int

    def _bits(self, op: Operation, w: int, a: int, name: str) -> tuple[int, int]:
        nw, na = self.w_bits or w, self.a_bits or a
        if nw < w or na < a:
            raise CimcError(
                f"xbar-set-bits: layer '{name}' has w{w}/a{a}; it can only be widened, not set to "
                f"w{nw}/a{na}"
            )
        return nw, na

    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter) -> None:
        if isinstance(op, (xbar.MatMulOp, xbar.MatMulDynOp)):
            w, a = self._bits(op, op.w_bits.value.data, op.a_bits.value.data, op.layer.data)
            if (w, a) != (op.w_bits.value.data, op.a_bits.value.data):
                op.properties["w_bits"] = xbar.i64_attr(w)
                op.properties["a_bits"] = xbar.i64_attr(a)
                rewriter.notify_op_modified(op)
            return
        if not isinstance(op, xbar.LayerOp):
            return
        w, a = self._bits(op, op.value("w_bits"), op.value("a_bits"), op.layer.data)
        paper_slices = slices(w, op.value("cell_bits"))
        if (w, a) == (op.value("w_bits"), op.value("a_bits")) and op.value("slices") == paper_slices:
            return
        new = build_layer(
            op.input, op.weight, name=op.layer.data, kind=op.kind.data, w_bits=w, a_bits=a,
            dynamic=op.is_dynamic, hw=layer_crossbar(op),
        )
        rewriter.replace(op, [new])


@dataclass(frozen=True)
class XbarSetBitsPass(ModulePass):
    """Widen every crossbar layer to ``w-bits``/``a-bits`` (0 = keep)."""

    name = "xbar-set-bits"

    w_bits: int = 8
    a_bits: int = 8

    def __post_init__(self) -> None:
        check_int(self.name, "w-bits", self.w_bits, 0, 8)
        check_int(self.name, "a-bits", self.a_bits, 0, 8)

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        PatternRewriteWalker(SetBits(self.w_bits, self.a_bits), apply_recursively=False).rewrite_module(op)
