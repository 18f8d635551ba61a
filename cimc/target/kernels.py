"""The bit-serial crossbar kernels: programming a tile, driving planes, one tile's cycles.

Every path that executes crossbar cycles (the interpreter's fused chunk loop, its op-by-op
``xbar.cycle``, and the layer driver :func:`bitserial_layer`) goes through these functions:

* :func:`program_tile`: a tile's cell levels as the float matrix the products use (one write);
* :func:`build_planes`: the DAC chunks of a block of vectors on a tile's rows, stacked
  ``[chunks * R, rows]`` (chunk ``i`` of ``xu`` is ``(xu >> (i*d)) & (2^d - 1)``);
* :func:`tile_cycles`: every cycle of one programmed tile for a block of vectors: the crossbar
  product of all planes in ONE BLAS call, then per (chunk, vector, column) the ADC (clip to
  ``[lo, hi]``, saturations counted) and the shift-add of chunk ``i`` by ``i * d``;
* :func:`adc_convert`: the same ADC for one cycle's column values.

**Device models** (:class:`cimc.target.noise.Device`: programming noise, stuck cells, read noise,
ADC offset and gain) enter at two places only: :func:`program_tile` returns what the crossbar
holds (the device's noisy, stuck conductances), and :func:`tile_cycles` / :func:`adc_convert`
convert column values with the device's read noise and ADC errors (:func:`_adc_shift_add_noisy`).
Without a device (the default) both run exactly as they did, bit for bit.

The products are exact in float32 because every partial sum is an integer of magnitude at most
``rows * (2^d - 1) * (2^c - 1) < 2^24`` (:func:`plane_dtype` picks float64 past that bound).
:func:`bitserial_tile_reference` is one tile computed with integer loops only, for tests.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numba
import numpy as np

from cimc.errors import ExecutionError
from cimc.target.counters import Counters
from cimc.target.geometry import chunks, tile_bounds
from cimc.target.hw import Hardware, column_value_max
from cimc.target.mapping import MappedWeights, encode_activations, map_weights, recombine
from cimc.target.mapping import correction as input_correction

if TYPE_CHECKING:
    from cimc.target.noise import Device

F32_EXACT = 1 << 24
_F64_EXACT = 1 << 53
PLANE_BYTES = 48 << 20
"""Bound on the stacked-plane / partial-sum buffers of one block of vectors."""


def plane_dtype(rows: int, cell_bits: int, dac_bits: int) -> type:
    """float32 when every partial sum of a tile with ``rows`` rows is exact in it, else float64."""
    bound = column_value_max(rows, cell_bits, dac_bits)
    if bound < F32_EXACT:
        return np.float32
    assert bound < _F64_EXACT, "partial sums exceed 2^53: no exact float BLAS"
    return np.float64


def vector_block(n_chunks: int, rows: int, cols: int, itemsize: int) -> int:
    """Vectors per block so that the stacked planes and partial sums stay within PLANE_BYTES."""
    return max(1, PLANE_BYTES // (n_chunks * max(rows, cols) * itemsize))


# ---------------------------------------------------------------------------- numba kernels


@numba.njit(cache=True, nogil=True)
def build_planes(xu, src, r0, r1, n_chunks, dac_bits, out):  # pragma: no cover - numba
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


_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


@numba.njit(cache=True, nogil=True)
def _adc_shift_add_noisy(partial, row_std, row_active, gain, offset, table, seed,  # pragma: no cover
                         n_vec, n_chunks, dac_bits, lo, hi, y_phys, r_off, c_off):
    """:func:`_adc_shift_add` on a non-ideal device: each conversion of column ``k`` in row
    ``row`` of ``partial`` is ``clip(rint(gain[k] * (v + row_std[row] * z) + offset[k]))`` with
    ``z`` a standard normal from ``table`` (12-bit indexes, five per 64-bit word of a SplitMix64
    stream seeded with ``seed``). An empty ``row_std`` (no read noise) draws nothing. Rows with
    ``row_active[row] == 0`` (skipped cycles, when ``row_active`` is not empty) convert nothing:
    their codes are 0."""
    cols_t = partial.shape[1]
    sat = 0
    acc = np.empty(cols_t, dtype=np.int64)
    state = np.uint64(seed)
    bits = np.uint64(0)
    left = 0
    noisy = row_std.shape[0] > 0
    masked = row_active.shape[0] > 0
    for r in range(n_vec):
        acc[:] = 0
        for i in range(n_chunks):
            shift = i * dac_bits
            row = i * n_vec + r
            if masked and row_active[row] == 0:
                continue
            std = row_std[row] if noisy else 0.0
            for k in range(cols_t):
                v = np.float64(partial[row, k])
                if noisy:
                    if left == 0:
                        state += _GAMMA
                        z = state
                        z = (z ^ (z >> np.uint64(30))) * _MIX1
                        z = (z ^ (z >> np.uint64(27))) * _MIX2
                        bits = z ^ (z >> np.uint64(31))
                        left = 5
                    idx = np.int64(bits & np.uint64(0xFFF))
                    bits = bits >> np.uint64(12)
                    left -= 1
                    v += std * table[idx]
                c = np.int64(np.rint(gain[k] * v + offset[k]))
                if c > hi:
                    c = hi
                    sat += 1
                elif c < lo:
                    c = lo
                    sat += 1
                acc[k] += c << shift
        for k in range(cols_t):
            y_phys[r_off + r, c_off + k] += acc[k]
    return sat


@numba.njit(cache=True, nogil=True)
def bitserial_tile_reference(xu, g_tile, a_bits, dac_bits, lo, hi):  # pragma: no cover - numba
    """One tile, integer loops only (no BLAS): ``(y_phys_tile int64 [R, cols_t], saturations)``.

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


