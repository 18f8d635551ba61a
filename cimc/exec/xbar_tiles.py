"""The bit-serial tile loop of ``xbar.layer`` (program, plane, cycle, shift_add), counting every
write, cycle, drive and conversion; and :class:`FusedChunkLoops`, the ``scf.for`` that runs a
tile's chunk loop in one BLAS call (bit-identical to the op-by-op loop, tested).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from xdsl.dialects import scf
from xdsl.dialects.builtin import StringAttr
from xdsl.interpreter import (
    Interpreter,
    InterpreterFunctions,
    impl,
    register_impls,
)

from cimc.analysis import LOOP_ATTR
from cimc.dialects import xbar
from cimc.errors import ExecutionError
from cimc.exec.skipping import zero_plane_counts
from cimc.exec.xbar_records import LayerRecord
from cimc.target.counters import Counters
from cimc.target.hw import Hardware
from cimc.target.kernels import (
    adc_convert,
    build_planes,
    program_tile,
    read_noise_std,
    tile_cycles,
    vector_block,
)
from cimc.target.noise import Device


class TileFunctions(InterpreterFunctions):
    """The bit-serial tile loop of an ``xbar.layer`` body: ``xbar.program``, ``xbar.plane``,
    ``xbar.cycle`` and ``xbar.shift_add``, and the fused chunk loop (:meth:`run_chunks_fused`).

    The base of :class:`cimc.exec.xbar_impls.XbarFunctions`, which owns the state of a run (set
    in its ``__init__``); xDSL's ``register_impls`` collects these implementations through the
    subclass.
    """

    hw: Hardware
    device: Device | None
    current: LayerRecord | None
    array_group: str | None
    fdtype: np.dtype
    _planes: dict[tuple, np.ndarray]
    _chunk_of: dict[int, int]
    _tile: tuple[int, int, int]

    def _counters(self) -> Counters:
        if self.current is None:
            raise ExecutionError("xbar tile ops must run inside an xbar.layer")
        return self.current.counters

    def _count_cycles(self, vectors: int, rows: int, cols: int, saturations: int) -> None:
        c = self._counters()
        c.executes += vectors
        c.adc_conversions += vectors * cols
        c.dac_activations += vectors * rows
        c.cell_reads += vectors * rows * cols
        c.shift_adds += vectors * cols
        c.adc_slots += vectors * self.hw.adc_slots(cols)
        c.adc_saturations += saturations

    @impl(xbar.ProgramOp)
    def run_program(self, interp: Interpreter, op: xbar.ProgramOp, args: tuple[Any, ...]):
        cells, h, rt, ct = args
        t = op.tile.type
        assert isinstance(t, xbar.TileType)
        rs, cs = slice(rt * t.rows.data, (rt + 1) * t.rows.data), slice(ct * t.cols.data, (ct + 1) * t.cols.data)
        levels = cells[:, h, rs, cs] if cells.ndim == 4 else cells[h, rs, cs]
        c = self._counters()
        # run-time cells: one stack per batch element; static ones: every inference programs
        # the tile again unless the program is amortised over the batch
        copies = cells.shape[0] if cells.ndim == 4 else (1 if op.amortised else self.current.batch)
        self._tile = (h, rt, ct)
        group = op.group.data if op.group is not None else None
        if op.shared is not None and self.array_group != group:
            raise ExecutionError(f"layer '{self.current.name}': its shared array '{group}' was "
                                 f"overwritten (it holds {self.array_group!r})")
        self.array_group = group
        c.writes += 0 if op.shared is not None else copies
        c.cells_written += copies * levels.shape[-2] * levels.shape[-1]
        return (program_tile(levels, self.fdtype, self.device),)

    def _row_sources(self, plane_op: xbar.PlaneOp, n: int, rt: int) -> np.ndarray:
        t = plane_op.plane.type
        assert isinstance(t, xbar.PlaneType)
        phys = 2 * n if plane_op.dual is not None else n
        return np.arange(rt * t.rows.data, min((rt + 1) * t.rows.data, phys), dtype=np.int64) % n

    def _planes_of(self, key: tuple, xv: np.ndarray, src: np.ndarray, n_chunks: int, d: int,
                   keep: bool) -> np.ndarray:
        """The stacked planes of ``xv`` (reused by the column tiles of one row tile)."""
        planes = self._planes.get(key)
        if planes is None:
            if not any(k[:3] == key[:3] for k in self._planes):
                self._planes.clear()  # keep the planes of one (repeat, row tile) only
            planes = np.empty((n_chunks * xv.shape[0], len(src)), dtype=self.fdtype)
            build_planes(np.ascontiguousarray(xv, dtype=np.int64), src, 0, len(src), n_chunks, d, planes)
            if keep:
                self._planes[key] = planes
        return planes

    def run_chunks_fused(self, interp: Interpreter, loop: scf.ForOp, plane_op: xbar.PlaneOp,
                         shift_op: xbar.ShiftAddOp, n_chunks: int) -> None:
        """The ``chunks`` loop of one tile (``plane; cycle; shift_add`` per DAC chunk) in one go
        (:func:`cimc.target.kernels.tile_cycles`); results and counters equal the loop's."""
        xu, h, rt = interp.get_values(plane_op.operands[:3])
        (tile,) = interp.get_values((loop.body.block.ops.first.next_op.operands[0],))  # type: ignore[union-attr]
        buf, h2, ct = interp.get_values(shift_op.operands[:3])
        n = xu.shape[-1]
        src = self._row_sources(plane_op, n, rt)
        d = plane_op.plane.type.dac_bits.data  # type: ignore[union-attr]
        rows, cols = tile.shape[-2], tile.shape[-1]
        lo, hi = self.hw.adc_range(rows)
        b_sz, p_sz = xu.shape[0], xu.shape[2]
        if buf.data is None:
            buf.data = np.zeros((buf.repeats, b_sz, p_sz, buf.cols), dtype=np.int64)
        c0 = ct * shift_op.columns.type.cols.data  # type: ignore[union-attr]
        if tile.ndim == 3:  # a dynamic tile per batch element
            groups = [(b, xu[b, h], tile[b], buf.data[h2, b]) for b in range(b_sz)]
        else:
            groups = [(-1, xu[:, h].reshape(b_sz * p_sz, n), tile, buf.data[h2].reshape(b_sz * p_sz, -1))]
        block = vector_block(n_chunks, rows, cols, tile.dtype.itemsize)
        skip = loop.body.block.ops.first.next_op.skip_zero is not None  # type: ignore[union-attr]
        sat = 0
        skipped = np.zeros(n_chunks, dtype=np.int64)
        for b, xv, g, out in groups:
            n_vec = xv.shape[0]
            for v0 in range(0, n_vec, block):
                v1 = min(v0 + block, n_vec)
                key = (id(xu), h, rt, b, v0)
                planes = self._planes_of(key, xv[v0:v1], src, n_chunks, d, keep=v0 == 0 and v1 == n_vec)
                if skip:
                    skipped += self._zero_planes(key, xv[v0:v1], src, n_chunks, d)
                sat += tile_cycles(planes, g, v1 - v0, n_chunks, d, lo, hi, out, v0, c0, self.device, skip)
        total = b_sz * p_sz * n_chunks
        ran = total - int(skipped.sum())
        self._count_cycles(ran, rows, cols, sat)
        if skip:
            self._counters().skipped_cycles += total - ran
            self.current.count_skips(ran, skipped, (h, rt, ct))  # type: ignore[union-attr]

    def _zero_planes(self, key: tuple, xv: np.ndarray, src: np.ndarray, n_chunks: int, d: int) -> np.ndarray:
        """Per chunk, how many vectors' planes are zero on every row of the tile (kept with the
        planes of the row tile, so its column tiles do not count again)."""
        zk = ("zero", *key)
        zeros = self._planes.get(zk)
        if zeros is None:
            zeros = zero_plane_counts(np.ascontiguousarray(xv, dtype=np.int64), src, n_chunks, d)
            if key in self._planes:
                self._planes[zk] = zeros
        return zeros

    @impl(xbar.PlaneOp)
    def run_plane(self, interp: Interpreter, op: xbar.PlaneOp, args: tuple[Any, ...]):
        xu, h, rt, i = args
        key = (id(xu), h, rt, i)  # the same plane drives every column tile of a row tile
        if key in self._planes:
            return (self._planes[key],)
        if not any(k[:3] == key[:3] for k in self._planes):
            self._planes.clear()
        src = self._row_sources(op, xu.shape[-1], rt)
        d = op.plane.type.dac_bits.data  # type: ignore[union-attr]
        plane = (((xu[:, h][..., src]) >> (i * d)) & ((1 << d) - 1)).astype(self.fdtype)
        self._planes[key] = plane
        self._chunk_of[id(plane)] = i
        return (plane,)

    @impl(xbar.CycleOp)
    def run_cycle(self, interp: Interpreter, op: xbar.CycleOp, args: tuple[Any, ...]):
        tile, plane = args  # tile [r, c] or [B, r, c]; plane [B, P, r]
        rows, cols = tile.shape[-2], tile.shape[-1]
        lo, hi = self.hw.adc_range(rows)
        if self.device is None:
            codes, sat = adc_convert(plane @ tile, lo, hi)  # [B, P, c]
        else:  # a skipped cycle converts nothing: its codes stay 0 on a noisy device too
            d = op.plane.type.dac_bits.data  # type: ignore[union-attr]
            active = plane.any(axis=-1).reshape(-1) if op.skip_zero is not None else None
            codes, sat = adc_convert(plane @ tile, lo, hi, self.device, read_noise_std(plane, d, self.device),
                                     active)
        total = plane.shape[0] * plane.shape[1]
        if op.skip_zero is None:
            self._count_cycles(total, rows, cols, sat)
            return (codes,)
        zero = int((~plane.any(axis=-1)).sum())  # their codes are zero: no cycle ran
        self._count_cycles(total - zero, rows, cols, sat)
        self._counters().skipped_cycles += zero
        per_chunk = np.zeros(self.current.program.chunks, dtype=np.int64)  # type: ignore[union-attr]
        per_chunk[self._chunk_of[id(plane)]] = zero
        self.current.count_skips(total - zero, per_chunk, self._tile)  # type: ignore[union-attr]
        return (codes,)

    @impl(xbar.ShiftAddOp)
    def run_shift_add(self, interp: Interpreter, op: xbar.ShiftAddOp, args: tuple[Any, ...]):
        buf, h, ct, codes, i = args
        width = op.columns.type.cols.data  # type: ignore[union-attr]
        if buf.data is None:
            buf.data = np.zeros((buf.repeats, *codes.shape[:2], buf.cols), dtype=np.int64)
        c0 = ct * width
        buf.data[h, :, :, c0 : c0 + codes.shape[-1]] += codes << (i * op.dac_bits.value.data)
        return ()


