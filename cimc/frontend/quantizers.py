"""Quantizer recognition: QuantizeLinear / Clip / DequantizeLinear -> bits, scales, zero points.

* ``QuantizeLinear`` of a run-time tensor starts a pending quantized tensor (``q``); its storage
  type gives 8 (or 16) bits, an integer ``Clip`` behind it narrows the range to the real bit width
  (``[0, 15]`` is u4, ``[-7, 7]`` s4 narrow, ``[-8, 7]`` s4); ``DequantizeLinear`` of it is the
  float view (``dq``) that crossbar ops consume.
* ``DequantizeLinear`` of integer constants (optionally clipped, or quantized here from float
  constants with :func:`cimc.semantics.quantize`) is a :class:`~cimc.frontend.values.QConst`:
  weights of 1..8 bits or an int32 bias.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import onnx
from xdsl.dialects.builtin import FloatAttr, f64

from cimc import semantics as sem
from cimc.dialects import cimq
from cimc.dialects.cimq import QuantType
from cimc.frontend.context import ImportContext
from cimc.frontend.shapes import fold
from cimc.frontend.types import np_bits, np_int, storage_from_enum, storage_of
from cimc.frontend.values import Const, Entry, Node, NodeError, QConst, Tensor


def _pow2(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


def scale_zp(node: Node) -> tuple[np.ndarray, np.ndarray, Any, int]:
    """Scale (float64 array), zero point array, storage (bits, signed) and axis of a Q / DQ."""
    block = node.attrs.get("block_size", 0)
    if block:
        raise NodeError(f"blocked quantization (block_size={block}) is not supported")
    for key in ("precision", "output_dtype" if node.op_type == "DequantizeLinear" else ""):
        dtype = node.attrs.get(key, 0)
        if dtype and dtype != onnx.TensorProto.FLOAT:
            name = onnx.TensorProto.DataType.Name(dtype).lower()
            raise NodeError(f"{key}={name} is not supported (float32 only)")
    scale = node.input(1)
    if not isinstance(scale, Const):
        raise NodeError("the scale must be a constant")
    zp_entry = node.input(2)
    if zp_entry is not None and not isinstance(zp_entry, Const):
        raise NodeError("the zero point must be a constant")
    s = np.asarray(scale.arr, dtype=np.float64)
    if s.ndim > 1:
        raise NodeError(f"scale of shape {list(s.shape)} is not supported (scalar or 1-D)")
    if zp_entry is not None:
        zp = np.asarray(zp_entry.arr)
        storage = storage_of(zp_entry)
    else:
        zp = np.zeros((), dtype=np.int64)
        storage = None
    return s, zp, storage, int(node.attrs.get("axis", 1))


def _q_storage(node: Node, storage: Any) -> tuple[int, bool]:
    """(bits, signed) of a QuantizeLinear's output type."""
    if storage is None:
        out_dtype = node.attrs.get("output_dtype", 0)
        storage = storage_from_enum(out_dtype) if out_dtype else (8, False)
    if isinstance(storage, str):
        raise NodeError(f"quantized type {storage} is not supported; cimc supports "
                        "int8/uint8 (1 to 8 bits)", with_op=False)
    return storage


def _quantize_const(arr: np.ndarray, s: np.ndarray, zp: np.ndarray, axis: int, bits: int,
                    signed: bool) -> np.ndarray:
    """QuantizeLinear of a constant (``export_weight_q_node``) with cimc's semantics."""
    x = np.asarray(arr, dtype=np.float32)
    z = np.asarray(zp, dtype=np.int64).reshape(-1)
    if not (s.ndim == 1 and s.size > 1):
        qt = QuantType(bits, signed, float(s.reshape(-1)[0]), zero_point=int(z[0]))
        return sem.quantize(x, qt).astype(np_int(bits, signed))
    ax = axis % x.ndim
    if np.all(z == z[0]):
        qt = QuantType(bits, signed, [float(v) for v in s], axis=ax, zero_point=int(z[0]))
        return sem.quantize(x, qt).astype(np_int(bits, signed))
    parts = [sem.quantize(np.take(x, [c], axis=ax),
                          QuantType(bits, signed, float(s[c]), zero_point=int(z[c])))
             for c in range(s.size)]  # a zero point per channel: one channel at a time
    return np.concatenate(parts, axis=ax).astype(np_int(bits, signed))


