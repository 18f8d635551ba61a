"""Host-side numba and numpy kernels of the executor: grouped im2col and the fused requantize.

These implement host ops (``xbar.im2col``, ``cimq.requantize``) fast; their semantics are those of
:mod:`cimc.semantics`, to the bit. Nothing here is crossbar hardware (that is :mod:`cimc.target`).
"""

from __future__ import annotations

import numba
import numpy as np

_F32_EXACT = 1 << 24


# ---------------------------------------------------------------------------- im2col


def im2col_grouped(
    x: np.ndarray,
    groups: int,
    kernel: tuple[int, int],
    strides: tuple[int, int],
    pads: tuple[int, int, int, int],
    dilations: tuple[int, int],
    dtype: np.dtype | type | None = None,
    pad_value: int = 0,
) -> np.ndarray:
    """Padded (``pad_value``: the input's zero point, 0 by default) grouped im2col of NCHW ``x``: ``[B, groups, Ho*Wo, Cg*kh*kw]``, equal to
    stacking :func:`cimc.semantics.im2col` of every channel group.

    The patches are written channel-major (``[B, G, Cg, kh, kw, Ho, Wo]`` in memory, one strided
    copy per kernel offset) and returned as a transposed view, so no transposing copy is made;
    matmuls take the view as it is (BLAS transposes for free). ``dtype`` (default ``x``'s) is the
    result's, converted during the copies; float32 is used only when ``x`` holds integers of
    magnitude below 2^24 (exact), otherwise the result keeps ``x``'s dtype.
    """
    from cimc.semantics import conv_output_size

    x = np.asarray(x)
    n, c, h, w = x.shape
    kh, kw = kernel
    sh, sw = strides
    pt, pl, pb, pr = pads
    dh, dw = dilations
    ho = conv_output_size(h, kh, sh, pt, pb, dh)
    wo = conv_output_size(w, kw, sw, pl, pr, dw)
    cg = c // groups
    want = np.dtype(dtype if dtype is not None else x.dtype)
    if want != x.dtype:
        exact = want == np.float32 and x.dtype.kind in "iu" and (
            x.size == 0 or max(-int(x.min()), int(x.max())) < _F32_EXACT)
        want = want if exact else x.dtype
    cols = np.empty((n, groups, cg, kh, kw, max(ho, 0), max(wo, 0)), dtype=want)
    if cols.size:
        xp = np.full((n, groups, cg, h + pt + pb, w + pl + pr), pad_value, dtype=want)
        xp[:, :, :, pt : pt + h, pl : pl + w] = x.reshape(n, groups, cg, h, w)
        for ky in range(kh):
            y0 = ky * dh
            for kx in range(kw):
                x0 = kx * dw
                cols[:, :, :, ky, kx] = xp[:, :, :, y0 : y0 + sh * (ho - 1) + 1 : sh, x0 : x0 + sw * (wo - 1) + 1 : sw]
    view = cols.transpose(0, 1, 5, 6, 2, 3, 4)
    return view.reshape(n, groups, max(ho, 0) * max(wo, 0), cg * kh * kw)


# ---------------------------------------------------------------------------- host requantize chain


@numba.njit(cache=True, nogil=True)
def requant_chain(
    acc, dscale, mul, add, res, use_mul, use_add, use_res, relu, qscale, keep, y, out
):  # pragma: no cover - numba
    """One pass of ``dequantize -> [* mul[c]] -> [+ add[c]] -> [+ res] -> [relu] -> / qscale -> rint``.

    ``acc [B, C, H, W]`` integers, ``dscale [C]`` float64 (the 32-bit dequantize: the float64
    product rounded once to float32), ``mul``/``add [C]`` float32, ``res [B, C, H, W]`` float32,
    ``qscale`` float32; every step is one IEEE float32 operation, exactly as numpy does it, and
    relu keeps NaN and turns -0.0 into +0.0, as ``np.maximum(x, 0)`` does. ``out`` (float32)
    gets the rounded quotients; the caller converts, adds the zero point and saturates. With
    ``keep``, ``y`` gets the float values before the division.
    """
    n_b, n_c, n_h, n_w = acc.shape
    zero = np.float32(0.0)
    for b in range(n_b):
        for c in range(n_c):
            ds = dscale[c]
            m1 = mul[c]
            a1 = add[c]
            for i in range(n_h):
                for j in range(n_w):
                    v = np.float32(np.float64(acc[b, c, i, j]) * ds)
                    if use_mul:
                        v = v * m1
                    if use_add:
                        v = v + a1
                    if use_res:
                        v = v + res[b, c, i, j]
                    if relu and not (v > zero or v != v):  # -0.0 -> +0.0, NaN kept: as np.maximum
                        v = zero
                    if keep:
                        y[b, c, i, j] = v
                    out[b, c, i, j] = np.rint(v / qscale)
