"""cimc's reference semantics: the one place that defines integer and rounding behaviour.

Every IR level computes exactly these functions; lower levels must reproduce the integers of the
level above bit for bit (with a lossless ADC).

Quantized tensors
    A value of type ``!cimq.q<...>`` is an integer array ``q`` with real value
    ``scale * (q - zero_point)``; ``q`` lies in ``[qmin, qmax]`` of its type (signed narrow
    B bits: ``[-(2^(B-1)-1), 2^(B-1)-1]``; signed: ``[-2^(B-1), 2^(B-1)-1]``; unsigned:
    ``[0, 2^B-1]``). Runtime arrays hold them as ``int64``.

Quantize (float -> q)
    ``q = clamp(round_half_even(float32(x) / float32(scale)) + zero_point, qmin, qmax)``; the
    division is done in float32, as ONNX QuantizeLinear specifies (onnxruntime does the same).
    NaN quantizes to ``qmin`` (what onnxruntime gives), +-inf saturate.

Dequantize (q -> float)
    1..8-bit tensors: ``float32(q - zero_point) * float32(scale)`` (ONNX DequantizeLinear).
    32-bit accumulators: ``float32(float64(acc) * float64(scale))``: the exact integer times the
    exact scale, rounded once to float32.

Products (``cimq.conv``, ``cimq.matmul``, ``cimq.matmul_act``)
    Exact integer accumulation in int64 of ``(q_x - zp_x) * (q_w - zp_w)`` (:func:`centered`);
    the accumulator scale is ``scale_x * scale_w`` (per channel when the weight is), its zero
    point 0. Convolution pads the centered input with 0, i.e. the integer input with its zero
    point: a real zero.

Bias
    int32 bias (``cimq.bias_add``): exact integer add into the accumulator. Float bias: added in
    float32 after dequantizing the accumulator.

Requantize (``cimq.requantize``)
    ``y = dequantize(acc) [+ bias]``, clamped to ``[clamp_min, clamp_max]`` when the op carries
    them (ReLU is ``clamp_min = 0``), then ``quantize(y)``. Equal to the unfused chain
    ``dequantize -> add -> relu/clip -> quantize``.

Host float ops
    float32 numpy with ONNX semantics (softmax subtracts the row max; layernorm in float32;
    GELU is the erf form).

Host products (``cimq.host_conv``, ``cimq.host_matmul``: the host fallback)
    float32 operands, products and sums in float64, rounded once to float32
    (:func:`conv2d_float`, :func:`matmul_float`).

Against onnxruntime (graph optimizations off) the only differences come from float accumulation
order in its float convolution, which can move a value across a rounding tie: those differ by
exactly one LSB and are counted by the tests.
"""

from __future__ import annotations

import numpy as np

from cimc.dialects.cimq import QuantType


def scale_array(qt: QuantType, ndim: int) -> np.ndarray:
    """The type's scales, shaped to broadcast against an ``ndim`` tensor."""
    scales = np.asarray(qt.scale_values, dtype=np.float64)
    if not qt.per_channel:
        return scales.reshape(())
    shape = [1] * ndim
    shape[qt.channel_axis] = scales.size
    return scales.reshape(shape)


def quantize(x: np.ndarray, qt: QuantType) -> np.ndarray:
    """Float -> integers of ``qt`` (round half to even in float32, then saturate; NaN -> qmin)."""
    x32 = np.asarray(x, dtype=np.float32)
    scale = scale_array(qt, x32.ndim).astype(np.float32)
    lo, hi = np.float32(qt.qmin - qt.zp), np.float32(qt.qmax - qt.zp)
    if x32.ndim == 0:
        with np.errstate(over="ignore", invalid="ignore"):  # inf saturates, NaN -> qmin below
            return np.fmin(np.fmax(np.rint(x32 / scale), lo), hi).astype(np.int64) + qt.zp
    with np.errstate(over="ignore", invalid="ignore"):
        t = np.divide(x32, scale, dtype=np.float32)  # in place from here on: no temporaries
    np.rint(t, out=t)
    # Saturate before the integer conversion (huge values stay huge); fmax turns NaN into the
    # lower bound, as onnxruntime's QuantizeLinear does.
    np.fmax(t, lo, out=t)
    np.fmin(t, hi, out=t)
    q = t.astype(np.int64)
    if qt.zp:
        q += qt.zp
    return q


def centered(q: np.ndarray, qt: QuantType) -> np.ndarray:
    """``q - zero_point``: the integers a product multiplies (``q`` itself when zp is 0)."""
    if qt.zp == 0:
        return q
    return np.asarray(q, dtype=np.int64) - qt.zp