def quantize_linear(ctx: ImportContext, node: Node) -> Entry:
    s, zp, storage, axis = scale_zp(node)
    bits, signed = _q_storage(node, storage)
    x = node.ins[0]
    if isinstance(x, (Const, QConst)):  # export_weight_q_node: quantize the weights here
        arr = x.arr if isinstance(x, Const) else x.real()
        ints = _quantize_const(arr, s, zp, axis, bits, signed)
        return Const(ints, origin=x.origin, int_bits=(bits, signed))
    if np.unique(s).size > 1 or np.unique(zp).size > 1:  # equal per-channel values: one scale
        return _per_channel_q(node, s, zp, axis, bits, signed)
    too_wide = None
    if bits > 8:  # a Clip may still narrow it; checked when the integers are used
        too_wide = node.error(
            f"{'int' if signed else 'uint'}{bits} quantization of '{node.inputs[0]}' is "
            f"{bits} bits; cimc supports 1 to 8 bits", with_op=False)
    scale = float(s.reshape(-1)[0])
    if not (scale > 0 and math.isfinite(scale)):
        raise NodeError(f"scale {scale} must be positive and finite", with_op=False)
    assert isinstance(x, Tensor)
    # A wider type is a placeholder (a Clip narrows it; too_wide raises before any other use).
    qtype = QuantType(bits if bits <= 8 else 32, signed, scale, zero_point=int(zp.reshape(-1)[0]))
    return Tensor("q", x.shape, x.batched, qtype=qtype, source=x, src=node.outputs[0],
                  storage=(bits, signed), too_wide=too_wide)


def clip_bits(lo: int, hi: int) -> tuple[int, bool, bool]:
    """(bits, signed, narrow) of an integer Clip range, or a node error."""
    span = hi + 1
    if lo == 0 and hi > 0 and _pow2(span):
        bits, signed, narrow = int(math.log2(span)), False, False
    elif lo < 0 and lo == -hi and _pow2(span):
        bits, signed, narrow = int(math.log2(span)) + 1, True, True
    elif lo < 0 and -lo == span and _pow2(span):
        bits, signed, narrow = int(math.log2(span)) + 1, True, False
    else:
        raise NodeError(f"Clip bounds [{lo}, {hi}] are not a power-of-two integer range (such "
                        "as [0, 15], [-8, 7] or [-7, 7])", with_op=False)
    if bits > 8:
        raise NodeError(f"Clip range [{lo}, {hi}] is {bits} bits; cimc supports 1 to 8 bits",
                        with_op=False)
    return bits, signed, narrow


def _clip_bounds(node: Node, dtype: Any) -> tuple[Any, Any]:
    info = np.iinfo(dtype) if np.issubdtype(dtype, np.integer) else None
    bounds = []
    for k in (1, 2):
        e = node.input(k)
        if e is None:
            bounds.append(None if info is None else (info.min if k == 1 else info.max))
            continue
        if not isinstance(e, Const):
            raise NodeError("Clip bounds must be constants")
        bounds.append(e.arr.reshape(-1)[0].item())
    if "min" in node.attrs and bounds[0] is None:  # opset < 11 style attributes
        bounds[0] = node.attrs["min"]
    if "max" in node.attrs and bounds[1] is None:
        bounds[1] = node.attrs["max"]
    return bounds[0], bounds[1]


def clip(ctx: ImportContext, node: Node) -> Entry | list[Entry | None]:
    """Integer Clip: bit width of weights / activations; float Clip: ``cimq.clip``."""
    x = node.ins[0]
    if isinstance(x, Const) and np.issubdtype(x.arr.dtype, np.integer):
        lo, hi = _clip_bounds(node, x.arr.dtype)
        clip_bits(int(lo), int(hi))
        return Const(np.clip(x.arr, lo, hi).astype(x.arr.dtype), origin=x.origin,
                     clip=(int(lo), int(hi)))
    if isinstance(x, Tensor) and x.kind == "q":
        if x.ssa is not None or x.source is None:
            raise NodeError("clipping a quantized tensor that is not a QuantizeLinear output "
                            "is not supported")
        assert x.qtype is not None
        bits, signed = x.storage or (8, x.qtype.is_signed)
        lo, hi = _clip_bounds(node, np_int(bits, signed))
        cb, csigned, narrow = clip_bits(int(lo), int(hi))
        zp = x.qtype.zp
        if not lo <= zp <= hi:
            raise NodeError(f"zero point {zp} lies outside the Clip range [{lo}, {hi}]",
                            with_op=False)
        qtype = QuantType(cb, csigned, x.qtype.scale_values[0], narrow=narrow, zero_point=zp)
        return Tensor("q", x.shape, x.batched, qtype=qtype, source=x.source,
                      src=node.outputs[0], storage=(bits, signed))
    if isinstance(x, (Const, QConst)):
        return fold(node)
    assert isinstance(x, Tensor)
    lo, hi = _clip_bounds(node, np.float32)
    attrs = {}
    if lo is not None:
        attrs["min"] = FloatAttr(float(lo), f64)
    if hi is not None:
        attrs["max"] = FloatAttr(float(hi), f64)
    return ctx.float_result(cimq.ClipOp, [ctx.as_float(x)], x.shape, x.batched, attrs)