# ---------------------------------------------------------------------------- the tile


def program_tile(levels: np.ndarray, dtype: type, device: Device | None = None) -> np.ndarray:
    """One write: the tile's cell levels (``[rows_t, cols_t]``, or ``[B, rows_t, cols_t]`` for
    run-time written tiles) as the contiguous float matrix its cycles multiply with; on a
    ``device``, the conductances it actually holds (programming noise, stuck cells)."""
    if device is not None:
        return device.program(levels, dtype)
    return np.ascontiguousarray(levels, dtype=dtype)


_NO_READ_NOISE = np.zeros(0, dtype=np.float64)
_ALL_ACTIVE = np.zeros(0, dtype=np.uint8)


def read_noise_std(planes: np.ndarray, dac_bits: int, device: Device | None) -> np.ndarray:
    """Per driven plane row (one cycle of one vector): the standard deviation of every column's
    read noise, ``read_sigma * g_max * sqrt(sum_r x_r^2)`` (:mod:`cimc.target.noise`); empty
    when the device has no read noise."""
    if device is None or not device.model.read_sigma:
        return _NO_READ_NOISE
    flat = planes.reshape(-1, planes.shape[-1])
    sq = flat.sum(axis=1, dtype=np.float64) if dac_bits == 1 else (flat.astype(np.float64) ** 2).sum(axis=1)
    return device.model.read_sigma * device.g_max * np.sqrt(sq)


def _convert_noisy(part, row_std, active, device: Device, n_vec, n_chunks, dac_bits, lo, hi, out, r_off,
                   c_off) -> int:
    from cimc.target.noise import normal_table

    gain, offset = device.adc(part.shape[-1])
    act = _ALL_ACTIVE if active is None else np.ascontiguousarray(active, dtype=np.uint8)
    return int(_adc_shift_add_noisy(part, row_std, act, gain, offset, normal_table(),
                                    np.uint64(device.read_seed()), n_vec, n_chunks, dac_bits, lo, hi, out,
                                    r_off, c_off))


