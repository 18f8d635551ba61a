"""Run-time skipping of input bit-planes that are zero on every row of a tile (``xbar-skip-zero-planes``).

A crossbar cycle drives one DAC chunk of one input vector on the rows of a programmed tile. If
that chunk is zero on every one of those rows, every column current is zero and so is every ADC
code (0 lies in every ADC range): the controller sees it on the digital DAC inputs and does not
run the cycle. The result is unchanged, bit for bit, on any ADC.

The bit-serial interpreter counts the skipped cycles where it drives the planes
(:mod:`cimc.exec.xbar_tiles`). The exact fast path never builds planes, so
:func:`plane_skips` counts the same from the inputs: per vector, the OR of its inputs over the
rows of each row tile, and per chunk whether that OR has a bit set; :func:`measured_counters`
then gives the layer's counters from the one per-tile closed form with the cycles that ran.
The two paths agree (tested).
"""

from __future__ import annotations

import numba
import numpy as np

from cimc.target.counters import Counters, cycle_counters, layer_tiles, tile_counters, writes_per_run
from cimc.target.geometry import LayerGeometry, tile_bounds
from cimc.target.hw import Hardware
from cimc.target.packing import pack_inputs


def _input_ranges(r0: int, r1: int, n: int, dual: bool) -> list[tuple[int, int]]:
    """The inputs that drive physical rows ``[r0, r1)`` (``dr``: rows ``n..2n`` repeat them)."""
    if not dual or r1 <= n:
        return [(r0, r1)]
    if r0 >= n:
        return [(r0 - n, r1 - n)]
    return [(r0, n), (0, r1 - n)]


@numba.njit(cache=True, nogil=True)
def zero_plane_counts(xu, src, n_chunks, dac_bits):  # pragma: no cover - numba
    """Per chunk, how many vectors of ``xu [R, n]`` have that chunk zero on every row ``src``
    drives (the bit-serial loop's count, from the integers: no float planes are scanned)."""
    mask = (1 << dac_bits) - 1
    out = np.zeros(n_chunks, dtype=np.int64)
    for r in range(xu.shape[0]):
        acc = np.int64(0)
        for k in range(src.shape[0]):
            acc |= xu[r, src[k]]
        for i in range(n_chunks):
            if (acc >> (i * dac_bits)) & mask == 0:
                out[i] += 1
    return out


def plane_skips(xu: np.ndarray, geom: LayerGeometry, dual: bool, dac_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Cycles executed per tile and skipped cycles per chunk, counted from the inputs.

    ``xu`` are the unsigned streamed inputs ``[B, H, P, n]`` of the programmed repeats. Returns
    ``(executed [H, row_tiles], skipped_by_chunk [chunks])``: a tile of row tile ``rt`` of repeat
    ``h`` executes ``executed[h, rt]`` cycles (every column tile of that row tile the same).
    """
    b_sz, h_sz, p_sz, n = xu.shape
    mask = (1 << dac_bits) - 1
    bounds = tile_bounds(geom.phys_rows, geom.tile_rows)
    executed = np.zeros((h_sz, len(bounds)), dtype=np.int64)
    skipped = np.zeros(geom.chunks, dtype=np.int64)
    for rt, (r0, r1) in enumerate(bounds):
        orv = np.zeros((b_sz, h_sz, p_sz), dtype=np.int64)
        for lo, hi in _input_ranges(r0, r1, n, dual):
            orv |= np.bitwise_or.reduce(xu[..., lo:hi], axis=-1).astype(np.int64)
        for i in range(geom.chunks):
            live = ((orv >> (i * dac_bits)) & mask) != 0  # [B, H, P]
            per_h = live.sum(axis=(0, 2))
            executed[:, rt] += per_h
            skipped[i] += (b_sz * p_sz - per_h).sum() * geom.col_tiles
    return executed, skipped


def measured_counters(geom: LayerGeometry, executed: np.ndarray, hw: Hardware, writes: int,
                      full_cycles: int, programmed: int | None = None) -> tuple[Counters, dict[tuple[int, int, int], int]]:
    """The counters of a layer whose tile ``(h, rt, *)`` executed ``executed[h, rt]`` of its
    ``full_cycles`` cycles (each tile written ``writes`` times, its cells programmed
    ``programmed`` times), and the cycles per tile."""
    total = Counters()
    per_tile: dict[tuple[int, int, int], int] = {}
    for h, rt, ct, rows_t, cols_t in layer_tiles(geom):
        ran = int(executed[h, rt])
        total += tile_counters(rows_t, cols_t, 0, writes, hw.adcs, programmed)
        total += cycle_counters(rows_t, cols_t, ran, hw.adcs, skipped=full_cycles - ran)
        per_tile[(h, rt, ct)] = ran
    return total, per_tile


def fast_path_skips(prog, x: np.ndarray, hw: Hardware, batch: int):
    """A skipping layer on the exact path: ``(counters, cycles per tile, skipped per chunk)``
    counted from its inputs ``x [B, H, P, n]`` (offset-encoded and block-packed as it streams)."""
    geom = prog.geometry
    xu = np.asarray(x, dtype=np.int64)
    if prog.a_signed:
        xu = xu + (1 << (geom.a_bits - 1))
    if geom.blocks > 1:
        xu = pack_inputs(xu, geom.blocks)
    executed, per_chunk = plane_skips(xu, geom, hw.mapping == "dr", hw.dac_bits)
    full = batch * geom.desc.P * geom.chunks
    writes = writes_per_run(batch, dynamic=prog.dynamic, amortised=prog.amortised)
    counters, per_tile = measured_counters(geom, executed, hw, 0 if prog.shared else writes, full,
                                           programmed=writes)
    counters.recombine_adds = prog.counters(batch, hw).recombine_adds  # once per layer, after its tiles
    return counters, per_tile, per_chunk