def _per_channel_q(node: Node, s: np.ndarray, zp: np.ndarray, axis: int, bits: int,
                   signed: bool) -> Tensor:
    """QuantizeLinear of an activation per channel: integers with a scale per channel along
    ``axis``. A crossbar streams one scale, so their DequantizeLinear gives floats and the
    Conv / Gemm / MatMul after it runs on the host."""
    x = node.ins[0]
    assert isinstance(x, Tensor)
    if bits > 8:
        raise NodeError(f"per-channel quantization to {bits} bits; cimc supports 1 to 8 bits",
                        with_op=False)
    if not x.shape:
        raise NodeError("per-channel quantization of a scalar", with_op=False)
    ax = axis % len(x.shape)
    n, scales, zps = x.shape[ax], s.reshape(-1), zp.reshape(-1).astype(np.int64)
    if scales.size not in (1, n) or zps.size not in (1, n):
        raise NodeError(f"{scales.size} scales / {zps.size} zero points do not match dim {ax} "
                        f"({n}) of '{node.inputs[0]}'", with_op=False)
    if np.any(zps != zps[0]):
        raise NodeError(f"per-channel activation zero points {zps.tolist()[:4]} are not "
                        "supported (one zero point per tensor)", with_op=False)
    if ax == 0 and x.batched:
        raise NodeError("per-channel quantization along the batch axis is not supported",
                        with_op=False)
    if not np.all(scales > 0) or not np.all(np.isfinite(scales)):
        raise NodeError(f"scale {scales.tolist()[:4]} must be positive and finite", with_op=False)
    qtype = QuantType(bits, signed, [float(v) for v in np.broadcast_to(scales, (n,))], axis=ax,
                      zero_point=int(zps[0]))
    return Tensor("q", x.shape, x.batched, qtype=qtype, source=x, src=node.outputs[0],
                  storage=(bits, signed))


def _dq_per_channel(ctx: ImportContext, x: Tensor, s: np.ndarray, zp: np.ndarray) -> Tensor:
    """DequantizeLinear of per-channel activation integers: a float tensor."""
    assert x.qtype is not None
    want = np.broadcast_to(s.reshape(-1), (len(x.qtype.scale_values),))
    if not np.allclose(want, x.qtype.scale_values, rtol=1e-7, atol=0) or np.any(
            zp.reshape(-1).astype(np.int64) != x.qtype.zp):
        raise NodeError("DequantizeLinear scales / zero points differ from the QuantizeLinear's",
                        with_op=False)
    return Tensor("float", x.shape, x.batched, ssa=ctx.as_float(Tensor("dq", x.shape, x.batched, q=x)))


def _dq_activation(node: Node, x: Tensor, s: np.ndarray, zp: np.ndarray) -> Tensor:
    if x.too_wide is not None:
        raise x.too_wide
    assert x.qtype is not None
    q_scale = x.qtype.scale_values[0]
    if not all(math.isclose(float(v), q_scale, rel_tol=1e-7) for v in s.reshape(-1)):
        raise NodeError(f"DequantizeLinear scale {s.reshape(-1).tolist()[:4]} differs from the "
                        f"QuantizeLinear scale {q_scale}", with_op=False)
    if np.any(zp.reshape(-1).astype(np.int64) != x.qtype.zp):
        raise NodeError(f"DequantizeLinear zero point {zp.reshape(-1).tolist()[:4]} differs from "
                        f"the QuantizeLinear zero point {x.qtype.zp}", with_op=False)
    return Tensor("dq", x.shape, x.batched, q=x)


