"""Bit-serial crossbar kernels: the exact integer semantics of the CIM target.

A crossbar layer computes ``Y = X @ W`` (int64) for activations ``X [R, n]`` of ``a`` bits
(signed two's complement or unsigned) and weights ``W [n, m]`` of ``w`` bits (signed, narrow
range ``|w| <= 2^(w-1) - 1``). The steps, all in integers:

1. **Signed activations, offset encoding.** ``Xu = X + 2^(a-1)`` is unsigned (``a`` bits); the
   result is corrected by subtracting ``2^(a-1) * colsum(W)``, a per-output constant known at
   compile time (:func:`activation_offset`, :func:`activation_correction`). Unsigned activations
   stream as they are.
2. **Input bit slicing.** ``Xu`` is streamed in ``ceil(a/d)`` chunks of ``d`` DAC bits from the
   LSB: chunk ``i = (Xu >> (i*d)) & (2^d - 1)``, weight ``2^(i*d)``.
3. **Weight slicing and mapping** (:func:`map_weights`): ``S = ceil(w/c)`` slices of ``c`` bits
   on physical columns (``dc``: a + and a - column per slice; ``dr``: + rows and - rows;
   ``of``: the offset value ``W + 2^(w-1)`` plus one reference column). A recombination matrix
   ``recomb [phys_cols, m]`` holds the digital shift weights, so that
   ``drive(Xu) @ g @ recomb == Xu @ W``.
4. **Tiling** (:func:`bitserial_layer`): the physical matrix is cut into tiles of
   ``hw.rows x hw.cols``; every tile is programmed once and driven with every chunk of every
   vector. Each cycle's column values go through the ADC (clip to :meth:`Hardware.adc_range`,
   saturations counted) and are shift-added; row tiles' partial sums are added digitally after
   their own conversions. Finally ``y = y_phys @ recomb - correction``.

The hot path does each tile's plane products as ONE float32 BLAS matmul (all chunks of all
vectors stacked); that is exact because every partial sum is an integer whose magnitude is at
most ``rows_t * (2^d - 1) * (2^c - 1) < 2^24`` (checked; float64 is used past that bound). The
clip, saturation count and shift-add run in a serial numba kernel. :func:`bitserial_tile_reference`
is the same tile computed with integer loops only, for tests.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numba
import numpy as np

from cimc.errors import ExecutionError
from cimc.hw import MAPPINGS, Hardware, column_value_max

_F32_EXACT = 1 << 24
_F64_EXACT = 1 << 53
_PLANE_BYTES = 48 << 20  # bound on the stacked-plane / partial buffers per R block


# ---------------------------------------------------------------------------- counters


@dataclass
class Counters:
    """Hardware activity counted while running (mutable, addable)."""

    writes: int = 0
    """Tiles programmed."""
    cells_written: int = 0
    """Cells programmed: ``rows_used * cols_used`` per tile."""
    executes: int = 0
    """Crossbar cycles: ``R * chunks`` per tile."""
    adc_conversions: int = 0
    """Column conversions: per cycle, the tile's columns in use."""
    adc_saturations: int = 0
    """Conversions whose value the ADC clipped."""
    dac_activations: int = 0
    """Row drives: per cycle, the tile's rows in use."""

    def __add__(self, other: Counters) -> Counters:
        return Counters(**{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)})

    def __iadd__(self, other: Counters) -> Counters:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))
        return self

    def as_dict(self) -> dict[str, int]:
        """The counts as a plain dict."""
        return {f.name: int(getattr(self, f.name)) for f in fields(self)}


# ---------------------------------------------------------------------------- activations


def activation_offset(a_bits: int, signed: bool) -> int:
    """The offset added to activations before streaming: ``2^(a-1)`` if signed, else 0."""
    return (1 << (a_bits - 1)) if signed else 0


def activation_correction(W: np.ndarray, a_bits: int, signed: bool) -> np.ndarray:
    """The per-output constant to subtract after the crossbar: ``offset * colsum(W)`` (int64)."""
    return activation_offset(a_bits, signed) * np.asarray(W, dtype=np.int64).sum(axis=0)


