"""Handlers of the crossbar ops: Conv, Gemm and MatMul, on crossbars or on the host.

A Conv / Gemm / MatMul whose input is a dequantized activation and whose weight a dequantized
integer constant of 1..8 bits becomes ``cimq.conv`` / ``cimq.matmul`` (a MatMul of two
dequantized activations ``cimq.matmul_act``) with an s32 accumulator of scale ``s_x * s_w``; an
int32 bias with that scale becomes ``cimq.bias_add``, any other bias a float add after the
accumulator.

Any other Conv / Gemm / MatMul (an input or weight that is not quantized, a weight wider than 8
bits, a convolution whose weight is computed at run time) is the **host fallback**: it becomes
``cimq.host_conv`` / ``cimq.host_matmul`` on floats, marked with the node, the op and the reason
(:func:`host_reason`); the rest of the model still goes to crossbars.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from xdsl.dialects.builtin import IntegerAttr, StringAttr, i64

from cimc.dialects import cimq
from cimc.dialects.cimq import QuantType
from cimc.frontend.context import ImportContext
from cimc.frontend.ops_layout import layout
from cimc.frontend.shapes import pads_2d
from cimc.frontend.values import Const, Entry, Node, NodeError, QConst, Tensor, shape_of_entry


def _is_quantized(e: Entry | None) -> bool:
    return isinstance(e, Tensor) and e.kind == "dq" and e.q is not None


def _weight_reason(node: Node, k: int, *, runtime_ok: bool) -> str | None:
    """Why input ``k`` cannot be the crossbar operand of ``node`` (None: it can)."""
    e, name = node.input(k), node.inputs[k]
    if isinstance(e, QConst):
        if e.qtype.width > 8:
            return f"weight '{name}' has {e.qtype.width} bits (crossbars take 1 to 8)"
        return None
    if isinstance(e, Const) and e.wide is not None:
        return f"weight '{name}' has {e.wide} bits (crossbars take 1 to 8)"
    if isinstance(e, Const):
        return f"weight '{name}' is not quantized"
    if runtime_ok and _is_quantized(e):
        return None
    if _is_quantized(e):
        return f"weight '{name}' is computed at run time (a crossbar convolution needs a constant)"
    return f"input '{name}' is not quantized"


def host_reason(node: Node) -> str | None:
    """Why ``node`` (Conv / Gemm / MatMul) runs on the host, or None when it maps to crossbars:
    its input is not a dequantized activation, or its weight not a dequantized 1..8-bit
    constant (MatMul: or a dequantized activation, written at run time)."""
    if not _is_quantized(node.input(0)):
        return f"input '{node.inputs[0]}' is not quantized"
    return _weight_reason(node, 1, runtime_ok=node.op_type == "MatMul")


def _host_attrs(node: Node, reason: str) -> dict:
    return {"layer": StringAttr(node.label), "op": StringAttr(node.op_type), "reason": StringAttr(reason)}


def _batched(e: Entry | None) -> bool:
    return isinstance(e, Tensor) and e.batched


def host_conv(ctx: ImportContext, node: Node, reason: str) -> Entry:
    """A Conv on the host in float (``cimq.host_conv``), bias added in float."""
    x, w = node.input(0), node.input(1)
    xs, ws = shape_of_entry(x), shape_of_entry(w)
    if len(xs) != 4 or len(ws) != 4:
        raise NodeError("only 2-D convolutions (NCHW input, OIHW weight) are supported")
    a = node.attrs
    strides, dil = list(a.get("strides", [1, 1])), list(a.get("dilations", [1, 1]))
    pads = pads_2d(node, xs[2:], list(ws[2:]), strides, dil)
    out_shape = ctx.shape_of(node.outputs[0])
    attrs = {**_host_attrs(node, reason), "strides": cimq.i64_array(strides),
             "pads": cimq.i64_array(pads), "dilations": cimq.i64_array(dil),
             "group": IntegerAttr(int(a.get("group", 1)), i64)}
    y = ctx.float_result(cimq.HostConvOp, [ctx.as_float(x), ctx.as_float(w)], out_shape,
                         _batched(x), attrs)
    return add_bias(ctx, y, node.input(2), 1, lambda b: b.reshape(-1, 1, 1))


def host_matmul(ctx: ImportContext, node: Node, reason: str, lhs: Entry, rhs: Entry,
                alpha: float = 1.0) -> Tensor:
    """``alpha * lhs @ rhs`` on the host in float (``cimq.host_matmul``)."""
    out_shape = ctx.shape_of(node.outputs[0])
    ls, rs = shape_of_entry(lhs), shape_of_entry(rhs)
    if isinstance(rhs, Tensor):
        batched = _batched(lhs) or rhs.batched
    else:  # a constant batch as long as the input ties the input's first axis to it (as _linear)
        batched = _batched(lhs) and len(ls) > 1 and (len(rs) <= 2 or len(rs) < len(ls))
    y = ctx.float_result(cimq.HostMatMulOp, [ctx.as_float(lhs), ctx.as_float(rhs)], out_shape,
                         batched, _host_attrs(node, reason))
    if alpha != 1.0:
        scale = ctx.as_float(Const(np.array(alpha, dtype=np.float32), origin=f"{node.label}.alpha"))
        y = ctx.float_result(cimq.MulOp, [ctx.as_float(y), scale], out_shape, batched)
    return y


def quant_input(node: Node, k: int) -> Tensor:
    """Input ``k`` as a quantized activation (the tensor a DequantizeLinear views)."""
    e = node.input(k)
    assert isinstance(e, Tensor) and e.kind == "dq" and e.q is not None  # host_reason said so
    return e.q


def acc_type(x: QuantType, w: QuantType, axis: int) -> QuantType:
    """The s32 accumulator type of ``x * w`` (per channel along ``axis`` when ``w`` is)."""
    sx = x.scale_values[0]
    scales = [sx * sw for sw in w.scale_values]
    return QuantType(32, True, scales if w.per_channel else scales[0],
                     axis=axis if w.per_channel else -1)


def bias_matches(acc: Tensor, bias: Entry | None, axis: int) -> bool:
    """``bias`` is an int32 constant vector with the accumulator's scale along ``axis``."""
    if acc.kind != "acc" or not isinstance(bias, QConst) or bias.qtype.width != 32 or bias.ints.ndim != 1:
        return False
    if bias.ints.shape[0] != acc.shape[axis] or bias.qtype.zp != 0:
        return False
    assert acc.qtype is not None
    acc_s = list(acc.qtype.scale_values)
    b_s = list(bias.qtype.scale_values)
    if len(b_s) == 1 and len(acc_s) > 1:
        b_s = b_s * len(acc_s)
    if len(acc_s) == 1 and len(b_s) > 1:
        acc_s = acc_s * len(b_s)
    return len(acc_s) == len(b_s) and all(
        math.isclose(x, y, rel_tol=1e-5) for x, y in zip(acc_s, b_s)
    )


