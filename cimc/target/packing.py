"""Packing small matrices into one crossbar: block-diagonal repeats and shared arrays.

**Block-diagonal repeats** (``blocks = k``). A layer of ``H`` repeats of a small ``n x m`` matrix
(the groups of a grouped or depthwise convolution, the heads of an attention product) whose
repeats all see their vectors at the same time packs ``k`` repeats into one ``k*n x k*m``
block-diagonal matrix: repeat ``j`` of a block drives rows ``[j*n, (j+1)*n)`` and reads columns of
outputs ``[j*m, (j+1)*m)``. Off-diagonal weights are zero, so one cycle computes all ``k``
products exactly: ``ceil(H/k)`` programmed repeats instead of ``H``, as many fewer writes and
cycles. :func:`block_diagonal`, :func:`pack_inputs` and :func:`unpack_outputs` move between the
``[.., H, .., n]`` and ``[.., ceil(H/k), .., k*n]`` forms (the last block is padded with zero
repeats, whose outputs are dropped). :func:`max_blocks` is the largest ``k`` whose packed matrix
fits one tile.

**Shared arrays.** Consecutive single-tile layers can be placed side by side in one array, so one
write programs them all (:func:`shelf_pack`); each is then driven only on its own rows and read
only on its own columns, which gives exactly its own product (undriven rows carry no current).
"""

from __future__ import annotations

import numpy as np

from cimc.target.geometry import ceil_div, physical_shape


def max_blocks(h: int, n: int, m: int, n_slices: int, mapping: str, rows: int, cols: int) -> int:
    """The largest ``k <= h`` whose ``k*n x k*m`` block-diagonal matrix fits one tile (>= 1)."""
    best = 1
    for k in range(2, h + 1):
        r, c = physical_shape(k * n, k * m, n_slices, mapping)
        if r > rows or c > cols:
            break
        best = k
    return best


def block_diagonal(W: np.ndarray, k: int) -> np.ndarray:
    """``W [..., H, n, m]`` -> ``[..., ceil(H/k), k*n, k*m]`` block-diagonal (zero elsewhere)."""
    *lead, h, n, m = W.shape
    hp = ceil_div(h, k)
    out = np.zeros((*lead, hp, k * n, k * m), dtype=W.dtype)
    for rep in range(h):
        g, j = divmod(rep, k)
        out[..., g, j * n : (j + 1) * n, j * m : (j + 1) * m] = W[..., rep, :, :]
    return out


def pack_inputs(x: np.ndarray, k: int) -> np.ndarray:
    """``x [B, H, P, n]`` -> ``[B, ceil(H/k), P, k*n]``: the inputs of ``k`` repeats side by side."""
    b, h, p, n = x.shape
    hp = ceil_div(h, k)
    pad = np.zeros((b, hp * k, p, n), dtype=x.dtype)
    pad[:, :h] = x
    return np.ascontiguousarray(pad.reshape(b, hp, k, p, n).transpose(0, 1, 3, 2, 4).reshape(b, hp, p, k * n))


def unpack_outputs(y: np.ndarray, h: int, k: int) -> np.ndarray:
    """``y [B, ceil(H/k), P, k*m]`` -> ``[B, H, P, m]`` (the padding repeats dropped)."""
    b, hp, p, km = y.shape
    m = km // k
    return np.ascontiguousarray(y.reshape(b, hp, p, k, m).transpose(0, 1, 3, 2, 4).reshape(b, hp * k, p, m)[:, :h])


def shelf_pack(sizes: list[tuple[int, int]], rows: int, cols: int) -> list[tuple[int, int, int]]:
    """Place rectangles ``(rows_i, cols_i)`` in program order into arrays of ``rows x cols``:
    left to right on shelves stacked top down; a rectangle that does not fit opens the next
    array. Returns ``(array, row offset, column offset)`` per rectangle (disjoint cells)."""
    out = []
    arr, shelf_y, shelf_h, x = 0, 0, 0, 0
    for r, c in sizes:
        if x + c <= cols and shelf_y + max(shelf_h, r) <= rows:
            out.append((arr, shelf_y, x))
            x += c
            shelf_h = max(shelf_h, r)
            continue
        if shelf_y + shelf_h + r <= rows and c <= cols:  # a new shelf below
            shelf_y, shelf_h, x = shelf_y + shelf_h, r, c
            out.append((arr, shelf_y, 0))
            continue
        arr, shelf_y, shelf_h, x = arr + 1, 0, r, c
        out.append((arr, 0, 0))
    return out