def tile_cycles(planes: np.ndarray, tile: np.ndarray, n_vec: int, n_chunks: int, dac_bits: int,
                lo: int, hi: int, out: np.ndarray, r_off: int, c_off: int,
                device: Device | None = None, skip_zero: bool = False) -> int:
    """Every cycle of one programmed tile for ``n_vec`` vectors (planes from :func:`build_planes`):
    column values, ADC, shift-add into ``out[r_off:, c_off:]``. Returns the saturations. On a
    ``device`` with ``skip_zero``, cycles whose plane is zero on every row are not converted
    (ideally their codes are 0 anyway)."""
    part = planes @ tile
    if device is None:
        return int(_adc_shift_add(part, n_vec, n_chunks, dac_bits, lo, hi, out, r_off, c_off))
    row_std = read_noise_std(planes, dac_bits, device)
    active = planes.any(axis=1) if skip_zero else None
    return _convert_noisy(part, row_std, active, device, n_vec, n_chunks, dac_bits, lo, hi, out, r_off, c_off)


def adc_convert(values: np.ndarray, lo: int, hi: int, device: Device | None = None,
                row_std: np.ndarray = _NO_READ_NOISE, active: np.ndarray | None = None) -> tuple[np.ndarray, int]:
    """One cycle's column values ``[..., cols]`` through the ADC: ``(codes int64, saturations)``;
    on a ``device`` with its read noise (``row_std``: :func:`read_noise_std` per row of the
    flattened values) and ADC errors; rows with ``active`` False (skipped cycles) give 0."""
    flat = np.ascontiguousarray(values).reshape(-1, values.shape[-1])
    codes = np.zeros(flat.shape, dtype=np.int64)
    if device is None:
        sat = _adc_shift_add(flat, flat.shape[0], 1, 1, lo, hi, codes, 0, 0)
    else:
        sat = _convert_noisy(flat, row_std, active, device, flat.shape[0], 1, 1, lo, hi, codes, 0, 0)
    return codes.reshape(values.shape), int(sat)


# ---------------------------------------------------------------------------- a whole layer


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


def row_sources(n: int, dual: bool) -> np.ndarray:
    """The input index each physical row is driven with (``dr``: ``[0..n, 0..n]``)."""
    src = np.arange(n, dtype=np.int64)
    return np.concatenate([src, src]) if dual else src


def _count_tile(c: Counters, rows: int, cols: int, cycles: int, saturations: int, hw: Hardware) -> None:
    """One programmed tile and its ``cycles`` (vectors x chunks), as executed."""
    c.writes += 1
    c.cells_written += rows * cols
    c.executes += cycles
    c.adc_conversions += cycles * cols
    c.dac_activations += cycles * rows
    c.cell_reads += cycles * rows * cols
    c.shift_adds += cycles * cols
    c.adc_slots += cycles * hw.adc_slots(cols)
    c.adc_saturations += saturations


def _layer_reference(xu, mapped, a_bits, hw, y_phys, counted: Counters) -> None:
    driven = mapped.drive_rows(xu)
    cycles = xu.shape[0] * chunks(a_bits, hw.dac_bits)
    for r0, r1 in tile_bounds(mapped.phys_rows, hw.rows):
        lo, hi = hw.adc_range(r1 - r0)
        for c0, c1 in tile_bounds(mapped.phys_cols, hw.cols):
            part, sat = bitserial_tile_reference(np.ascontiguousarray(driven[:, r0:r1]),
                                                 np.ascontiguousarray(mapped.g[r0:r1, c0:c1]),
                                                 a_bits, hw.dac_bits, lo, hi)
            y_phys[:, c0:c1] += part
            _count_tile(counted, r1 - r0, c1 - c0, cycles, int(sat), hw)


