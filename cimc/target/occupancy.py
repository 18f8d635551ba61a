"""Which cells of a mapped weight are non-zero, per row tile and physical column, without mapping it.

A weight slice whose cells are all zero needs no crossbar column, and a tile whose cells are all
zero needs no write and no cycle (``xbar-skip-zero-weights``). Whether a cell is zero is decided
by the cell-level table of the mapping (:func:`cimc.target.mapping.level_table`): column group
``o`` (the ``2S`` columns of output ``o`` for ``dc``, ``S`` for ``dr`` and ``of``) holds a non-zero
cell at position ``t`` in rows ``R`` iff some weight ``W[r, o]``, ``r`` in ``R``, has a non-zero
level at ``t``. That is one scatter of the weights per row block and a small boolean product per
distinct value, never the cell matrix (VGG-16's 25088 x 16384 cells of fc6 are not built).
"""

from __future__ import annotations

import numpy as np

from cimc.target.geometry import physical_shape, tile_bounds
from cimc.target.mapping import level_table, weight_offset


def _group_nonzero(block: np.ndarray, levels_nz: np.ndarray, half: int) -> np.ndarray:
    """``[m, width]``: whether output ``o`` has a non-zero level at position ``t`` in ``block``."""
    n_values = levels_nz.shape[0]
    m = block.shape[1]
    if block.size == 0:
        return np.zeros((m, levels_nz.shape[1]), dtype=bool)
    present = np.zeros((n_values, m), dtype=bool)
    present[block.astype(np.int64) + half, np.arange(m)[None, :]] = True
    return (present.T.astype(np.int32) @ levels_nz.astype(np.int32)) > 0


def _row_parts(r0: int, r1: int, n: int, mapping: str) -> list[tuple[int, int, str]]:
    """Weight rows and the part of the level table (``plus``/``minus`` for ``dr``) that physical
    rows ``[r0, r1)`` hold."""
    if mapping != "dr":
        return [(r0, r1, "all")]
    parts = []
    if r0 < n:
        parts.append((r0, min(r1, n), "plus"))
    if r1 > n:
        parts.append((max(r0, n) - n, r1 - n, "minus"))
    return parts


def column_occupancy(W: np.ndarray, w_bits: int, cell_bits: int, mapping: str, n_slices: int,
                     tile_rows: int, signed: bool = True) -> np.ndarray:
    """``[H, row_tiles, phys_cols]`` bool: physical column ``k`` holds a non-zero cell among the
    rows of row tile ``rt`` of repeat ``h`` (``W [H, n, m]``, or ``[n, m]`` as ``H = 1``).

    The ``of`` reference column (level 1 in every row) always counts as occupied.
    ``signed=False``: unsigned cells (:func:`cimc.target.mapping.map_cells`).
    """
    W3 = np.asarray(W)
    W3 = W3[None] if W3.ndim == 2 else W3
    h_sz, n, m = W3.shape
    rows, cols = physical_shape(n, m, n_slices, mapping)
    table, _ = level_table(w_bits, cell_bits, mapping, n_slices, signed)
    nz = table != 0
    parts = {"all": nz, "plus": nz[:, :n_slices], "minus": nz[:, n_slices:]}
    half = -weight_offset(w_bits, signed)
    bounds = tile_bounds(rows, tile_rows)
    out = np.zeros((h_sz, len(bounds), cols), dtype=bool)
    for h in range(h_sz):
        for rt, (r0, r1) in enumerate(bounds):
            for lo, hi, part in _row_parts(r0, r1, n, mapping):
                for b0 in range(lo, hi, 4096):  # bounded temporaries
                    grp = _group_nonzero(W3[h, b0:min(hi, b0 + 4096)], parts[part], half)
                    width = grp.shape[1]
                    out[h, rt, : m * width] |= grp.reshape(-1)
            if mapping == "of":
                out[h, rt, cols - 1] = True
    return out


def kept_columns(occupancy: np.ndarray) -> np.ndarray:
    """The physical columns with a non-zero cell anywhere (at least one column is kept)."""
    keep = np.flatnonzero(occupancy.any(axis=(0, 1)))
    return keep if keep.size else np.zeros(1, dtype=np.int64)


def present_tiles(occupancy: np.ndarray, keep: np.ndarray, tile_cols: int) -> list[tuple[int, int, int]]:
    """``(h, rt, ct)`` of the tiles, over the kept columns, with a non-zero cell (at least one)."""
    occ = occupancy[:, :, keep]
    tiles = []
    for h in range(occ.shape[0]):
        for rt in range(occ.shape[1]):
            for ct, (c0, c1) in enumerate(tile_bounds(occ.shape[2], tile_cols)):
                if occ[h, rt, c0:c1].any():
                    tiles.append((h, rt, ct))
    return tiles or [(0, 0, 0)]