def add_bias(ctx: ImportContext, acc: Tensor, bias: Entry | None, axis: int,
             float_shape: Callable[[np.ndarray], np.ndarray]) -> Tensor:
    """Int32 bias with the accumulator's scale -> ``cimq.bias_add``; else float add."""
    if bias is None:
        return acc
    if bias_matches(acc, bias, axis):
        assert isinstance(bias, QConst) and acc.ssa is not None
        op = cimq.BiasAddOp.create(
            operands=[acc.ssa, ctx.weight_ssa(bias)], result_types=[acc.ssa.type],
            attributes={"axis": IntegerAttr(axis, i64)},
        )
        return Tensor("acc", acc.shape, acc.batched, ssa=ctx.emit(op).results[0],
                      qtype=acc.qtype)
    if isinstance(bias, Tensor):
        raise NodeError("the bias must be a constant")
    arr = bias.arr if isinstance(bias, Const) else bias.real()
    const = Const(float_shape(np.asarray(arr, dtype=np.float32)), origin=bias.origin)
    return ctx.float_result(cimq.AddOp, [ctx.as_float(acc), ctx.as_float(const)],
                            acc.shape, acc.batched)


def conv(ctx: ImportContext, node: Node) -> Entry:
    reason = host_reason(node)
    if reason is not None:
        return host_conv(ctx, node, reason)
    xq = quant_input(node, 0)
    w = node.input(1)
    assert isinstance(w, QConst)
    if w.ints.ndim != 4 or len(xq.shape) != 4:
        raise NodeError("only 2-D convolutions (NCHW input, OIHW weight) are supported")
    if w.qtype.per_channel and w.qtype.channel_axis != 0:
        raise NodeError("per-channel weight scales must be along the output channels (axis 0)")
    a = node.attrs
    kernel = list(w.ints.shape[2:])
    if "kernel_shape" in a and list(a["kernel_shape"]) != kernel:
        raise NodeError(f"kernel_shape {a['kernel_shape']} differs from the weight {kernel}")
    strides = list(a.get("strides", [1, 1]))
    dil = list(a.get("dilations", [1, 1]))
    pads = pads_2d(node, xq.shape[2:], kernel, strides, dil)
    out_shape = ctx.shape_of(node.outputs[0])
    assert xq.qtype is not None
    acc_q = acc_type(xq.qtype, w.qtype, 1)
    op = cimq.ConvOp(
        ctx.as_quant(xq), ctx.weight_ssa(w), ctx.ttype(out_shape, acc_q, xq.batched),
        strides=strides, pads=[pads[0], pads[1], pads[2], pads[3]], dilations=dil,
        group=int(a.get("group", 1)), layer=node.label,
    )
    acc = Tensor("acc", out_shape, xq.batched, ssa=ctx.emit(op).results[0], qtype=acc_q)
    ctx.record(node.label, "conv", w.qtype, xq.qtype, {
        "input": ctx.shown(xq.shape, xq.batched), "weight": tuple(w.ints.shape),
        "output": ctx.shown(out_shape, xq.batched)})
    return add_bias(ctx, acc, node.input(2), 1, lambda b: b.reshape(-1, 1, 1))


