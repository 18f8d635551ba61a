"""Handlers of the layout ops (Reshape, Flatten, Squeeze, Unsqueeze, Transpose, Gather, Slice,
Concat), of the identities (Identity, Dropout) and of Shape / Size.

A layout op on a dequantized tensor moves the integers (``cimq.reshape`` on the ``!cimq.q``
tensor), so the result is still quantized; on a float tensor it moves floats. Each handler also
decides whether the batch stays on axis 0 of its result.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from xdsl.dialects.builtin import IntegerAttr, i64
from xdsl.ir import Attribute

from cimc.dialects import cimq
from cimc.dialects.cimq import i64_array
from cimc.frontend.context import ImportContext
from cimc.frontend.shapes import dummy, fold, norm_axis, numel
from cimc.frontend.values import (
    Const,
    Entry,
    Node,
    NodeError,
    QConst,
    Tensor,
    rank_of,
    shape_of_entry,
)


def layout(ctx: ImportContext, x: Tensor, op_cls: type, out_shape: Sequence[int],
           batched: bool, attrs: dict[str, Attribute]) -> Tensor:
    """A layout op: on the integers when the input is a dequantized tensor, else on floats."""
    out_shape = tuple(int(d) for d in out_shape)
    if x.kind == "q":  # ONNX moves the integers themselves
        op = op_cls.create(operands=[ctx.as_quant(x)],
                           result_types=[ctx.ttype(out_shape, x.qtype, batched)],
                           attributes=attrs)
        return Tensor("q", out_shape, batched, ssa=ctx.emit(op).results[0], qtype=x.qtype)
    if x.kind == "dq":
        q = x.q
        assert q is not None and q.qtype is not None
        op = op_cls.create(operands=[ctx.as_quant(q)],
                           result_types=[ctx.ttype(out_shape, q.qtype, batched)],
                           attributes=attrs)
        nq = Tensor("q", out_shape, batched, ssa=ctx.emit(op).results[0], qtype=q.qtype)
        return Tensor("dq", out_shape, batched, q=nq)
    return ctx.float_result(op_cls, [ctx.as_float(x)], out_shape, batched, attrs)


def transpose(ctx: ImportContext, node: Node) -> Entry | list[Entry | None]:
    x = node.ins[0]
    assert x is not None
    rank = rank_of(x)
    perm = [int(p) for p in node.attrs.get("perm", list(range(rank))[::-1])]
    if isinstance(x, QConst):
        return x.transposed(perm)
    if isinstance(x, Const):
        return fold(node)
    shape = tuple(x.shape[p] for p in perm)
    return layout(ctx, x, cimq.TransposeOp, shape, x.batched and perm[0] == 0,
                  {"perm": i64_array(perm)})


def reshape(ctx: ImportContext, node: Node) -> Entry:
    x = node.tensor(0)
    if not isinstance(node.input(1), Const):
        raise NodeError(f"the target shape '{node.inputs[1]}' does not fold to a constant")
    target = node.const_ints(1, "the target shape")
    assert target is not None
    if int(node.attrs.get("allowzero", 0)) and 0 in target:
        raise NodeError("allowzero=1 with a zero in the shape is not supported")
    resolved = [x.shape[i] if v == 0 else v for i, v in enumerate(target)]
    try:
        out_shape = dummy(x.shape).reshape(resolved).shape
    except ValueError:
        raise NodeError(f"cannot reshape {list(x.shape)} to {target}") from None
    batched = False
    if x.batched and target and target[0] in (0, ctx.batch.infer) and x.shape:
        target[0] = 0
        batched = True
    elif x.batched and target and target[0] == -1 and x.shape and \
            numel(out_shape[1:]) == numel(x.shape[1:]):
        batched = True  # -1 absorbs exactly the batch
    return layout(ctx, x, cimq.ReshapeOp, out_shape, batched, {"shape": i64_array(target)})


def squeeze(ctx: ImportContext, node: Node) -> Entry:
    """Squeeze / Unsqueeze of a run-time tensor: a static ``cimq.reshape``."""
    x = node.tensor(0)
    axes = node.const_ints(1, "axes")
    if axes is None:
        axes = list(node.attrs.get("axes", []))
    shape = list(x.shape)
    if node.op_type == "Unsqueeze":
        rank = len(shape) + len(axes)
        for ax in sorted(norm_axis(a, rank) for a in axes):
            shape.insert(ax, 1)
        keeps_batch = 0 not in [a % rank for a in axes]
    else:
        rank = len(shape)
        drop = {norm_axis(a, rank) for a in axes} if axes else {
            i for i, d in enumerate(shape) if d == 1}
        if any(shape[i] != 1 for i in drop):
            raise NodeError(f"cannot squeeze axes {sorted(drop)} of {shape}")
        shape = [d for i, d in enumerate(shape) if i not in drop]
        keeps_batch = 0 not in drop
    batched = x.batched and keeps_batch
    target = list(shape)
    if batched and target:
        target[0] = 0
    return layout(ctx, x, cimq.ReshapeOp, shape, batched, {"shape": i64_array(target)})


def flatten(ctx: ImportContext, node: Node) -> Entry:
    x = node.tensor(0)
    rank = len(x.shape)
    axis = int(node.attrs.get("axis", 1))
    axis = axis % rank if axis != rank else rank
    out_shape = (int(np.prod(x.shape[:axis], dtype=np.int64)),
                 int(np.prod(x.shape[axis:], dtype=np.int64)))
    return layout(ctx, x, cimq.FlattenOp, out_shape, x.batched and axis >= 1,
                  {"axis": IntegerAttr(axis, i64)})


def gather(ctx: ImportContext, node: Node) -> Entry:
    x = node.tensor(0)
    idx = node.input(1)
    if not isinstance(idx, Const):
        raise NodeError("only constant indices are supported")
    axis = norm_axis(int(node.attrs.get("axis", 0)), len(x.shape))
    values = idx.arr.reshape(-1)
    if idx.arr.ndim > 1 or values.size != 1:
        raise NodeError(f"only a single constant index is supported, got {idx.arr.tolist()}")
    index = int(values[0])
    dim = x.shape[axis]
    if not -dim <= index < dim:
        raise NodeError(f"index {index} is out of range for dim {axis} of size {dim}")
    index %= dim
    if idx.arr.ndim == 1:  # keeps the axis: a slice
        shape = list(x.shape)
        shape[axis] = 1
        attrs = {"starts": i64_array([index]), "ends": i64_array([index + 1]),
                 "axes": i64_array([axis]), "steps": i64_array([1])}
        return layout(ctx, x, cimq.SliceOp, shape, x.batched and axis != 0, attrs)
    shape = [d for i, d in enumerate(x.shape) if i != axis]
    attrs = {"axis": IntegerAttr(axis, i64), "index": IntegerAttr(index, i64)}
    return layout(ctx, x, cimq.GatherOp, shape, x.batched and axis != 0, attrs)


def slice_(ctx: ImportContext, node: Node) -> Entry:
    x = node.tensor(0)
    starts, ends, axes, steps = (
        node.const_ints(k, f"input '{node.inputs[k]}'") if k < len(node.inputs) else None
        for k in range(1, 5))
    assert starts is not None and ends is not None
    rank = len(x.shape)
    axes = list(range(len(starts))) if axes is None else [norm_axis(v, rank) for v in axes]
    steps = [1] * len(starts) if steps is None else steps
    n_starts, n_ends, slices = [], [], [slice(None)] * rank
    for s, e, ax, st in zip(starts, ends, axes, steps):
        if st <= 0:
            raise NodeError(f"step {st} is not supported (positive steps only)")
        lo, hi, _ = slice(s, e, st).indices(x.shape[ax])
        hi = max(hi, lo)
        n_starts.append(lo)
        n_ends.append(hi)
        slices[ax] = slice(lo, hi, st)
    out_shape = dummy(x.shape)[tuple(slices)].shape
    attrs = {"starts": i64_array(n_starts), "ends": i64_array(n_ends),
             "axes": i64_array(axes), "steps": i64_array(steps)}
    return layout(ctx, x, cimq.SliceOp, out_shape, x.batched and 0 not in axes, attrs)


def concat(ctx: ImportContext, node: Node) -> Entry:
    ins = [e for e in node.ins if e is not None]
    shapes = [shape_of_entry(e) for e in ins]
    axis = norm_axis(int(node.attrs["axis"]), len(shapes[0]))
    out_shape = ctx.shape_of(node.outputs[0], lambda: np.concatenate(
        [dummy(sh) for sh in shapes], axis=axis).shape)
    batched = axis != 0 and any(isinstance(e, Tensor) and e.batched for e in ins)
    operands = [ctx.as_float(e) for e in ins]
    return ctx.float_result(cimq.ConcatOp, operands, out_shape, batched,
                            {"axis": IntegerAttr(axis, i64)})


def identity(ctx: ImportContext, node: Node) -> Entry | None:
    return node.ins[0]


def dropout(ctx: ImportContext, node: Node) -> Entry | None:
    """Inference Dropout is the identity (training_mode must be absent or false)."""
    ctx.check_single_output(node.outputs)
    mode = node.input(2)
    if mode is not None and (not isinstance(mode, Const) or bool(mode.arr.reshape(-1)[0])):
        raise NodeError("training_mode must be a constant false")
    return node.ins[0]


def shape(ctx: ImportContext, node: Node) -> Entry:
    dims = list(shape_of_entry(node.ins[0]))[node.attrs.get("start", 0):node.attrs.get("end")]
    return Const(np.array(dims, dtype=np.int64))


def size(ctx: ImportContext, node: Node) -> Entry:
    n = int(np.prod(shape_of_entry(node.ins[0]), dtype=np.int64))
    return Const(np.array(n, dtype=np.int64))
