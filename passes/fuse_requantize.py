"""``cimq-fuse-requantize``: fold ``dequantize -> [add bias] -> [relu|clip] -> quantize`` chains.

The importer translates ONNX faithfully: an integer product is dequantized to float, the float
bias is added, ReLU or Clip applied, and the result quantized again. When every value in that
chain has a single use, the chain is one :class:`cimc.dialects.cimq.RequantizeOp`, which the
crossbar levels run as one host op on the accumulator. The semantics are unchanged (see
:mod:`cimc.semantics`: requantize is defined as that chain).
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects.builtin import FloatAttr, IntegerAttr, ModuleOp, TensorType, f64, i64
from xdsl.ir import Operation, SSAValue
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import (
    PatternRewriter,
    PatternRewriteWalker,
    RewritePattern,
    op_type_rewrite_pattern,
)

from cimc.dialects import cimq


def _single_use_producer(value: SSAValue) -> Operation | None:
    if not value.has_one_use():
        return None
    return value.owner if isinstance(value.owner, Operation) else None


def _bias_axis(bias: SSAValue, result_rank: int) -> int | None:
    """The axis a constant bias broadcasts along, if it has exactly one non-unit dim."""
    shape = bias.type.get_shape() if isinstance(bias.type, TensorType) else ()
    non_unit = [i for i, d in enumerate(shape) if d != 1]
    if len(non_unit) != 1:
        return None
    return result_rank - len(shape) + non_unit[0]


class FuseRequantize(RewritePattern):
    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: cimq.QuantizeOp, rewriter: PatternRewriter) -> None:
        chain: list[Operation] = [op]
        clamp_min: float | None = None
        clamp_max: float | None = None
        bias: SSAValue | None = None
        bias_axis: int | None = None
        value = op.input
        producer = _single_use_producer(value)
        if isinstance(producer, cimq.ReluOp):
            clamp_min = 0.0
        elif isinstance(producer, cimq.ClipOp):
            clamp_min = None if producer.min is None else float(producer.min.value.data)
            clamp_max = None if producer.max is None else float(producer.max.value.data)
        if isinstance(producer, (cimq.ReluOp, cimq.ClipOp)):
            chain.append(producer)
            value = producer.input
            producer = _single_use_producer(value)
        if isinstance(producer, cimq.AddOp):
            rank = len(producer.output.type.get_shape())  # type: ignore[union-attr]
            for mine, other in ((producer.lhs, producer.rhs), (producer.rhs, producer.lhs)):
                if isinstance(other.owner, cimq.ConstOp) and isinstance(
                    mine.owner, cimq.DequantizeOp
                ):
                    bias_axis = _bias_axis(other, rank)
                    if bias_axis is not None:
                        bias = other
                        chain.append(producer)
                        value = mine
                        producer = _single_use_producer(value)
                    break
        if not isinstance(producer, cimq.DequantizeOp):
            return
        acc_type = producer.input.type
        elem = acc_type.element_type if isinstance(acc_type, TensorType) else None
        if not isinstance(elem, cimq.QuantType) or elem.width != 32:
            return
        attrs = {}
        if bias is not None:
            attrs["bias_axis"] = IntegerAttr(bias_axis, i64)
        if clamp_min is not None:
            attrs["clamp_min"] = FloatAttr(clamp_min, f64)
        if clamp_max is not None:
            attrs["clamp_max"] = FloatAttr(clamp_max, f64)
        for name in ("src",):
            if name in op.attributes:
                attrs[name] = op.attributes[name]
        operands = [producer.input] + ([bias] if bias is not None else [])
        new = cimq.RequantizeOp.create(
            operands=operands, result_types=[op.output.type], attributes=attrs
        )
        rewriter.replace(op, [new])
        for dead in chain[1:] + [producer]:
            if not dead.results[0].uses:
                rewriter.erase(dead)


@dataclass(frozen=True)
class FuseRequantizePass(ModulePass):
    """Fuse dequantize/bias/ReLU/Clip/quantize chains into ``cimq.requantize``."""

    name = "cimq-fuse-requantize"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        PatternRewriteWalker(FuseRequantize(), apply_recursively=False).rewrite_module(op)
