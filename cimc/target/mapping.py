"""Weights onto cells, recombination, and the signed-input correction: one implementation, one format.

A layer computes ``Y = X @ W`` for ``W [n, m]`` (``H`` repeats: ``W [H, n, m]``) of ``w``-bit
signed integers and activations ``X`` of ``a`` bits, exactly:

* **Cells** (:func:`map_cells`): ``S`` slices of ``c`` bits per weight, levels in a physical
  matrix ``[rows, cols]`` (int8; int16 for 8-bit cells; :func:`cimc.target.geometry.physical_shape`):

  - ``dc``: column ``(o*S + j)*2 + p`` holds slice ``j`` of ``W+`` (``p = 0``) or ``W-`` (``p = 1``);
  - ``dr``: rows ``[0, n)`` hold the slices of ``W+``, rows ``[n, 2n)`` those of ``W-`` as negative
    levels (driven with the same inputs, inverted polarity); column ``o*S + j``;
  - ``of``: slices of ``W + 2^(w-1)`` in column ``o*S + j`` and a reference column ``m*S`` of
    level-1 cells.

  Any ``w``-bit value in ``[-2^(w-1), 2^(w-1) - 1]`` maps as long as its stored magnitude fits
  ``S`` slices (narrow slicing stores ``w - 1`` bits of narrow-range weights). **Unsigned
  cells** (``signed=False``: an unsigned operand stored at its own width, e.g. uint8 with a zero
  point) take ``[0, 2^w - 1]``: ``dc`` / ``dr`` leave the minus part zero, ``of`` stores the value
  itself (its reference column's coefficient is 0).
* **Recombination** (:func:`recomb_table`, :func:`recombine`): ``[cols, 2]`` rows
  ``(output, coefficient)``: physical column ``k`` adds ``coef * value`` to output ``output``
  (``-1``: to every output; the offset mapping's reference column, ``coef = -2^(w-1)``).
  ``dc``: ``+-2^(c*j)``; ``dr`` / ``of``: ``+2^(c*j)``.
* **Signed inputs** (:func:`activation_offset`, :func:`correction`): signed ``a``-bit inputs
  stream as ``x + 2^(a-1)`` (unsigned, :func:`encode_activations`); the per-output constant
  ``2^(a-1) * colsum(W)`` is subtracted after recombination.

So ``recombine(drive(xu) @ cells, recomb) - correction == X @ W`` with ``drive(xu) = [xu, xu]``
for ``dr`` and ``xu`` otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from cimc.errors import ExecutionError
from cimc.target.geometry import physical_shape, slices
from cimc.target.hw import MAPPINGS

_MODES = {"dc": 0, "dr": 1, "of": 2}


def cell_dtype(cell_bits: int) -> type:
    """int8 cells, int16 for 8-bit cells (levels up to 255)."""
    return np.int8 if cell_bits <= 7 else np.int16


# ---------------------------------------------------------------------------- signed inputs


def activation_offset(a_bits: int, signed: bool) -> int:
    """The offset added to activations before streaming: ``2^(a-1)`` if signed, else 0."""
    return (1 << (a_bits - 1)) if signed else 0


def correction(W: np.ndarray, a_bits: int, signed: bool, zero_point: int = 0) -> np.ndarray:
    """``(offset + zero_point) * colsum(W)`` over the input axis (``W [..., n, m]`` ->
    ``[..., m]``), int64: what ``(x + offset) @ W`` holds beyond ``(x - zero_point) @ W``
    (the streamed integers are ``x`` as stored; an input zero point is removed digitally)."""
    return (activation_offset(a_bits, signed) + zero_point) * np.asarray(W).sum(axis=-2, dtype=np.int64)


def encode_activations(X: np.ndarray, a_bits: int, signed: bool) -> np.ndarray:
    """``Xu = X + offset`` as int64, checked to lie in ``[0, 2^a - 1]``."""
    xu = np.asarray(X, dtype=np.int64) + activation_offset(a_bits, signed)
    if xu.size and (xu.min() < 0 or xu.max() >= (1 << a_bits)):
        kind = "signed" if signed else "unsigned"
        raise ExecutionError(f"activations do not fit {a_bits}-bit {kind} integers")
    return xu


# ---------------------------------------------------------------------------- recombination


def weight_offset(w_bits: int, signed: bool = True) -> int:
    """The first stored value: ``-2^(w-1)`` for signed cells, 0 for unsigned ones."""
    return -(1 << (w_bits - 1)) if signed else 0


def recomb_table(m: int, w_bits: int, cell_bits: int, mapping: str, n_slices: int,
                 signed: bool = True) -> np.ndarray:
    """``[cols, 2]`` int64 ``(output, coefficient)`` of every physical column (module docstring)."""
    shifts = np.int64(1) << (cell_bits * np.arange(n_slices, dtype=np.int64))
    if mapping == "dc":
        outs = np.repeat(np.arange(m, dtype=np.int64), n_slices * 2)
        coefs = np.tile(np.stack([shifts, -shifts], axis=1).reshape(-1), m)
        return np.stack([outs, coefs], axis=1)
    outs = np.repeat(np.arange(m, dtype=np.int64), n_slices)
    coefs = np.tile(shifts, m)
    if mapping == "of":
        outs = np.append(outs, -1)
        coefs = np.append(coefs, weight_offset(w_bits, signed))
    return np.stack([outs, coefs], axis=1)


def recombine(phys: np.ndarray, recomb: np.ndarray, m: int) -> np.ndarray:
    """Physical column sums ``phys [..., cols]`` to outputs ``[..., m]``, exact in int64."""
    outs, coefs = recomb[:, 0], recomb[:, 1]
    scaled = np.asarray(phys, dtype=np.int64) * coefs
    y = np.zeros((*scaled.shape[:-1], m), dtype=np.int64)
    every = outs < 0
    if every.any():
        y += scaled[..., every].sum(axis=-1, keepdims=True)
    cols = np.nonzero(~every)[0]
    order = cols[np.argsort(outs[cols], kind="stable")]
    sorted_outs = outs[order]
    if order.size:
        starts = np.nonzero(np.r_[True, sorted_outs[1:] != sorted_outs[:-1]])[0]
        y[..., sorted_outs[starts]] += np.add.reduceat(scaled[..., order], starts, axis=-1)
    return y


# ---------------------------------------------------------------------------- cells


def level_table(w_bits: int, cell_bits: int, mapping: str, n_slices: int,
                signed: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Cell levels of every ``w_bits`` value: ``(table [2^w, width] int16, bad [2^w])``.

    Row ``v - weight_offset`` (``v + 2^(w-1)`` signed, ``v`` unsigned) holds the levels value
    ``v`` writes: ``dc`` ``[+s0, -s0, +s1, -s1, ...]``,
    ``dr`` the ``S`` plus-row levels then the ``S`` (negated) minus-row levels, ``of`` the ``S``
    slices of ``v - weight_offset``. ``bad[v]`` is the stored magnitude that does not fit (0: fits).
    """
    lo = weight_offset(w_bits, signed)
    values = np.arange(lo, lo + (1 << w_bits), dtype=np.int64)
    mask = (1 << cell_bits) - 1
    cap = 1 << (cell_bits * n_slices)
    shifts = cell_bits * np.arange(n_slices, dtype=np.int64)
    if mapping == "of":
        mags = [values - lo]
    else:
        mags = [np.maximum(values, 0), np.maximum(-values, 0)]
    lv = [(mg[:, None] >> shifts[None, :]) & mask for mg in mags]  # [V, S] each
    if mapping == "dc":
        table = np.stack(lv, axis=-1).reshape(len(values), 2 * n_slices)
    elif mapping == "dr":
        table = np.concatenate([lv[0], -lv[1]], axis=1)
    else:
        table = lv[0]
    top = np.max(np.stack(mags), axis=0)
    bad = np.where(top >= cap, top, 0)
    return np.ascontiguousarray(table, dtype=np.int16), bad


