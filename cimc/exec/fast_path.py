"""The exact fast path: a crossbar layer's integers in one product, when that is provably exact.

With a lossless ADC a layer's bit-serial result equals ``x @ w`` (tested everywhere), so the
executor may compute it in one step. :func:`fast_matmul` uses float32 BLAS when every partial sum
is provably an exact integer in float32, else :func:`cimc.semantics.exact_matmul`. A static
weight's float32 copy is derived once from its blob (:meth:`cimc.weights.Blob.derived`) and kept
with the module, not in the process.
"""

from __future__ import annotations

import numpy as np

from cimc import semantics as sem
from cimc.target.kernels import F32_EXACT
from cimc.weights import Blob


def f32_weights(w: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """``(w as float32, max_o |w[..., i, o]| as float32)``, or None if ``w`` is not exact in float32."""
    wabs_max = np.abs(w).max(axis=-1) if w.size else np.zeros(w.shape[:-1], dtype=np.int64)
    if w.size and int(wabs_max.max()) >= F32_EXACT:
        return None
    return w.astype(np.float32), wabs_max.astype(np.float32)


def _f32_product(xf: np.ndarray, wt: np.ndarray, wmax: np.ndarray) -> np.ndarray | None:
    """``xf [B, H, P, n] @ wt`` as int64 if float32 is provably exact for it, else None.

    The exactness bound ``sum_i |x[r, i]| * wmax[i]`` of every row is one matrix-vector product
    per ``(b, h)`` (no ``abs`` pass when ``x >= 0``). The product is computed transposed
    (``[m, P]``), so the result is a ``[B, H, P, m]`` view of ``[B, H, m, P]`` memory and
    ``xbar.col2im`` needs no copy.
    """
    b_sz, h_sz, p_sz, n = xf.shape
    m = wt.shape[-1]
    limit = F32_EXACT / (1.0 + 4.0 * n * 2.0**-24)
    nonneg = float(xf.min()) >= 0.0
    for b in range(b_sz):
        for h in range(h_sz):
            xs = xf[b, h]
            bound = np.matmul(xs if nonneg else np.abs(xs), wmax[b, h] if wmax.ndim == 3 else wmax[h])
            if float(bound.max()) >= limit:
                return None
    out = np.empty((b_sz, h_sz, m, p_sz), dtype=np.int64)
    for b in range(b_sz):
        for h in range(h_sz):
            out[b, h] = np.matmul((wt[b, h] if wt.ndim == 4 else wt[h]).T, xf[b, h].T)
    return out.transpose(0, 1, 3, 2)


def fast_matmul(x: np.ndarray, w: np.ndarray, blob: Blob | None = None) -> np.ndarray:
    """``x [B, H, P, n] @ w`` (``w [H, n, m]`` static or ``[B, H, n, m]`` dynamic), exact int64.

    float32 BLAS when provably exact: every partial sum of ``x[r] @ w[:, o]``, in any order, is
    an integer of magnitude at most ``sum_i |x[r, i]| * max_o |w[i, o]|``; that bound is computed
    (a float32 matrix-vector product, with its own rounding margin) and must stay below 2^24.
    Otherwise :func:`cimc.semantics.exact_matmul` (float64 or int64). ``blob`` (the static
    weight's) keeps the float32 copy for later runs. The result may be a transposed view.
    """
    if blob is not None:
        wf = blob.derived(("f32", w.shape), lambda _: f32_weights(w))
    else:
        wf = f32_weights(w)
    if wf is not None and x.size and w.size:
        y = _f32_product(x.astype(np.float32, copy=False), *wf)
        if y is not None:
            return y
    return sem.exact_matmul(x, w if w.ndim == 4 else w[None])