def _layer_blas(xu, mapped, a_bits, hw, y_phys, counted: Counters, device: Device | None = None) -> None:
    n_vec, n_chunks = xu.shape[0], chunks(a_bits, hw.dac_bits)
    row_tiles = tile_bounds(mapped.phys_rows, hw.rows)
    col_tiles = tile_bounds(mapped.phys_cols, hw.cols)
    rows_max, cols_max = row_tiles[0][1] - row_tiles[0][0], col_tiles[0][1] - col_tiles[0][0]
    dtype = plane_dtype(rows_max, hw.cell_bits, hw.dac_bits)
    block = vector_block(n_chunks, rows_max, cols_max, np.dtype(dtype).itemsize)
    tiles = {(r0, c0): program_tile(mapped.g[r0:r1, c0:c1], dtype, device)
             for r0, r1 in row_tiles for c0, c1 in col_tiles}
    sats = dict.fromkeys(tiles, 0)
    src = row_sources(mapped.n, mapped.dual)
    for b0 in range(0, n_vec, block):
        nb = min(block, n_vec - b0)
        for r0, r1 in row_tiles:
            lo, hi = hw.adc_range(r1 - r0)
            planes = np.empty((n_chunks * nb, r1 - r0), dtype=dtype)
            build_planes(xu[b0 : b0 + nb], src, r0, r1, n_chunks, hw.dac_bits, planes)
            for c0, _ in col_tiles:
                sats[(r0, c0)] += tile_cycles(planes, tiles[(r0, c0)], nb, n_chunks, hw.dac_bits,
                                              lo, hi, y_phys, b0, c0, device)
    for (r0, r1), (c0, c1) in ((r, c) for r in row_tiles for c in col_tiles):
        _count_tile(counted, r1 - r0, c1 - c0, n_vec * n_chunks, sats[(r0, c0)], hw)


def bitserial_layer(
    xu: np.ndarray,
    mapped: MappedWeights,
    a_bits: int,
    hw: Hardware,
    *,
    counters: Counters | None = None,
    correction: np.ndarray | None = None,
    reference: bool = False,
    device: Device | None = None,
) -> np.ndarray:
    """Run unsigned activations ``xu [R, n]`` bit-serially through a mapped layer: ``y int64 [R, m]``.

    Every tile of ``hw.rows x hw.cols`` is programmed once and driven with all ``ceil(a/d)``
    chunks of all ``R`` vectors; each conversion is clipped to ``hw.adc_range(rows_used)``.
    ``correction`` (``[m]``) is subtracted at the end. ``counters`` (if given) gets the events
    counted while running (tile by tile). ``reference=True`` uses the integer-loop tile kernel;
    ``device`` (BLAS path only) runs on a non-ideal :class:`~cimc.target.noise.Device`.
    """
    xu = _check_layer(xu, mapped, a_bits, hw)
    y_phys = np.zeros((xu.shape[0], mapped.phys_cols), dtype=np.int64)
    counted = Counters()
    if reference:
        if device is not None:
            raise ExecutionError("the integer-loop reference kernel models an ideal device only")
        _layer_reference(xu, mapped, a_bits, hw, y_phys, counted)
    else:
        _layer_blas(xu, mapped, a_bits, hw, y_phys, counted, device)
    y = recombine(y_phys, mapped.recomb, mapped.m)
    counted.recombine_adds += y_phys.size
    if correction is not None:
        y -= np.asarray(correction, dtype=np.int64)
    if counters is not None:
        counters += counted
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
    X: np.ndarray, W: np.ndarray, w_bits: int, a_bits: int, signed: bool, hw: Hardware,
    *, counters: Counters | None = None, device: Device | None = None,
) -> np.ndarray:
    """The whole layer: offset-encode ``X``, map ``W``, run bit-serially, correct. ``int64 [R, m]``."""
    mapped = map_weights(W, w_bits, hw.cell_bits, hw.mapping)
    xu = encode_activations(X, a_bits, signed)
    return bitserial_layer(xu, mapped, a_bits, hw, counters=counters,
                           correction=input_correction(W, a_bits, signed), device=device)