def matmul_shape(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...]:
    """The shape of ``a @ b`` by numpy's matmul rules (for a result shape inference left open)."""
    if len(b) == 1:
        return tuple(a[:-1])
    if len(a) == 1:
        return (*b[:-2], b[-1])
    return (*np.broadcast_shapes(tuple(a[:-2]), tuple(b[:-2])), a[-2], b[-1])


def _linear(ctx: ImportContext, node: Node, xq: Tensor, w: QConst, bias: Entry | None) -> Entry:
    """``xq @ w`` with a constant weight ``[K, N]`` (a batch of them ``[..., K, N]``, or a
    vector ``[K]``), with numpy's matmul rules."""
    k = w.ints.shape[-2] if w.ints.ndim > 1 else w.ints.shape[0]
    if len(xq.shape) < 1 or k != xq.shape[-1]:
        raise NodeError(f"input {list(xq.shape)} and weight {list(w.ints.shape)} do not multiply")
    if w.qtype.per_channel and (w.ints.ndim < 2 or w.qtype.channel_axis != w.ints.ndim - 1):
        raise NodeError("per-channel weight scales must be along the output features")
    out_shape = ctx.shape_of(node.outputs[0], lambda: matmul_shape(xq.shape, w.ints.shape))
    # A weight batch as long as the input ties the input's first axis to the weights.
    batched = xq.batched and len(xq.shape) > 1 and (w.ints.ndim <= 2 or w.ints.ndim < len(xq.shape))
    axis = len(out_shape) - 1
    assert xq.qtype is not None
    acc_q = acc_type(xq.qtype, w.qtype, axis)
    op = cimq.MatMulOp(ctx.as_quant(xq), ctx.weight_ssa(w),
                       ctx.ttype(out_shape, acc_q, batched), layer=node.label)
    acc = Tensor("acc", out_shape, batched, ssa=ctx.emit(op).results[0], qtype=acc_q)
    ctx.record(node.label, "linear", w.qtype, xq.qtype, {
        "input": ctx.shown(xq.shape, xq.batched), "weight": tuple(w.ints.shape),
        "output": ctx.shown(out_shape, batched)})
    return add_bias(ctx, acc, bias, axis, lambda b: b)


def _scaled(e: Entry | None, factor: float) -> Entry | None:
    """``factor * e`` for Gemm's alpha (weights) and beta (bias)."""
    if e is None or factor == 1.0:
        return e
    if isinstance(e, QConst) and e.qtype.width <= 8:
        if factor <= 0:
            raise NodeError(f"alpha={factor} is not supported (alpha must be positive)")
        scales = [v * factor for v in e.qtype.scale_values]
        qt = e.qtype.with_scales(scales if e.qtype.per_channel else scales[0],
                                 axis=e.qtype.channel_axis)
        return QConst(e.ints, qt, e.origin)
    if isinstance(e, Tensor):
        raise NodeError("the bias must be a constant")
    arr = e.arr if isinstance(e, Const) else e.real()
    return Const((np.asarray(arr, np.float32) * np.float32(factor)).astype(np.float32),
                 origin=e.origin)