@numba.njit(cache=True, nogil=True)
def _map_cells_kernel(W, half, table, bad, mode, n_slices, out):  # pragma: no cover - numba
    """Write the levels of ``W [n, m]`` into ``out [rows, cols]`` (a table look-up per weight).

    Returns ``(status, value)``: 0 = ok; 1 = ``value`` is outside the signed range; 2 = the stored
    magnitude ``value`` does not fit the cells.
    """
    n, m = W.shape
    nv = table.shape[0]
    for k in range(n):
        for o in range(m):
            v = np.int64(W[k, o]) + half
            if v < 0 or v >= nv:
                return 1, v - half
            if bad[v] != 0:
                return 2, bad[v]
            if mode == 0:
                base = o * n_slices * 2
                for j in range(2 * n_slices):
                    out[k, base + j] = table[v, j]
            elif mode == 1:
                base = o * n_slices
                for j in range(n_slices):
                    out[k, base + j] = table[v, j]
                    out[n + k, base + j] = table[v, n_slices + j]
            else:
                base = o * n_slices
                for j in range(n_slices):
                    out[k, base + j] = table[v, j]
        if mode == 2:
            out[k, m * n_slices] = 1
    return 0, np.int64(0)


def _mapping_error(W: np.ndarray, w_bits: int, cell_bits: int, mapping: str, n_slices: int,
                   where: str, signed: bool) -> ExecutionError:
    lo = weight_offset(w_bits, signed)
    if int(W.min()) < lo or int(W.max()) > lo + (1 << w_bits) - 1:  # range before capacity
        kind = "signed" if signed else "unsigned"
        return ExecutionError(f"{where}: values in [{W.min()}, {W.max()}] exceed {w_bits}-bit {kind} integers")
    W64 = W.astype(np.int64)
    top = int((W64 - lo).max()) if mapping == "of" else int(np.abs(W64).max())
    return ExecutionError(
        f"{where}: {n_slices} slice(s) of {cell_bits}-bit cells cannot hold the stored values (up to {top})"
    )


