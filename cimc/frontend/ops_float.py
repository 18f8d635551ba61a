"""Handlers of the float ops that run on the host: arithmetic, activations, normalisation,
pooling and reductions. Each emits one ``cimq`` float op (BatchNormalization two)."""

from __future__ import annotations

import numpy as np
from xdsl.dialects.builtin import FloatAttr, IntegerAttr, StringAttr, f64, i64
from xdsl.ir import Attribute

from cimc.dialects import cimq
from cimc.dialects.cimq import i64_array
from cimc.frontend.context import ImportContext
from cimc.frontend.ops_crossbar import add_bias, bias_matches
from cimc.frontend.ops_layout import layout
from cimc.frontend.shapes import norm_axis, numel, pads_2d
from cimc.frontend.values import (
    Const,
    Entry,
    Node,
    NodeError,
    QConst,
    Tensor,
    shape_of_entry,
)

BINARY = {"Add": cimq.AddOp, "Sub": cimq.SubOp, "Mul": cimq.MulOp, "Div": cimq.DivOp}
UNARY = {"Relu": cimq.ReluOp, "Erf": cimq.ErfOp, "Sqrt": cimq.SqrtOp, "Gelu": cimq.GeluOp}


def binary(ctx: ImportContext, node: Node) -> Entry:
    """Add / Sub / Mul / Div with numpy broadcasting (an Add of an int32 bias: ``bias_add``)."""
    lhs, rhs = node.ins[0], node.ins[1]
    if node.op_type == "Add":
        for acc, bias in ((lhs, rhs), (rhs, lhs)):
            if isinstance(acc, Tensor) and acc.kind == "acc" and \
                    bias_matches(acc, bias, len(acc.shape) - 1):
                return add_bias(ctx, acc, bias, len(acc.shape) - 1, lambda b: b)
    out_shape = ctx.shape_of(node.outputs[0], lambda: np.broadcast_shapes(
        *(shape_of_entry(e) for e in (lhs, rhs))))
    batched = any(isinstance(e, Tensor) and e.batched and len(e.shape) == len(out_shape)
                  for e in (lhs, rhs))
    return ctx.float_result(BINARY[node.op_type], [ctx.as_float(lhs), ctx.as_float(rhs)],
                            out_shape, batched)


def sum_(ctx: ImportContext, node: Node) -> Entry | None:
    """Sum of one or more tensors (numpy broadcasting): a chain of float adds."""
    entries = [e for e in node.ins if e is not None]
    if len(entries) == 1:
        return entries[0]
    out_shape = ctx.shape_of(node.outputs[0], lambda: np.broadcast_shapes(
        *(shape_of_entry(e) for e in entries)))
    batched = any(isinstance(e, Tensor) and e.batched and len(e.shape) == len(out_shape)
                  for e in entries)
    total = ctx.as_float(entries[0])
    shape = shape_of_entry(entries[0])
    for e in entries[1:]:
        shape = np.broadcast_shapes(shape, shape_of_entry(e))
        total = ctx.float_result(cimq.AddOp, [total, ctx.as_float(e)], shape,
                                 batched and len(shape) == len(out_shape)).ssa
    return Tensor("float", tuple(out_shape), batched, ssa=total)


def unary(ctx: ImportContext, node: Node) -> Entry:
    x = node.tensor(0)
    attrs: dict[str, Attribute] = {}
    if node.op_type == "Gelu":
        approx = node.attr_str("approximate", "none")
        if approx not in ("none", "tanh"):
            raise NodeError(f"approximate='{approx}' is not supported (none or tanh)")
        if approx == "tanh":
            attrs["approximate"] = StringAttr(approx)
    return ctx.float_result(UNARY[node.op_type], [ctx.as_float(x)], x.shape, x.batched, attrs)


def softmax(ctx: ImportContext, node: Node) -> Entry:
    """Softmax along ``axis``; before opset 13 over all axes from ``axis`` on (as 2-D)."""
    x = node.tensor(0)
    rank = len(x.shape)
    axis = norm_axis(int(node.attrs.get("axis", -1 if node.opset >= 13 else 1)), rank)
    if node.opset >= 13 or axis == rank - 1:
        return ctx.float_result(cimq.SoftmaxOp, [ctx.as_float(x)], x.shape, x.batched,
                                {"axis": IntegerAttr(axis, i64)})
    rows = (*x.shape[:axis], numel(x.shape[axis:]))
    keep = x.batched and axis > 0
    flat = ctx.float_result(cimq.ReshapeOp, [ctx.as_float(x)], rows, keep,
                            {"shape": i64_array([0 if keep else rows[0], *rows[1:]])})
    soft = ctx.float_result(cimq.SoftmaxOp, [flat.ssa], rows, keep,
                            {"axis": IntegerAttr(len(rows) - 1, i64)})
    back = [0 if keep else x.shape[0], *x.shape[1:]] if x.shape else []
    return ctx.float_result(cimq.ReshapeOp, [soft.ssa], x.shape, keep,
                            {"shape": i64_array(back)})


def layernorm(ctx: ImportContext, node: Node) -> Entry:
    ctx.check_single_output(node.outputs)
    x = node.tensor(0)
    axis = norm_axis(int(node.attrs.get("axis", -1)), len(x.shape))
    operands = [ctx.as_float(x), ctx.as_float(node.ins[1])]
    if node.input(2) is not None:
        operands.append(ctx.as_float(node.ins[2]))
    attrs = {"axis": IntegerAttr(axis, i64),
             "epsilon": FloatAttr(float(node.attrs.get("epsilon", 1e-5)), f64)}
    return ctx.float_result(cimq.LayerNormOp, operands, x.shape, x.batched, attrs)


