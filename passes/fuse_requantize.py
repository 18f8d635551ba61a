"""``cimq-fuse-requantize``: fold requantization chains into one ``cimq.requantize``.

The importer translates ONNX faithfully: an integer product is dequantized to float, then per
channel scaled (folded batch norm), biased, added to a residual branch, clamped by ReLU or Clip,
and quantized again. A chain ::

    dequantize(s32) -> [mul c] -> [add c] -> [add r] -> [relu | clip] -> quantize

where ``c`` is a constant per channel (or a scalar), ``r`` a tensor of the chain's shape, and every
intermediate value has a single use, becomes one :class:`cimc.dialects.cimq.RequantizeOp`. If the
last float value is also read elsewhere (a residual branch), the fused op returns it as its
second result. The semantics are unchanged (:mod:`cimc.semantics`: requantize is defined as that
chain, one float32 rounding per step); this pass is the only place chains are fused, and the
executor runs the fused op with one kernel pass where the shapes allow.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from xdsl.context import Context
from xdsl.dialects.builtin import DenseArrayBase, FloatAttr, IntegerAttr, ModuleOp, TensorType, f64, i32, i64
from xdsl.ir import Attribute, Operation, SSAValue
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import (
    PatternRewriter,
    PatternRewriteWalker,
    RewritePattern,
    op_type_rewrite_pattern,
)
from xdsl.rewriter import InsertPoint

from cimc.dialects import cimq

_STAGES = ("mul", "bias", "residual", "clamp")


def _channel_axis(const: SSAValue, rank: int) -> int | None | bool:
    """The axis a constant broadcasts along (one non-unit dim), None for a scalar-like constant,
    False if it is neither."""
    if not isinstance(const.owner, cimq.ConstOp) or not isinstance(const.type, TensorType):
        return False
    shape = const.type.get_shape()
    non_unit = [i for i, d in enumerate(shape) if d != 1]
    if len(shape) > rank or len(non_unit) > 1:
        return False
    return rank - len(shape) + non_unit[0] if non_unit else None


@dataclass
class _Chain:
    head: cimq.DequantizeOp
    inner: list[Operation] = field(default_factory=list)
    operands: dict[str, SSAValue] = field(default_factory=dict)
    attrs: dict[str, Attribute] = field(default_factory=dict)
    stage: int = 0
    tail: cimq.QuantizeOp | None = None
    keep: bool = False

    def take(self, stage: str) -> bool:
        """Whether ``stage`` may come next (stages keep their order and appear once)."""
        i = _STAGES.index(stage)
        if i < self.stage:
            return False
        self.stage = i + 1
        return True


def _step(chain: _Chain, user: Operation, value: SSAValue, rank: int) -> bool:
    """Add ``user`` (which reads ``value``) to the chain; False if it cannot be fused."""
    if isinstance(user, (cimq.MulOp, cimq.AddOp)):
        other = user.operands[1] if user.operands[0] is value else user.operands[0]
        if other is value:
            return False
        axis = _channel_axis(other, rank)
        stage = "mul" if isinstance(user, cimq.MulOp) else "bias"
        if axis is False:
            if stage == "mul" or other.type != value.type or not chain.take("residual"):
                return False
            chain.operands["residual"] = other
        else:
            if not chain.take(stage):
                return False
            chain.operands[stage] = other
            if axis is not None:
                chain.attrs[f"{stage}_axis"] = IntegerAttr(axis, i64)
    elif isinstance(user, (cimq.ReluOp, cimq.ClipOp)):
        if not chain.take("clamp"):
            return False
        lo = 0.0 if isinstance(user, cimq.ReluOp) else user.min
        hi = None if isinstance(user, cimq.ReluOp) else user.max
        for name, bound in (("clamp_min", lo), ("clamp_max", hi)):
            if bound is not None:
                chain.attrs[name] = FloatAttr(bound if isinstance(bound, float) else float(bound.value.data), f64)
    else:
        return False
    chain.inner.append(user)
    return True


def match_chain(head: cimq.DequantizeOp) -> _Chain | None:
    """The requantization chain that starts at ``head``, if there is one."""
    acc = head.input.type
    elem = acc.element_type if isinstance(acc, TensorType) else None
    if not isinstance(elem, cimq.QuantType) or elem.width != 32:
        return None
    rank = len(acc.get_shape())  # type: ignore[union-attr]
    chain = _Chain(head)
    value = head.output
    while True:
        uses = list(value.uses)
        quants = [u.operation for u in uses if isinstance(u.operation, cimq.QuantizeOp)]
        if len(uses) == 1:
            user = uses[0].operation
        elif chain.inner and len(quants) == 1:  # the float is read elsewhere too: keep it
            user, chain.keep = quants[0], True
        else:
            return None
        if isinstance(user, cimq.QuantizeOp):
            chain.tail = user
            return chain
        if not _step(chain, user, value, rank):
            return None
        value = user.results[0]


class FuseRequantize(RewritePattern):
    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: cimq.DequantizeOp, rewriter: PatternRewriter) -> None:
        chain = match_chain(op)
        if chain is None or chain.tail is None:
            return
        tail = chain.tail
        ops = chain.operands
        attrs = dict(chain.attrs)
        if "src" in tail.attributes:
            attrs["src"] = tail.attributes["src"]
        last = chain.inner[-1] if chain.inner else tail
        new = cimq.RequantizeOp.create(
            operands=[op.input, *(ops[k] for k in ("bias", "mul", "residual") if k in ops)],
            result_types=[tail.output.type, *([last.results[0].type] if chain.keep else [])],
            attributes=attrs,
            properties={"operandSegmentSizes": _segments(ops)},
        )
        rewriter.insert(new, InsertPoint.before(last))
        rewriter.replace_all_uses_with(tail.output, new.output)
        if chain.keep:
            rewriter.replace_all_uses_with(last.results[0], new.results[1])
        for dead in (tail, *reversed(chain.inner), op):
            rewriter.erase(dead)


def _segments(ops: dict[str, SSAValue]) -> Attribute:
    return DenseArrayBase.from_list(i32, [1, *(int(k in ops) for k in ("bias", "mul", "residual"))])


@dataclass(frozen=True)
class FuseRequantizePass(ModulePass):
    """Fuse dequantize / scale / bias / residual / ReLU / Clip / quantize chains into ``cimq.requantize``."""

    name = "cimq-fuse-requantize"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        PatternRewriteWalker(FuseRequantize(), apply_recursively=False).rewrite_module(op)