def fusable_chunks(loop: scf.ForOp) -> tuple[xbar.PlaneOp, xbar.ShiftAddOp] | None:
    """``(plane, shift_add)`` if ``loop`` is a tile's canonical chunk loop (as built by
    ``xbar-tile``: ``plane(iv); cycle(tile, plane); shift_add(cycle, iv); yield``), else None."""
    role = loop.attributes.get(LOOP_ATTR)
    if not isinstance(role, StringAttr) or role.data != "chunks" or loop.iter_args:
        return None
    ops = list(loop.body.block.ops)
    if len(ops) != 4 or not isinstance(ops[3], scf.YieldOp) or ops[3].operands:
        return None
    plane, cycle, shift = ops[:3]
    if not (isinstance(plane, xbar.PlaneOp) and isinstance(cycle, xbar.CycleOp)
            and isinstance(shift, xbar.ShiftAddOp)):
        return None
    iv = loop.body.block.args[0]
    if (cycle.operands[1] is not plane.plane or shift.operands[3] is not cycle.output
            or plane.operands[3] is not iv or shift.operands[4] is not iv
            or any(v is iv for v in (*plane.operands[:3], cycle.operands[0], *shift.operands[:3]))):
        return None
    return plane, shift


@register_impls
class FusedChunkLoops(InterpreterFunctions):
    """``scf.for`` with the chunk loops of crossbar tiles fused (:meth:`TileFunctions.run_chunks_fused`)."""

    def __init__(self, fns: TileFunctions):
        self.fns = fns

    @impl(scf.ForOp)
    def run_for(self, interp: Interpreter, op: scf.ForOp, args: tuple[Any, ...]):
        lb, ub, step, *loop_args = args
        fused = fusable_chunks(op) if self.fns.current is not None and lb == 0 and step == 1 else None
        if fused is not None:
            if ub > 0:
                self.fns.run_chunks_fused(interp, op, *fused, ub)
            return ()
        values = tuple(loop_args)
        for i in range(lb, ub, step):
            values = interp.run_ssacfg_region(op.body, (i, *values), "for_loop")
        return values