def map_cells(
    W: np.ndarray, w_bits: int, cell_bits: int, mapping: str, n_slices: int, *, where: str = "layer",
    signed: bool = True,
) -> np.ndarray:
    """The cell levels of ``W [H, n, m]`` (or ``[n, m]``): ``[H, rows, cols]`` (or ``[rows, cols]``);
    ``signed=False``: unsigned cells (values in ``[0, 2^w - 1]``).

    One numba pass per repeat writes straight into the result: no temporaries, so VGG-size layers
    map at memory speed with the cells as the only allocation.
    """
    if mapping not in _MODES:
        raise ExecutionError(f"{where}: unknown mapping '{mapping}' (known: {', '.join(MAPPINGS)})")
    if not 1 <= w_bits <= 16:
        raise ExecutionError(f"{where}: cannot map {w_bits}-bit values onto cells (1..16 bits supported)")
    W = np.asarray(W)
    flat = W.ndim == 2
    W3 = W[None] if flat else W
    if W3.dtype.kind not in "iu":
        W3 = W3.astype(np.int64)
    h, n, m = W3.shape
    rows, cols = physical_shape(n, m, n_slices, mapping)
    out = np.empty((h, rows, cols), dtype=cell_dtype(cell_bits))
    table, bad = level_table(w_bits, cell_bits, mapping, n_slices, signed)
    table = table.astype(out.dtype)
    for hh in range(h):
        status, _ = _map_cells_kernel(W3[hh], -weight_offset(w_bits, signed), table, bad, _MODES[mapping],
                                      n_slices, out[hh])
        if status:
            raise _mapping_error(W3[hh], w_bits, cell_bits, mapping, n_slices, where, signed)
    return out[0] if flat else out


@dataclass(frozen=True)
class MappedWeights:
    """A static ``[n, m]`` weight as cells plus its recombination table (the one format)."""

    g: np.ndarray
    """Cell levels ``[rows, cols]`` (:func:`map_cells`)."""
    recomb: np.ndarray
    """``[cols, 2]`` (output, coefficient) (:func:`recomb_table`)."""
    mapping: str
    w_bits: int
    cell_bits: int
    slices: int
    n: int
    m: int

    @property
    def dual(self) -> bool:
        """``dr`` drives its plus and minus rows with the same inputs: ``[x, x]``."""
        return self.mapping == "dr"

    @property
    def phys_rows(self) -> int:
        return int(self.g.shape[0])

    @property
    def phys_cols(self) -> int:
        return int(self.g.shape[1])

    def drive_rows(self, xu: np.ndarray) -> np.ndarray:
        """The physical row inputs for activations ``xu [R, n]``."""
        return np.concatenate([xu, xu], axis=1) if self.dual else xu


def map_weights(W: np.ndarray, w_bits: int, cell_bits: int, mapping: str, *,
                narrow: bool = False) -> MappedWeights:
    """Check ``W [n, m]`` (integers in the narrow ``w``-bit range) and map it (:func:`map_cells`)."""
    if mapping not in MAPPINGS:
        raise ExecutionError(f"unknown mapping '{mapping}' (known: {', '.join(MAPPINGS)})")
    if not 1 <= cell_bits <= 8:
        raise ExecutionError(f"cell bits {cell_bits} not in 1..8")
    W = np.asarray(W)
    if W.ndim != 2:
        raise ExecutionError(f"weights must be a 2-D [n, m] matrix, got shape {W.shape}")
    if W.dtype.kind not in "iu" and not np.all(np.equal(np.mod(W, 1), 0)):
        raise ExecutionError("weights must be integers")
    W = W.astype(np.int64)
    bound = (1 << (w_bits - 1)) - 1
    if W.size and np.abs(W).max() > bound:
        raise ExecutionError(
            f"weights exceed the {w_bits}-bit narrow range |w| <= {bound} (max |w| = {np.abs(W).max()})"
        )
    s = slices(w_bits, cell_bits, narrow=narrow)
    g = map_cells(W, w_bits, cell_bits, mapping, s)
    n, m = W.shape
    return MappedWeights(g, recomb_table(m, w_bits, cell_bits, mapping, s), mapping, w_bits,
                         cell_bits, s, n, m)