def encode_activations(X: np.ndarray, a_bits: int, signed: bool) -> np.ndarray:
    """``Xu = X + offset`` as int64, checked to lie in ``[0, 2^a - 1]``."""
    xu = np.asarray(X, dtype=np.int64) + activation_offset(a_bits, signed)
    if xu.size and (xu.min() < 0 or xu.max() >= (1 << a_bits)):
        kind = "signed" if signed else "unsigned"
        raise ExecutionError(f"activations do not fit {a_bits}-bit {kind} integers")
    return xu


# ---------------------------------------------------------------------------- weight mapping


@dataclass(frozen=True)
class MappedWeights:
    """A layer's weights as programmed cell levels plus their digital recombination.

    ``g [phys_rows, phys_cols]``: signed cell levels (int8; int16 for 8-bit cells). ``dr`` minus
    rows hold negated levels (driven with inverted polarity). ``recomb [phys_cols, m]`` (int64):
    ``y = y_phys @ recomb``. ``drive``: ``"single"`` (rows are the inputs) or ``"dual"`` (``dr``:
    rows are ``[x, x]``).
    """

    g: np.ndarray
    recomb: np.ndarray
    drive: str
    mapping: str
    w_bits: int
    cell_bits: int
    n: int
    m: int

    @property
    def slices(self) -> int:
        """``S = ceil(w / c)``."""
        return -(-self.w_bits // self.cell_bits)

    @property
    def phys_rows(self) -> int:
        return int(self.g.shape[0])

    @property
    def phys_cols(self) -> int:
        return int(self.g.shape[1])

    def drive_rows(self, xu: np.ndarray) -> np.ndarray:
        """The physical row inputs for activations ``xu [R, n]``."""
        return np.concatenate([xu, xu], axis=1) if self.drive == "dual" else xu


def _check_weights(W: np.ndarray, w_bits: int, cell_bits: int, mapping: str) -> np.ndarray:
    if mapping not in MAPPINGS:
        raise ExecutionError(f"unknown mapping '{mapping}' (known: {', '.join(MAPPINGS)})")
    if not 1 <= cell_bits <= 8:
        raise ExecutionError(f"cell bits {cell_bits} not in 1..8")
    if not 1 <= w_bits <= 32:
        raise ExecutionError(f"weight bits {w_bits} not in 1..32")
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
    return W


def _slice_planes(values: np.ndarray, s: int, cell_bits: int) -> np.ndarray:
    """``[S, n, m]`` cell levels: slice ``j = (values >> (c*j)) & (2^c - 1)``."""
    mask = (1 << cell_bits) - 1
    return np.stack([(values >> (cell_bits * j)) & mask for j in range(s)])


def map_weights(W: np.ndarray, w_bits: int, cell_bits: int, mapping: str) -> MappedWeights:
    """Slice and map signed weights ``W [n, m]`` onto physical crossbar columns/rows.

    * ``dc``: column ``(o*S + j)*2 + p`` holds slice ``j`` of ``W+`` (``p=0``) or ``W-`` (``p=1``),
      ``recomb = +-2^(c*j)``; ``phys_rows = n``.
    * ``dr``: rows ``[0, n)`` hold slices of ``W+``, rows ``[n, 2n)`` the slices of ``W-`` as
      negative levels; column ``o*S + j``, ``recomb = +2^(c*j)``.
    * ``of``: slices of ``U = W + 2^(w-1)`` in column ``o*S + j`` (``recomb = +2^(c*j)``) and a
      reference column ``m*S`` of level-1 cells with ``recomb = -2^(w-1)`` for every output.
    """
    W = _check_weights(W, w_bits, cell_bits, mapping)
    n, m = W.shape
    s = -(-w_bits // cell_bits)
    gdtype = np.int8 if cell_bits <= 7 else np.int16
    shifts = np.int64(1) << (cell_bits * np.arange(s, dtype=np.int64))  # [S]
    outs = np.arange(m)
    if mapping == "dc":
        planes = np.stack(
            [_slice_planes(np.maximum(W, 0), s, cell_bits), _slice_planes(np.maximum(-W, 0), s, cell_bits)]
        )  # [2, S, n, m]
        g = planes.transpose(2, 3, 1, 0).reshape(n, m * s * 2)  # col (o*S + j)*2 + p
        recomb = np.zeros((m * s * 2, m), dtype=np.int64)
        for j in range(s):
            recomb[(outs * s + j) * 2, outs] = shifts[j]
            recomb[(outs * s + j) * 2 + 1, outs] = -shifts[j]
        return MappedWeights(g.astype(gdtype), recomb, "single", mapping, w_bits, cell_bits, n, m)
    recomb = np.zeros((m * s + (mapping == "of"), m), dtype=np.int64)
    for j in range(s):
        recomb[outs * s + j, outs] = shifts[j]
    if mapping == "dr":
        plus = _slice_planes(np.maximum(W, 0), s, cell_bits).transpose(1, 2, 0).reshape(n, m * s)
        minus = _slice_planes(np.maximum(-W, 0), s, cell_bits).transpose(1, 2, 0).reshape(n, m * s)
        g = np.concatenate([plus, -minus], axis=0)
        return MappedWeights(g.astype(gdtype), recomb, "dual", mapping, w_bits, cell_bits, n, m)
    offset = 1 << (w_bits - 1)
    levels = _slice_planes(W + offset, s, cell_bits).transpose(1, 2, 0).reshape(n, m * s)
    g = np.concatenate([levels, np.ones((n, 1), dtype=np.int64)], axis=1)
    recomb[m * s, :] = -offset
    return MappedWeights(g.astype(gdtype), recomb, "single", mapping, w_bits, cell_bits, n, m)


# ---------------------------------------------------------------------------- numba kernels


@numba.njit(cache=True, nogil=True)
def _build_planes(xu, src, r0, r1, n_chunks, dac_bits, out):  # pragma: no cover - numba
    """``out[i*R + r, k] = chunk i of xu[r, src[r0 + k]]`` for the physical rows ``[r0, r1)``."""
    n_vec = xu.shape[0]
    mask = (1 << dac_bits) - 1
    width = r1 - r0
    row_in = np.empty(width, dtype=np.int64)
    for r in range(n_vec):
        for k in range(width):
            row_in[k] = xu[r, src[r0 + k]]
        for i in range(n_chunks):
            shift = i * dac_bits
            row = i * n_vec + r
            for k in range(width):
                out[row, k] = (row_in[k] >> shift) & mask


@numba.njit(cache=True, nogil=True)
def _adc_shift_add(partial, n_vec, n_chunks, dac_bits, lo, hi, y_phys, r_off, c_off):  # pragma: no cover
    """Clip every conversion to ``[lo, hi]``, count clips, shift-add chunk ``i`` by ``i*d``.

    ``partial [n_chunks*n_vec, cols_t]`` (float, integral values) -> ``y_phys[r_off + r, c_off + k]``.
    Returns the number of clipped conversions.
    """
    cols_t = partial.shape[1]
    sat = 0
    acc = np.empty(cols_t, dtype=np.int64)
    for r in range(n_vec):
        acc[:] = 0
        for i in range(n_chunks):
            shift = i * dac_bits
            row = i * n_vec + r
            for k in range(cols_t):
                v = np.int64(partial[row, k])
                if v > hi:
                    v = hi
                    sat += 1
                elif v < lo:
                    v = lo
                    sat += 1
                acc[k] += v << shift
        for k in range(cols_t):
            y_phys[r_off + r, c_off + k] += acc[k]
    return sat


@numba.njit(cache=True, nogil=True)
def _recombine(y_phys, cols, outs, coefs, m):  # pragma: no cover - numba
    """``y = y_phys @ recomb`` with ``recomb`` given as its nonzeros ``(cols, outs, coefs)``."""
    n_vec = y_phys.shape[0]
    y = np.zeros((n_vec, m), dtype=np.int64)
    for r in range(n_vec):
        for t in range(cols.shape[0]):
            y[r, outs[t]] += y_phys[r, cols[t]] * coefs[t]
    return y


@numba.njit(cache=True, nogil=True)
def bitserial_tile_reference(xu, g_tile, a_bits, dac_bits, lo, hi):  # pragma: no cover - numba
    """One tile, integer loops only (no BLAS): returns ``(y_phys_tile int64 [R, cols_t], saturations)``.

    ``xu [R, rows_t]`` are the tile's (already driven) unsigned row inputs, ``g_tile`` its levels.
    """
    n_vec, rows_t = xu.shape
    cols_t = g_tile.shape[1]
    n_chunks = (a_bits + dac_bits - 1) // dac_bits
    mask = (1 << dac_bits) - 1
    out = np.zeros((n_vec, cols_t), dtype=np.int64)
    ps = np.zeros(cols_t, dtype=np.int64)
    sat = 0
    for r in range(n_vec):
        for i in range(n_chunks):
            ps[:] = 0
            for k in range(rows_t):
                bit = (np.int64(xu[r, k]) >> (i * dac_bits)) & mask
                if bit != 0:
                    for c in range(cols_t):
                        ps[c] += bit * np.int64(g_tile[k, c])
            for c in range(cols_t):
                v = ps[c]
                if v > hi:
                    v = hi
                    sat += 1
                elif v < lo:
                    v = lo
                    sat += 1
                out[r, c] += v << (i * dac_bits)
    return out, sat


# ---------------------------------------------------------------------------- layer drivers


def _check_layer(xu: np.ndarray, mapped: MappedWeights, a_bits: int, hw: Hardware) -> np.ndarray:
    if mapped.cell_bits != hw.cell_bits or mapped.mapping != hw.mapping:
        raise ExecutionError(
            f"weights mapped for cell_bits={mapped.cell_bits}, mapping={mapped.mapping} but the "
            f"hardware has cell_bits={hw.cell_bits}, mapping={hw.mapping}"
        )
    xu = np.asarray(xu)
    if xu.ndim != 2 or xu.shape[1] != mapped.n:
        raise ExecutionError(f"activations of shape {xu.shape} do not match a layer with n = {mapped.n} inputs")
    if not 1 <= a_bits <= 32:
        raise ExecutionError(f"activation bits {a_bits} not in 1..32")
    xu = np.ascontiguousarray(xu, dtype=np.int64)
    if xu.size and (xu.min() < 0 or xu.max() >= (1 << a_bits)):
        raise ExecutionError(f"streamed activations must be unsigned {a_bits}-bit integers")
    return xu


def _tile_bounds(total: int, size: int) -> list[tuple[int, int]]:
    return [(lo, min(lo + size, total)) for lo in range(0, total, size)]


def count_layer(n_vec: int, mapped: MappedWeights, a_bits: int, hw: Hardware) -> Counters:
    """The counters of running ``n_vec`` vectors through a mapped layer (saturations excluded)."""
    chunks = -(-a_bits // hw.dac_bits)
    c = Counters()
    for r0, r1 in _tile_bounds(mapped.phys_rows, hw.rows):
        for c0, c1 in _tile_bounds(mapped.phys_cols, hw.cols):
            rows_used, cols_used = r1 - r0, c1 - c0
            c.writes += 1
            c.cells_written += rows_used * cols_used
            c.executes += n_vec * chunks
            c.adc_conversions += n_vec * chunks * cols_used
            c.dac_activations += n_vec * chunks * rows_used
    return c


def _plane_dtype(rows_t: int, hw: Hardware) -> type:
    bound = column_value_max(rows_t, hw.cell_bits, hw.dac_bits)
    if bound < _F32_EXACT:
        return np.float32
    assert bound < _F64_EXACT, "partial sums exceed 2^53: no exact float BLAS"
    return np.float64


def _row_sources(mapped: MappedWeights) -> np.ndarray:
    src = np.arange(mapped.n, dtype=np.int64)
    return np.concatenate([src, src]) if mapped.drive == "dual" else src


def _recomb_nonzeros(recomb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    cols, outs = np.nonzero(recomb)
    return cols.astype(np.int64), outs.astype(np.int64), recomb[cols, outs].astype(np.int64)


def bitserial_layer(
    xu: np.ndarray,
    mapped: MappedWeights,
    a_bits: int,
    hw: Hardware,
    *,
    counters: Counters | None = None,
    correction: np.ndarray | None = None,
    reference: bool = False,
) -> np.ndarray:
    """Run unsigned activations ``xu [R, n]`` bit-serially through a mapped layer: ``y int64 [R, m]``.

    Every tile of ``hw.rows x hw.cols`` is programmed once and driven with all ``ceil(a/d)``
    chunks of all ``R`` vectors; each conversion is clipped to ``hw.adc_range(rows_used)``.
    ``correction`` (``[m]``, see :func:`activation_correction`) is subtracted at the end.
    ``counters`` (if given) is incremented. ``reference=True`` uses the integer-loop tile kernel
    instead of BLAS (slow; for tests).
    """
    xu = _check_layer(xu, mapped, a_bits, hw)
    n_vec = xu.shape[0]
    chunks = -(-a_bits // hw.dac_bits)
    row_tiles = _tile_bounds(mapped.phys_rows, hw.rows)
    col_tiles = _tile_bounds(mapped.phys_cols, hw.cols)
    y_phys = np.zeros((n_vec, mapped.phys_cols), dtype=np.int64)
    src = _row_sources(mapped)
    saturations = 0
    if reference:
        driven = mapped.drive_rows(xu)
        for r0, r1 in row_tiles:
            lo, hi = hw.adc_range(r1 - r0)
            for c0, c1 in col_tiles:
                g_tile = np.ascontiguousarray(mapped.g[r0:r1, c0:c1])
                part, sat = bitserial_tile_reference(
                    np.ascontiguousarray(driven[:, r0:r1]), g_tile, a_bits, hw.dac_bits, lo, hi
                )
                y_phys[:, c0:c1] += part
                saturations += sat
    else:
        rows_max = max(r1 - r0 for r0, r1 in row_tiles)
        cols_max = max(c1 - c0 for c0, c1 in col_tiles)
        dtype = _plane_dtype(rows_max, hw)
        itemsize = np.dtype(dtype).itemsize
        block = max(1, _PLANE_BYTES // (chunks * max(rows_max, cols_max) * itemsize))
        # program every tile once: float copies of its levels
        g_tiles = {
            (r0, c0): np.ascontiguousarray(mapped.g[r0:r1, c0:c1], dtype=dtype)
            for r0, r1 in row_tiles
            for c0, c1 in col_tiles
        }
        for b0 in range(0, n_vec, block):
            b1 = min(b0 + block, n_vec)
            nb = b1 - b0
            xb = xu[b0:b1]
            planes_buf = np.empty(chunks * nb * rows_max, dtype=dtype)
            part_buf = np.empty(chunks * nb * cols_max, dtype=dtype)
            for r0, r1 in row_tiles:
                lo, hi = hw.adc_range(r1 - r0)
                planes = planes_buf[: chunks * nb * (r1 - r0)].reshape(chunks * nb, r1 - r0)
                _build_planes(xb, src, r0, r1, chunks, hw.dac_bits, planes)
                for c0, c1 in col_tiles:
                    part = part_buf[: chunks * nb * (c1 - c0)].reshape(chunks * nb, c1 - c0)
                    np.matmul(planes, g_tiles[(r0, c0)], out=part)
                    saturations += _adc_shift_add(part, nb, chunks, hw.dac_bits, lo, hi, y_phys, b0, c0)
    y = _recombine(y_phys, *_recomb_nonzeros(mapped.recomb), mapped.m)
    if correction is not None:
        y -= np.asarray(correction, dtype=np.int64)
    if counters is not None:
        counters += count_layer(n_vec, mapped, a_bits, hw)
        counters.adc_saturations += int(saturations)
    return y


def exact_layer(x: np.ndarray, W: np.ndarray) -> np.ndarray:
    """``x @ W`` exactly in one step (int64): float64 BLAS when provably exact, else integers."""
    x = np.asarray(x, dtype=np.int64)
    W = np.asarray(W, dtype=np.int64)
    if x.ndim != 2 or W.ndim != 2 or x.shape[1] != W.shape[0]:
        raise ExecutionError(f"cannot multiply shapes {x.shape} and {W.shape}")
    if x.size == 0 or W.size == 0:
        return np.zeros((x.shape[0], W.shape[1]), dtype=np.int64)
    bound = int(x.shape[1]) * int(np.abs(x).max()) * int(np.abs(W).max())
    if bound < _F64_EXACT:
        return np.rint(x.astype(np.float64) @ W.astype(np.float64)).astype(np.int64)
    if bound >= 1 << 63:
        raise ExecutionError("x @ W can overflow int64")
    return x @ W


def crossbar_layer(
    X: np.ndarray,
    W: np.ndarray,
    w_bits: int,
    a_bits: int,
    signed: bool,
    hw: Hardware,
    *,
    counters: Counters | None = None,
) -> np.ndarray:
    """The whole layer: offset-encode ``X``, map ``W``, run bit-serially, correct. ``int64 [R, m]``."""
    mapped = map_weights(W, w_bits, hw.cell_bits, hw.mapping)
    xu = encode_activations(X, a_bits, signed)
    corr = activation_correction(W, a_bits, signed)
    return bitserial_layer(xu, mapped, a_bits, hw, counters=counters, correction=corr)


# ---------------------------------------------------------------------------- compile-time cell mapping

_MAP_MODES = {"dc": 0, "dr": 1, "of": 2}


def _level_table(w_bits: int, cell_bits: int, mapping: str, slices: int) -> tuple[np.ndarray, np.ndarray]:
    """Cell levels of every ``w_bits`` signed value: ``(table [2^w, width] int16, bad [2^w])``.

    Row ``v + 2^(w-1)`` holds the levels value ``v`` writes: ``dc`` ``[+s0, -s0, +s1, -s1, ...]``
    (``width = 2S``), ``dr`` the ``S`` plus-row levels then the ``S`` (negated) minus-row levels,
    ``of`` the ``S`` slices of ``v + 2^(w-1)``. ``bad[v]`` is the magnitude that does not fit
    ``S`` cells of ``c`` bits (0 if it fits).
    """
    values = np.arange(-(1 << (w_bits - 1)), 1 << (w_bits - 1), dtype=np.int64)
    mask = (1 << cell_bits) - 1
    cap = 1 << (cell_bits * slices)
    shifts = cell_bits * np.arange(slices, dtype=np.int64)
    if mapping == "of":
        mags = [values + (1 << (w_bits - 1))]
    else:
        mags = [np.maximum(values, 0), np.maximum(-values, 0)]
    lv = [(mg[:, None] >> shifts[None, :]) & mask for mg in mags]  # [V, S] each
    if mapping == "dc":
        table = np.stack(lv, axis=-1).reshape(len(values), 2 * slices)
    elif mapping == "dr":
        table = np.concatenate([lv[0], -lv[1]], axis=1)
    else:
        table = lv[0]
    top = np.max(np.stack(mags), axis=0)
    bad = np.where(top >= cap, top, 0)
    return np.ascontiguousarray(table, dtype=np.int16), bad


@numba.njit(cache=True, nogil=True)
def _map_cells_kernel(W, half, table, bad, mode, slices, out):  # pragma: no cover - numba
    """Write the cell levels of ``W [n, m]`` into ``out [rows, cols]`` (layout of
    :func:`cimc.exec.xbar_exec.map_cells`) in one pass: a table look-up per weight, no
    temporaries. Returns ``(status, value)``: 0 = ok; 1 = ``value`` is outside the signed range;
    2 = the stored magnitude ``value`` does not fit the cells.
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
                base = o * slices * 2
                for j in range(2 * slices):
                    out[k, base + j] = table[v, j]
            elif mode == 1:
                base = o * slices
                for j in range(slices):
                    out[k, base + j] = table[v, j]
                    out[n + k, base + j] = table[v, slices + j]
            else:
                base = o * slices
                for j in range(slices):
                    out[k, base + j] = table[v, j]
        if mode == 2:
            out[k, m * slices] = 1
    return 0, np.int64(0)


def map_cells_into(W: np.ndarray, w_bits: int, cell_bits: int, mapping: str, slices: int,
                   out: np.ndarray) -> tuple[int, int]:
    """Run :func:`_map_cells_kernel` (``W`` any integer dtype, any strides); ``(status, value)``."""
    if mapping not in _MAP_MODES:
        raise ExecutionError(f"unknown mapping '{mapping}'")
    if not 1 <= w_bits <= 16:
        raise ExecutionError(f"cannot map {w_bits}-bit values onto cells (1..16 bits supported)")
    if W.dtype.kind not in "iu":
        W = W.astype(np.int64)
    table, bad = _level_table(w_bits, cell_bits, mapping, slices)
    table = table.astype(out.dtype)
    status, value = _map_cells_kernel(W, 1 << (w_bits - 1), table, bad, _MAP_MODES[mapping], slices, out)
    return int(status), int(value)




# ---------------------------------------------------------------------------- im2col


def im2col_grouped(
    x: np.ndarray,
    groups: int,
    kernel: tuple[int, int],
    strides: tuple[int, int],
    pads: tuple[int, int, int, int],
    dilations: tuple[int, int],
    dtype: np.dtype | type | None = None,
) -> np.ndarray:
    """Zero-padded grouped im2col of NCHW ``x``: ``[B, groups, Ho*Wo, Cg*kh*kw]``, equal to
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
        xp = np.zeros((n, groups, cg, h + pt + pb, w + pl + pr), dtype=want)
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