def batchnorm(ctx: ImportContext, node: Node) -> Entry:
    """Inference BatchNormalization as ``x * a + b`` with per-channel constants."""
    ctx.check_single_output(node.outputs)
    if node.attrs.get("training_mode", 0):
        raise NodeError("training_mode=1 is not supported")
    x = node.tensor(0)
    params = []
    for k in range(1, 5):
        e = node.ins[k]
        if not isinstance(e, (Const, QConst)):
            raise NodeError(f"input '{node.inputs[k]}' must be a constant")
        params.append(np.asarray(e.arr if isinstance(e, Const) else e.real(), np.float32))
    gamma, beta, mean, var = params
    eps = np.float32(node.attrs.get("epsilon", 1e-5))
    inv_std = np.float32(1.0) / np.sqrt(var + eps)
    mul = (inv_std * gamma).astype(np.float32)
    add = (beta - mean * mul).astype(np.float32)
    shape = (-1,) + (1,) * (len(x.shape) - 2)
    scale = Const(mul.reshape(shape), node.inputs[1])
    scaled = ctx.float_result(cimq.MulOp, [ctx.as_float(x), ctx.as_float(scale)],
                              x.shape, x.batched)
    shift = Const(add.reshape(shape), node.inputs[2])
    return ctx.float_result(cimq.AddOp, [scaled.ssa, ctx.as_float(shift)], x.shape, x.batched)


def pool(ctx: ImportContext, node: Node) -> Entry:
    """MaxPool / AveragePool over NCHW (NCW: as N x C x 1 x W). MaxPool of a dequantized
    tensor pools the integers (max commutes with quantization), so the result stays quantized."""
    ctx.check_single_output(node.outputs)
    x = node.tensor(0)
    a = node.attrs
    kernel = list(a.get("kernel_shape", []))
    if not (len(kernel) == len(x.shape) - 2 and len(kernel) in (1, 2)):
        raise NodeError("only 1-D and 2-D pooling (NCW, NCHW tensors) is supported")
    strides = list(a.get("strides", [1] * len(kernel)))
    dil = list(a.get("dilations", [1] * len(kernel)))
    out_shape = ctx.shape_of(node.outputs[0])
    if len(kernel) == 2:
        pads = pads_2d(node, x.shape[2:], kernel, strides, dil)
        return _pool_2d(ctx, node, x, (kernel, strides, dil, pads), out_shape)
    if node.attr_str("auto_pad", "NOTSET") not in ("NOTSET", "VALID", ""):
        raise NodeError("auto_pad SAME_* is not supported for 1-D pooling")
    p = list(a.get("pads", [0, 0])) if node.attr_str("auto_pad", "NOTSET") != "VALID" else [0, 0]
    keep = 0 if x.batched else x.shape[0]
    wide = layout(ctx, x, cimq.ReshapeOp, (*x.shape[:2], 1, x.shape[2]), x.batched,
                  {"shape": i64_array([keep, x.shape[1], 1, x.shape[2]])})
    window = ([1, *kernel], [1, *strides], [1, *dil], [0, p[0], 0, p[1]])
    pooled = _pool_2d(ctx, node, wide, window, (*out_shape[:2], 1, out_shape[2]))
    return layout(ctx, pooled, cimq.ReshapeOp, out_shape, x.batched,
                  {"shape": i64_array([keep, *out_shape[1:]])})


def _pool_2d(ctx: ImportContext, node: Node, x: Tensor,
             window: tuple[list[int], list[int], list[int], list[int]],
             out_shape: tuple[int, ...]) -> Tensor:
    kernel, strides, dil, pads = window
    attrs: dict[str, Attribute] = {
        "kernel": i64_array(kernel), "strides": i64_array(strides), "pads": i64_array(pads),
        "ceil_mode": IntegerAttr(int(node.attrs.get("ceil_mode", 0)), i64),
    }
    if node.op_type == "MaxPool":
        attrs["dilations"] = i64_array(dil)
        if x.kind in ("q", "dq"):
            return layout(ctx, x, cimq.MaxPoolOp, out_shape, x.batched, attrs)
        return ctx.float_result(cimq.MaxPoolOp, [ctx.as_float(x)], out_shape, x.batched, attrs)
    if dil != [1, 1]:
        attrs["dilations"] = i64_array(dil)
    attrs["count_include_pad"] = IntegerAttr(int(node.attrs.get("count_include_pad", 0)), i64)
    return ctx.float_result(cimq.AvgPoolOp, [ctx.as_float(x)], out_shape, x.batched, attrs)


def global_avgpool(ctx: ImportContext, node: Node) -> Entry:
    x = node.tensor(0)
    if len(x.shape) != 4:
        raise NodeError("only NCHW inputs are supported")
    out_shape = (*x.shape[:2], 1, 1)
    return ctx.float_result(cimq.GlobalAvgPoolOp, [ctx.as_float(x)], out_shape, x.batched)


def reduce_mean(ctx: ImportContext, node: Node) -> Entry:
    x = node.tensor(0)
    a = node.attrs
    axes = node.const_ints(1, "axes")
    if axes is None:
        axes = list(a.get("axes", []))
    rank = len(x.shape)
    if not axes:
        if a.get("noop_with_empty_axes", 0):
            return x
        axes = list(range(rank))
    axes = sorted(norm_axis(v, rank) for v in axes)
    keep = int(a.get("keepdims", 1))
    out_shape = tuple(
        1 if i in axes else d for i, d in enumerate(x.shape) if keep or i not in axes)
    attrs = {"axes": i64_array(axes), "keepdims": IntegerAttr(keep, i64)}
    return ctx.float_result(cimq.ReduceMeanOp, [ctx.as_float(x)], out_shape,
                            x.batched and 0 not in axes, attrs)