def gemm(ctx: ImportContext, node: Node) -> Entry:
    """``alpha * A' @ B' + beta * C``: transB and alpha fold into the stored weight, transA
    transposes the integers of the streamed input, beta scales the bias."""
    a = node.attrs
    reason = host_reason(node)
    if reason is not None:
        return _host_gemm(ctx, node, reason)
    xq = quant_input(node, 0)
    if a.get("transA", 0):
        if len(xq.shape) != 2:
            raise NodeError(f"transA needs a 2-D input, got {list(xq.shape)}")
        xq = layout(ctx, xq, cimq.TransposeOp, xq.shape[::-1], False,
                    {"perm": cimq.i64_array([1, 0])})
    w = node.input(1)
    assert isinstance(w, QConst)
    if w.ints.ndim != 2:
        raise NodeError("the weight must be 2-D")
    if a.get("transB", 0):
        w = w.transposed([1, 0])
    w = _scaled(w, float(a.get("alpha", 1.0)))
    assert isinstance(w, QConst)
    return _linear(ctx, node, xq, w, _scaled(node.input(2), float(a.get("beta", 1.0))))


def _transposed(ctx: ImportContext, e: Entry) -> Entry:
    """A 2-D operand of Gemm transposed (constants folded, tensors by ``cimq.transpose``)."""
    if isinstance(e, QConst):
        return e.transposed([1, 0])
    if isinstance(e, Const):
        return Const(np.ascontiguousarray(e.arr.T), origin=e.origin)
    if len(e.shape) != 2:
        raise NodeError(f"a transposed Gemm operand must be 2-D, got {list(e.shape)}")
    return layout(ctx, e, cimq.TransposeOp, e.shape[::-1], False, {"perm": cimq.i64_array([1, 0])})


def _host_gemm(ctx: ImportContext, node: Node, reason: str) -> Entry:
    """Gemm on the host: transposes applied, ``alpha`` multiplies the product, ``beta`` the bias."""
    a = node.attrs
    lhs, rhs = node.input(0), node.input(1)
    assert lhs is not None and rhs is not None
    if a.get("transA", 0):
        lhs = _transposed(ctx, lhs)
    if a.get("transB", 0):
        rhs = _transposed(ctx, rhs)
    y = host_matmul(ctx, node, reason, lhs, rhs, float(a.get("alpha", 1.0)))
    bias = _scaled(node.input(2), float(a.get("beta", 1.0)))
    return add_bias(ctx, y, bias, len(y.shape) - 1, lambda b: b)


def matmul(ctx: ImportContext, node: Node) -> Entry:
    reason = host_reason(node)
    if reason is not None:
        lhs, rhs = node.input(0), node.input(1)
        assert lhs is not None and rhs is not None
        return host_matmul(ctx, node, reason, lhs, rhs)
    rhs = node.input(1)
    if isinstance(rhs, QConst):
        return _linear(ctx, node, quant_input(node, 0), rhs, None)
    lhs_q = quant_input(node, 0)
    rhs_q = quant_input(node, 1)
    out_shape = ctx.shape_of(node.outputs[0], lambda: matmul_shape(lhs_q.shape, rhs_q.shape))
    assert lhs_q.qtype is not None and rhs_q.qtype is not None
    acc_q = acc_type(lhs_q.qtype, rhs_q.qtype, -1)
    batched = lhs_q.batched or rhs_q.batched
    op = cimq.MatMulActOp(ctx.as_quant(lhs_q), ctx.as_quant(rhs_q),
                          ctx.ttype(out_shape, acc_q, batched), layer=node.label)
    acc = Tensor("acc", out_shape, batched, ssa=ctx.emit(op).results[0], qtype=acc_q)
    ctx.record(node.label, "matmul_act", rhs_q.qtype, lhs_q.qtype, {
        "input": ctx.shown(lhs_q.shape, lhs_q.batched),
        "weight": ctx.shown(rhs_q.shape, rhs_q.batched),
        "output": ctx.shown(out_shape, batched)})
    return acc
