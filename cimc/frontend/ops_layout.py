"""Handlers of the layout ops (Reshape, Flatten, Squeeze, Unsqueeze, Transpose, Gather, Slice,
Concat), of the identities (Identity, Dropout) and of Shape / Size.

A layout op on a dequantized tensor moves the integers (``cimq.reshape`` on the ``!cimq.q``
tensor), so the result is still quantized; on a float tensor it moves floats. Each handler also
decides whether the batch stays on axis 0 of its result.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from xdsl.dialects.builtin import (
    BytesAttr,
    DenseIntOrFPElementsAttr,
    FloatAttr,
    IntegerAttr,
    TensorType,
    f64,
    i64,
)
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
    values = idx.arr.reshape(-1).astype(np.int64)
    dim = x.shape[axis]
    bad = values[(values < -dim) | (values >= dim)]
    if bad.size:
        raise NodeError(f"index {int(bad[0])} is out of range for dim {axis} of size {dim}")
    if idx.arr.ndim > 1 or values.size != 1:  # an index tensor replaces the axis by its shape
        indices = (idx.arr.astype(np.int64) % dim).astype(np.int64)
        shape = [*x.shape[:axis], *indices.shape, *x.shape[axis + 1:]]
        return layout(ctx, x, cimq.GatherOp, shape, x.batched and axis != 0,
                      {"axis": IntegerAttr(axis, i64), "indices": _dense_i64(indices)})
    index = int(values[0]) % dim
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
        if st == 0:
            raise NodeError("step 0 is not allowed")
        lo, hi, _ = slice(s, e, st).indices(x.shape[ax])
        if st > 0:
            hi = max(hi, lo)
        elif hi < 0:
            hi = -(x.shape[ax] + 1)  # a negative step runs through index 0 (numpy's rule)
        n_starts.append(lo)
        n_ends.append(hi)
        slices[ax] = slice(lo, hi, st)
    out_shape = dummy(x.shape)[tuple(slices)].shape
    attrs = {"starts": i64_array(n_starts), "ends": i64_array(n_ends),
             "axes": i64_array(axes), "steps": i64_array(steps)}
    return layout(ctx, x, cimq.SliceOp, out_shape, x.batched and 0 not in axes, attrs)


def _dense_i64(arr: np.ndarray) -> DenseIntOrFPElementsAttr:
    arr = np.ascontiguousarray(arr, dtype=np.int64)
    return DenseIntOrFPElementsAttr(TensorType(i64, list(arr.shape)), BytesAttr(arr.tobytes()))


def _pad_value(x: Tensor, value: float) -> float | None:
    """The pad value of a dequantized tensor as an integer of its type, if it is on the grid."""
    if x.kind == "q":  # ONNX Pad on the integers: the value is an integer of the type
        assert x.qtype is not None
        if value != int(value) or not x.qtype.qmin <= value <= x.qtype.qmax:
            raise NodeError(f"pad value {value} is not an integer of {x.qtype.spec()}")
        return value
    if x.kind != "dq":
        return value
    assert x.q is not None and x.q.qtype is not None
    qt = x.q.qtype
    scale = np.float32(qt.scale_values[0])
    k = round(float(np.float32(value) / scale)) + qt.zp
    if qt.qmin <= k <= qt.qmax and np.float32(k - qt.zp) * scale == np.float32(value):
        return float(k)
    return None  # not on the grid: pad the floats


def pad(ctx: ImportContext, node: Node) -> Entry:
    """Constant Pad (zero, or any value on the quantization grid, keeps a tensor quantized)."""
    x = node.tensor(0)
    mode = node.attr_str("mode", "constant")
    if mode != "constant":
        raise NodeError(f"mode '{mode}' is not supported (constant padding only)")
    rank = len(x.shape)
    pads = node.const_ints(1, "pads") if len(node.inputs) > 1 else node.attrs.get("pads")
    if pads is None:
        raise NodeError("the pads are missing")
    axes = node.const_ints(3, "axes") if len(node.inputs) > 3 else None
    value_entry = node.input(2)
    if value_entry is not None and not isinstance(value_entry, Const):
        raise NodeError("the pad value must be a constant")
    value = float(value_entry.arr.reshape(-1)[0]) if value_entry is not None and \
        value_entry.arr.size else float(node.attrs.get("value", 0.0))
    axes = list(range(rank)) if axes is None else [norm_axis(a, rank) for a in axes]
    full = [0] * (2 * rank)
    for i, ax in enumerate(axes):
        full[ax], full[rank + ax] = pads[i], pads[len(axes) + i]
    shape = [d + full[i] + full[rank + i] for i, d in enumerate(x.shape)]
    batched = x.batched and full[0] == 0 and full[rank] == 0
    inner = _pad_value(x, value)
    if inner is None:
        x = Tensor("float", x.shape, x.batched, ssa=ctx.as_float(x))
        inner = value
    return layout(ctx, x, cimq.PadOp, shape, batched,
                  {"pads": i64_array(full), "value": FloatAttr(inner, f64)})


def split(ctx: ImportContext, node: Node) -> list[Entry | None]:
    """Split into static slices along ``axis`` (on the integers when the input is quantized)."""
    x = node.tensor(0)
    axis = norm_axis(int(node.attrs.get("axis", 0)), len(x.shape))
    dim, n = x.shape[axis], len(node.outputs)
    sizes = node.const_ints(1, "split") if len(node.inputs) > 1 else None
    if sizes is None and "split" in node.attrs:
        sizes = [int(v) for v in node.attrs["split"]]
    if sizes is None:
        chunk = -(-dim // n)
        sizes = [max(0, min(chunk, dim - i * chunk)) for i in range(n)]
    if sum(sizes) != dim or len(sizes) != n:
        raise NodeError(f"split sizes {sizes} do not cover dim {axis} of size {dim} in {n} parts")
    outs: list[Entry | None] = []
    start = 0
    for size in sizes:
        shape = [*x.shape[:axis], size, *x.shape[axis + 1:]]
        attrs = {"starts": i64_array([start]), "ends": i64_array([start + size]),
                 "axes": i64_array([axis]), "steps": i64_array([1])}
        outs.append(layout(ctx, x, cimq.SliceOp, shape, x.batched and axis != 0, attrs))
        start += size
    return outs


def concat(ctx: ImportContext, node: Node) -> Entry:
    ins = [e for e in node.ins if e is not None]
    shapes = [shape_of_entry(e) for e in ins]
    axis = norm_axis(int(node.attrs["axis"]), len(shapes[0]))
    out_shape = ctx.shape_of(node.outputs[0], lambda: np.concatenate(
        [dummy(sh) for sh in shapes], axis=axis).shape)
    batched = axis != 0 and any(isinstance(e, Tensor) and e.batched for e in ins)
    qs = [e.q for e in ins if isinstance(e, Tensor) and e.kind == "dq"]
    if len(qs) == len(ins) and all(q is not None and q.qtype == qs[0].qtype for q in qs):
        # Concat of tensors on one grid (scale, zero point, range) moves the integers.
        assert qs[0] is not None and qs[0].qtype is not None
        op = cimq.ConcatOp.create(
            operands=[ctx.as_quant(q) for q in qs if q is not None],
            result_types=[ctx.ttype(out_shape, qs[0].qtype, batched)],
            attributes={"axis": IntegerAttr(axis, i64)})
        nq = Tensor("q", out_shape, batched, ssa=ctx.emit(op).results[0], qtype=qs[0].qtype)
        return Tensor("dq", out_shape, batched, q=nq)
    operands = [ctx.as_float(e) for e in ins]
    return ctx.float_result(cimq.ConcatOp, operands, out_shape, batched,
                            {"axis": IntegerAttr(axis, i64)})


def identity(ctx: ImportContext, node: Node) -> Entry | None:
    return node.ins[0]


def dropout(ctx: ImportContext, node: Node) -> Entry | None:
    """Dropout in inference is the identity: ``training_mode`` absent or false, or true with a
    ratio of 0 (nothing is dropped)."""
    ctx.check_single_output(node.outputs)
    mode, ratio = node.input(2), node.input(1)
    if mode is not None and not isinstance(mode, Const):
        raise NodeError("training_mode must be a constant")
    training = mode is not None and bool(mode.arr.reshape(-1)[0])
    rate = 0.5 if ratio is None else float(ratio.arr.reshape(-1)[0]) \
        if isinstance(ratio, Const) else None
    if training and rate != 0.0:
        shown = "computed at run time" if rate is None else str(rate)
        raise NodeError(f"training_mode=true with ratio {shown} drops values at random "
                        "(training); cimc imports inference graphs")
    return node.ins[0]


def shape(ctx: ImportContext, node: Node) -> Entry:
    dims = list(shape_of_entry(node.ins[0]))[node.attrs.get("start", 0):node.attrs.get("end")]
    return Const(np.array(dims, dtype=np.int64))


def size(ctx: ImportContext, node: Node) -> Entry:
    n = int(np.prod(shape_of_entry(node.ins[0]), dtype=np.int64))
    return Const(np.array(n, dtype=np.int64))


def depth_to_space(ctx: ImportContext, node: Node) -> Entry:
    """DepthToSpace as ONNX defines it: reshape to 6-D, transpose, reshape (DCR or CRD)."""
    x = node.tensor(0)
    if len(x.shape) != 4:
        raise NodeError("only NCHW inputs are supported")
    b, c, h, w = x.shape
    if "blocksize" not in node.attrs:
        raise NodeError("the blocksize attribute is missing")
    bs = int(node.attrs["blocksize"])
    if c % (bs * bs):
        raise NodeError(f"{c} channels are not divisible by blocksize^2 = {bs * bs}")
    mode = node.attr_str("mode", "DCR")
    c2 = c // (bs * bs)
    six, perm = ((b, bs, bs, c2, h, w), [0, 3, 4, 1, 5, 2]) if mode == "DCR" else \
        ((b, c2, bs, bs, h, w), [0, 1, 4, 2, 5, 3])
    lead = 0 if x.batched else b
    t = layout(ctx, x, cimq.ReshapeOp, six, x.batched, {"shape": i64_array([lead, *six[1:]])})
    t = layout(ctx, t, cimq.TransposeOp, tuple(six[p] for p in perm), x.batched,
               {"perm": i64_array(perm)})
    out = (b, c2, h * bs, w * bs)
    return layout(ctx, t, cimq.ReshapeOp, out, x.batched, {"shape": i64_array([lead, *out[1:]])})


def _nearest_indices(out_len: int, in_len: int, scale: float, ctm: str, mode: str) -> np.ndarray:
    """Source index of every output position of a nearest-neighbour Resize (ONNX rules)."""
    i = np.arange(out_len, dtype=np.float64)
    if ctm == "asymmetric":
        src = i / scale
    elif ctm == "align_corners":
        src = i * (in_len - 1) / (out_len - 1) if out_len > 1 else np.zeros_like(i)
    elif ctm == "pytorch_half_pixel":
        src = (i + 0.5) / scale - 0.5 if out_len > 1 else np.zeros_like(i)
    elif ctm in ("half_pixel", "tf_half_pixel_for_nn"):
        src = (i + 0.5) / scale - (0.5 if ctm == "half_pixel" else 0.0)
    else:
        raise NodeError(f"coordinate_transformation_mode '{ctm}' is not supported")
    if mode == "floor":
        idx = np.floor(src)
    elif mode == "ceil":
        idx = np.ceil(src)
    elif mode == "round_prefer_ceil":
        idx = np.floor(src + 0.5)
    else:  # round_prefer_floor
        idx = np.ceil(src - 0.5)
    return np.clip(idx, 0, in_len - 1).astype(np.int64)


def resize(ctx: ImportContext, node: Node) -> Entry:
    """Nearest-neighbour Resize: a gather of source rows / columns per resized axis (the values
    are moved, not computed, so a quantized tensor stays quantized)."""
    x = node.tensor(0)
    mode = node.attr_str("mode", "nearest")
    if mode != "nearest":
        raise NodeError(f"mode '{mode}' is not supported (nearest only)")
    ctm = node.attr_str("coordinate_transformation_mode", "half_pixel")
    nearest = node.attr_str("nearest_mode", "round_prefer_floor")
    out_shape = ctx.shape_of(node.outputs[0])
    scales_e = node.input(2)
    scales = None
    if isinstance(scales_e, Const) and scales_e.arr.size:
        scales = [1.0] * len(x.shape)
        axes = node.attrs.get("axes", range(len(x.shape)))
        for ax, v in zip(axes, scales_e.arr.reshape(-1)):
            scales[norm_axis(int(ax), len(x.shape))] = float(v)
    elif scales_e is not None and not isinstance(scales_e, Const):
        raise NodeError("the scales must be constants")
    for ax, (d_in, d_out) in enumerate(zip(x.shape, out_shape)):
        s = scales[ax] if scales else d_out / d_in
        if d_in == d_out and s == 1.0:
            continue
        if ax == 0:
            raise NodeError("resizing the batch axis is not supported")
        idx = _nearest_indices(d_out, d_in, s, ctm, nearest)
        shape = [*x.shape[:ax], d_out, *x.shape[ax + 1:]]
        x = layout(ctx, x, cimq.GatherOp, shape, x.batched,
                   {"axis": IntegerAttr(ax, i64), "indices": _dense_i64(idx)})
    return x