def _weight_type(node: Node, x: Const) -> tuple[int, bool, bool]:
    """(bits, signed, narrow) of dequantized integer constants."""
    bits, signed = x.int_bits or np_bits(x.arr.dtype)
    narrow = False
    if x.clip is not None:
        bits, signed, narrow = clip_bits(*x.clip)
    elif bits != 32 and bits > 8:
        raise NodeError(f"{x.arr.dtype} weight '{node.inputs[0]}' is {bits} bits; cimc supports "
                        "1 to 8 bits", with_op=False)
    if bits == 32 and x.clip is None and not signed:
        raise NodeError("uint32 constants are not supported", with_op=False)
    return bits, signed, narrow


def _weight_zero_point(node: Node, zp: np.ndarray, bits: int, signed: bool, narrow: bool
                       ) -> int:
    """The one zero point of dequantized integer constants (per-channel ones must agree)."""
    flat = zp.reshape(-1).astype(np.int64)
    if flat.size == 0:
        return 0
    if np.any(flat != flat[0]):
        raise NodeError(f"per-channel weight zero points {flat.tolist()[:4]} are not supported "
                        "(one zero point per tensor)", with_op=False)
    zero = int(flat[0])
    qt = QuantType(bits, signed, 1.0, narrow=narrow, zero_point=zero)
    if bits != 32 and not qt.qmin <= zero <= qt.qmax:
        raise NodeError(f"weight zero point {zero} lies outside [{qt.qmin}, {qt.qmax}]",
                        with_op=False)
    return zero


def _wide_const(node: Node, x: Const, s: np.ndarray, zp: np.ndarray, axis: int) -> Const:
    """DequantizeLinear of 9..16-bit integer constants: their float values
    (``float32(q - zp) * float32(scale)``), marked ``wide``; a Conv / Gemm / MatMul that uses
    them as its weight runs on the host (a crossbar takes 1 to 8 bits)."""
    ints = x.arr.astype(np.int64)
    shape = [1] * ints.ndim
    if s.size > 1 or zp.size > 1:
        if ints.ndim == 0:
            raise NodeError("per-channel parameters of a scalar", with_op=False)
        ax = axis % ints.ndim
        shape[ax] = -1
    scale = s.astype(np.float32).reshape(shape if s.size > 1 else [])
    zero = zp.astype(np.int64).reshape(shape if zp.size > 1 else [])
    if not np.all(scale > 0) or not np.all(np.isfinite(scale)):
        raise NodeError(f"scale {s.reshape(-1).tolist()[:4]} must be positive and finite",
                        with_op=False)
    real = (ints - zero).astype(np.float32) * scale
    bits = (x.int_bits or np_bits(x.arr.dtype))[0]
    return Const(np.asarray(real, np.float32), origin=x.origin or node.inputs[0], wide=bits)


def dequantize_linear(ctx: ImportContext, node: Node) -> Entry:
    s, zp, _storage, axis = scale_zp(node)
    x = node.ins[0]
    if isinstance(x, Tensor) and x.kind == "q":
        if x.qtype is not None and x.qtype.per_channel:
            return _dq_per_channel(ctx, x, s, zp)
        return _dq_activation(node, x, s, zp)
    if not isinstance(x, Const) or not np.issubdtype(x.arr.dtype, np.integer):
        raise NodeError("the input is not an integer tensor (a QuantizeLinear, Clip or "
                        "integer initializer)")
    ints = x.arr
    if x.clip is None and 8 < (x.int_bits or np_bits(ints.dtype))[0] < 32:
        return _wide_const(node, x, s, zp, axis)
    bits, signed, narrow = _weight_type(node, x)
    zero = _weight_zero_point(node, zp, bits, signed, narrow)
    scales = [float(v) for v in s.reshape(-1)]
    if any(not (v > 0 and math.isfinite(v)) for v in scales):
        raise NodeError(f"scale {scales[:4]} must be positive and finite", with_op=False)
    if len(scales) > 1:
        ax = axis % max(ints.ndim, 1)
        if len(scales) != ints.shape[ax]:
            raise NodeError(f"{len(scales)} scales do not match dim {ax} ({ints.shape[ax]}) of "
                            f"'{node.inputs[0]}'", with_op=False)
        qtype = QuantType(bits, signed, scales, narrow=narrow, axis=ax, zero_point=zero)
    else:
        qtype = QuantType(bits, signed, scales[0], narrow=narrow, zero_point=zero)
    store = ints.astype(np.int32 if bits == 32 else (np.int8 if signed else np.uint8))
    return QConst(store, qtype, origin=x.origin or node.inputs[0])