def dequantize(q: np.ndarray, qt: QuantType) -> np.ndarray:
    """Integers of ``qt`` -> float32."""
    q = np.asarray(q)
    if qt.width == 32:
        p = q.astype(np.float64)
        scale64 = scale_array(qt, q.ndim)
        if p.ndim and np.broadcast_shapes(p.shape, scale64.shape) == p.shape:
            p *= scale64  # in place: one float64 temporary fewer
            return p.astype(np.float32)
        return (p * scale64).astype(np.float32)
    return dequantize_linear(q, qt)


def dequantize_linear(q: np.ndarray, qt: QuantType) -> np.ndarray:
    """ONNX DequantizeLinear at any width: ``float32(q - zero_point) * float32(scale)``.

    This is what an ONNX file computes for its constants too (an int32 bias it adds in float).
    """
    q = np.asarray(q)
    scale = scale_array(qt, q.ndim).astype(np.float32)
    if qt.zp:
        q = q.astype(np.int64) - qt.zp  # in int64: uint8 / int8 constants must not wrap around
    return q.astype(np.float32) * scale


def exact_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` of integer arrays, exact, as int64.

    float64 BLAS is exact while every partial sum stays below 2^53; the bound is checked and an
    integer product is used otherwise.
    """
    a = np.asarray(a)
    b = np.asarray(b)
    k = a.shape[-1]
    amax = int(np.abs(a).max(initial=0))
    bmax = int(np.abs(b).max(initial=0))
    if amax * bmax * max(k, 1) < 2**53:
        return np.rint(a.astype(np.float64) @ b.astype(np.float64)).astype(np.int64)
    return a.astype(np.int64) @ b.astype(np.int64)


def conv_output_size(size: int, k: int, stride: int, pad_lo: int, pad_hi: int, dil: int) -> int:
    return (size + pad_lo + pad_hi - dil * (k - 1) - 1) // stride + 1


def im2col(
    x: np.ndarray,
    kernel: tuple[int, int],
    strides: tuple[int, int],
    pads: tuple[int, int, int, int],
    dilations: tuple[int, int],
    pad_value: float | int = 0,
) -> tuple[np.ndarray, int, int]:
    """NCHW -> patches ``[N, Ho*Wo, C*kh*kw]`` (channel-major, then ky, kx: OIHW order)."""
    n, c, h, w = x.shape
    kh, kw = kernel
    sh, sw = strides
    pt, pl, pb, pr = pads
    dh, dw = dilations
    ho = conv_output_size(h, kh, sh, pt, pb, dh)
    wo = conv_output_size(w, kw, sw, pl, pr, dw)
    xp = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)), constant_values=pad_value)
    cols = np.empty((n, c, kh, kw, ho, wo), dtype=x.dtype)
    for ky in range(kh):
        y0 = ky * dh
        for kx in range(kw):
            x0 = kx * dw
            cols[:, :, ky, kx] = xp[:, :, y0 : y0 + sh * (ho - 1) + 1 : sh, x0 : x0 + sw * (wo - 1) + 1 : sw]
    patches = cols.transpose(0, 4, 5, 1, 2, 3).reshape(n, ho * wo, c * kh * kw)
    return patches, ho, wo


def matmul_float(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` of float tensors (numpy's matmul rules): float64 products and sums, rounded
    once to float32."""
    return np.matmul(np.asarray(a, np.float64), np.asarray(b, np.float64)).astype(np.float32)


def conv2d_float(x: np.ndarray, w: np.ndarray, strides: tuple[int, int], pads: tuple[int, int, int, int],
                 dilations: tuple[int, int], group: int) -> np.ndarray:
    """Grouped float convolution, NCHW x OIHW -> float32 NCHW (float64 sums, rounded once)."""
    y = _conv2d(np.asarray(x, np.float64), np.asarray(w, np.float64), strides, pads, dilations, group,
                lambda p, wt: p @ wt)
    return y.astype(np.float32)


def conv2d_int(
    x: np.ndarray,
    w: np.ndarray,
    strides: tuple[int, int],
    pads: tuple[int, int, int, int],
    dilations: tuple[int, int],
    group: int,
) -> np.ndarray:
    """Exact integer grouped convolution, NCHW x OIHW -> int64 NCHW."""
    return _conv2d(x, w, strides, pads, dilations, group, exact_matmul)


def _conv2d(x, w, strides, pads, dilations, group, matmul) -> np.ndarray:
    n, c, _, _ = x.shape
    o, cg, kh, kw = w.shape
    og = o // group
    outs = []
    for g in range(group):
        xg = x[:, g * cg : (g + 1) * cg]
        wg = w[g * og : (g + 1) * og].reshape(og, cg * kh * kw)
        patches, ho, wo = im2col(xg, (kh, kw), strides, pads, dilations)
        yg = matmul(patches, wg.T)  # [N, Ho*Wo, og]
        outs.append(yg.transpose(0, 2, 1).reshape(n, og, ho, wo))
    return outs[0] if group == 1 else np.concatenate(outs, axis=1)
