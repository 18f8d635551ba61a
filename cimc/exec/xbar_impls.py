"""Interpreter functions of the ``xbar`` dialect: every op does a whole tile's or plane's work.

:class:`XbarFunctions` runs the ``xbar-mm`` ops (im2col, col2im, unpack, layer-level products on
the fast path with closed-form counters) and the ``xbar`` crossbar program (map, offset, alloc,
program, plane, cycle, shift_add, recombine), counting hardware events as it executes them: a
write per ``xbar.program``, per vector a cycle, its row drives and column conversions per
``xbar.cycle``, and every ADC clip. The crossbar arithmetic is the target's
(:mod:`cimc.target.kernels`, :mod:`cimc.target.mapping`); this module only moves values between
ops. A tile's chunk loop (``plane; cycle; shift_add``) runs fused, with all chunks of all vectors
in one BLAS call (:class:`FusedChunkLoops`); that is bit-identical to the op-by-op loop (tested).

State lives in the function-table instance of one run and in the module's blobs (cells and
float32 weights derived once per blob); nothing is global.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from xdsl.dialects import scf
from xdsl.dialects.builtin import StringAttr, TensorType
from xdsl.interpreter import (
    Interpreter,
    InterpreterFunctions,
    ReturnedValues,
    impl,
    impl_terminator,
    register_impls,
)
from xdsl.ir import Operation

from cimc.analysis import LOOP_ATTR, LayerProgram, analyse_layer
from cimc.dialects import cimq, xbar
from cimc.errors import ExecutionError
from cimc.exec.cimq_exec import const_value
from cimc.exec.fast_path import fast_matmul
from cimc.exec.host import im2col_grouped
from cimc.exec.skipping import fast_path_skips, zero_plane_counts
from cimc.target.counters import Counters, layer_counters, zero_point_adds
from cimc.target.geometry import LayerDesc, layer_geometry
from cimc.target.hw import Hardware
from cimc.target.kernels import (
    adc_convert,
    build_planes,
    plane_dtype,
    program_tile,
    read_noise_std,
    tile_cycles,
    vector_block,
)
from cimc.target.noise import Device
from cimc.target.mapping import correction, map_cells, recomb_table, recombine
from cimc.target.packing import block_diagonal, pack_inputs, unpack_outputs
from cimc.weights import Blob


@dataclass
class PhysAcc:
    """``!xbar.buf``: int64 accumulators ``[H, B, P, phys_cols]``, allocated on first use."""

    repeats: int
    cols: int
    data: np.ndarray | None = None


@dataclass
class LayerRecord:
    """Counters and timing of one layer during a run."""

    program: LayerProgram | None
    name: str
    kind: str
    counters: Counters = field(default_factory=Counters)
    seconds: float = 0.0
    path: str = ""
    weight: Blob | None = None
    """The static weight's blob (cells are derived from it once)."""
    batch: int = 1
    tile_cycles: dict[tuple[int, int, int], int] = field(default_factory=dict)
    """Cycles executed per tile ``(h, rt, ct)`` (kept where cycles were skipped)."""
    skipped_by_plane: np.ndarray | None = None
    """Skipped cycles per DAC chunk (bit-plane) index, over all tiles and vectors."""

    def count_skips(self, executed: int, skipped_per_chunk: np.ndarray, tile: tuple[int, int, int]) -> None:
        """Record a tile's executed cycles and the skipped ones per chunk."""
        self.tile_cycles[tile] = self.tile_cycles.get(tile, 0) + executed
        if self.skipped_by_plane is None:
            self.skipped_by_plane = np.zeros(len(skipped_per_chunk), dtype=np.int64)
        self.skipped_by_plane += skipped_per_chunk


def static_blob(value: Any) -> Blob | None:
    """The blob of a static crossbar weight (the ``cimq.const`` it comes from), else None."""
    owner = value.owner
    if isinstance(owner, cimq.ConstOp) and isinstance(owner.value, cimq.BlobAttr):
        return owner.value.blob.data
    return None


def _feeds_static_layers_only(op: cimq.ConstOp) -> bool:
    """Whether every use of a constant is as the static weight of a crossbar layer."""
    uses = list(op.output.uses)
    return bool(uses) and all(
        isinstance(u.operation, (xbar.LayerOp, xbar.MatMulOp)) and u.index == 1
        and not (isinstance(u.operation, xbar.LayerOp) and u.operation.is_dynamic)
        for u in uses
    )


def _feeds_layers_only(op: Operation) -> bool:
    """Whether every use of ``op``'s result is as the input of a crossbar layer (operand 0)."""
    uses = list(op.results[0].uses)
    return bool(uses) and all(
        isinstance(u.operation, (xbar.LayerOp, xbar.MatMulOp, xbar.MatMulDynOp)) and u.index == 0
        for u in uses
    )


def _run_const(op: cimq.ConstOp) -> np.ndarray:
    """A constant's run-time value; static crossbar weights stay as stored (int8, no copy)."""
    if isinstance(op.value, cimq.BlobAttr):
        shape = tuple(op.output.type.get_shape())  # type: ignore[union-attr]
        arr = op.value.array
        if _feeds_static_layers_only(op) and arr.dtype.kind in "iu" and arr.size == int(np.prod(shape)):
            return arr.reshape(shape)
        value = op.value.blob.data.derived(("value", op.output.type), lambda _: const_value(op))
        value.setflags(write=False)
        return value
    return const_value(op)


@register_impls
class XbarFunctions(InterpreterFunctions):
    """numpy implementations of the xbar ops, counting hardware activity."""

    def __init__(self, hw: Hardware, fast: bool | None, progress: Any = None, device: Device | None = None):
        self.hw = hw
        self.fast = fast
        self.device = device
        self.progress = progress
        self.layers: list[LayerRecord] = []
        self.current: LayerRecord | None = None
        self._planes: dict[tuple, np.ndarray] = {}
        self._chunk_of: dict[int, int] = {}
        self._tile: tuple[int, int, int] = (0, 0, 0)
        self.array_group: str | None = None
        """The shared-array group the (single) array was last programmed with (``xbar-pack``)."""
        self.fdtype = plane_dtype(hw.rows, hw.cell_bits, hw.dac_bits)

    @impl(cimq.ConstOp)
    def run_cimq_const(self, interp: Interpreter, op: cimq.ConstOp, args: tuple[Any, ...]):
        return (_run_const(op),)

    # ---------------------------------------------------------------- xbar-mm level

    @impl(xbar.Im2ColOp)
    def run_im2col(self, interp: Interpreter, op: xbar.Im2ColOp, args: tuple[Any, ...]):
        """Grouped patches ``[B, G, Ho*Wo, Cg*kh*kw]`` (a transposed view); float32 when only
        crossbar layers read them (exact: integers below 2^24, checked)."""
        dtype = np.float32 if _feeds_layers_only(op) else None
        return (
            im2col_grouped(
                args[0], op.groups.value.data, cimq.ints(op.kernel), cimq.ints(op.strides),  # type: ignore[arg-type]
                cimq.ints(op.pads), cimq.ints(op.dilations), dtype,  # type: ignore[arg-type]
                _zero_point(op.input),
            ),
        )

    @impl(xbar.Col2ImOp)
    def run_col2im(self, interp: Interpreter, op: xbar.Col2ImOp, args: tuple[Any, ...]):
        a = args[0]
        _, c, ho, wo = op.output.type.get_shape()  # type: ignore[union-attr]
        return (np.ascontiguousarray(a.transpose(0, 1, 3, 2)).reshape(a.shape[0], c, ho, wo),)

    @impl(xbar.UnpackOp)
    def run_unpack(self, interp: Interpreter, op: xbar.UnpackOp, args: tuple[Any, ...]):
        shape = list(op.output.type.get_shape())  # type: ignore[union-attr]
        typed = op.input.type.get_shape()[0]  # type: ignore[union-attr]
        if shape and (shape[0] < 0 or args[0].shape[0] != typed):  # run at another batch: axis 0
            shape[0] = args[0].shape[0]
        return (args[0].reshape(shape),)

    def _formula_layer(self, op: xbar.MatMulOp | xbar.MatMulDynOp, x: np.ndarray) -> LayerRecord:
        _, h, p, n = x.shape
        m = op.output.type.get_shape()[-1]  # type: ignore[union-attr]
        desc = LayerDesc(op.layer.data, int(m), int(n), int(p), int(h), op.kind.data)
        geom = layer_geometry(desc, op.w_bits.value.data, op.a_bits.value.data, self.hw)
        dyn = isinstance(op, xbar.MatMulDynOp)
        c = layer_counters(geom, self.hw, batch=x.shape[0], dynamic=dyn, zero_point=bool(_zero_point(op.rhs)))
        return LayerRecord(None, op.layer.data, op.kind.data, c, path="formula")

    def _ideal_only(self, op: Operation) -> None:
        if self.device is not None:
            raise ExecutionError(f"{op.name} '{op.layer.data}': device noise needs the xbar level "  # type: ignore[attr-defined]
                                 "(crossbar loops), not xbar-mm")

    @impl(xbar.MatMulOp)
    def run_matmul(self, interp: Interpreter, op: xbar.MatMulOp, args: tuple[Any, ...]):
        self._ideal_only(op)
        x, w = args
        self._finish(self._formula_layer(op, x))
        xc = _centered(x, op.lhs)
        return (zp_corrected(fast_matmul(xc, w, static_blob(op.rhs)), xc, _zero_point(op.rhs)),)

    @impl(xbar.MatMulDynOp)
    def run_matmul_dyn(self, interp: Interpreter, op: xbar.MatMulDynOp, args: tuple[Any, ...]):
        self._ideal_only(op)
        x, r = args
        self._finish(self._formula_layer(op, x))
        xc = _centered(x, op.lhs)
        return (zp_corrected(fast_matmul(xc, r), xc, _zero_point(op.rhs)),)

    # ---------------------------------------------------------------- xbar level

    def _finish(self, record: LayerRecord) -> None:
        self.layers.append(record)
        if self.progress is not None:
            self.progress.update(1)

    @impl(xbar.LayerOp)
    def run_layer(self, interp: Interpreter, op: xbar.LayerOp, args: tuple[Any, ...]):
        start = time.perf_counter()
        prog = analyse_layer(op)
        blob = None if prog.dynamic else static_blob(op.weight)
        x, w = args
        record = LayerRecord(prog, prog.name, prog.kind, weight=blob, batch=int(x.shape[0]))
        need = self.hw.lossless_adc_bits(prog.geometry.tallest_rows)
        lossless = self.hw.adc_bits is None or self.hw.adc_bits >= need
        if self.fast and not lossless:
            raise ExecutionError(
                f"layer '{prog.name}': the fast path needs a lossless ADC ({self.hw.adc_bits} bits "
                f"< {need}); run with fast=False"
            )
        if self.fast and self.device is not None:
            raise ExecutionError(f"layer '{prog.name}': the fast path models an ideal device; "
                                 "run noise with fast=False")
        if self.fast or (self.fast is None and lossless and self.device is None):
            xc = _centered(x, op.operands[0])
            y = zp_corrected(fast_matmul(xc, w, blob), xc, prog.w_zp)  # xbar.zp_correct's work
            record.counters = prog.counters(x.shape[0], self.hw)
            if prog.skip_zero:
                self._fast_skips(record, prog, x)
            self.array_group = prog.group  # what its (skipped) xbar.program would have left
            record.path = "exact"
        else:
            self.current = record
            self._planes.clear()
            (y,) = interp.run_ssacfg_region(op.body, args, f"xbar.layer {prog.name}")
            self.current = None
            self._planes.clear()
            self._chunk_of.clear()
            record.path = "bit-serial"
        record.seconds = time.perf_counter() - start
        self._finish(record)
        return (y,)

    def _fast_skips(self, record: LayerRecord, prog: LayerProgram, x: np.ndarray) -> None:
        """The exact path of a skipping layer: count from the inputs what the cycles would skip."""
        record.counters, record.tile_cycles, record.skipped_by_plane = fast_path_skips(
            prog, x, self.hw, record.batch)

    @impl_terminator(xbar.YieldOp)
    def run_yield(self, interp: Interpreter, op: xbar.YieldOp, args: tuple[Any, ...]):
        return ReturnedValues(args), ()

    @impl(xbar.ConstOp)
    def run_const(self, interp: Interpreter, op: xbar.ConstOp, args: tuple[Any, ...]):
        arr = cimq.constant_array(op.value)
        t = op.output.type
        if isinstance(t, xbar.CellsType):
            return (arr.reshape(t.repeats.data, t.rows.data, t.cols.data),)
        assert isinstance(t, TensorType)
        return (np.asarray(arr, dtype=np.int64).reshape(t.get_shape()),)

    @impl(xbar.MapOp)
    def run_map(self, interp: Interpreter, op: xbar.MapOp, args: tuple[Any, ...]):
        """Cells, recombination table and correction of the layer's weight (block-diagonal and
        with dropped columns where the passes said so). A static weight's cells and correction
        are derived once from its blob and kept with the module."""
        w = args[0]
        wb, s, mapping = op.w_bits.value.data, op.slices.value.data, op.mapping.data
        cells_t = op.cells.type
        assert isinstance(cells_t, xbar.CellsType)
        k = op.blocks.value.data if op.blocks is not None else 1
        cols = np.asarray(cimq.ints(op.columns), dtype=np.int64) if op.columns is not None else None
        c, m = cells_t.cell_bits.data, w.shape[-1] * k
        a_bits, signed = op.a_bits.value.data, bool(op.a_signed.value.data)
        zx = op.a_zp.value.data if op.a_zp is not None else 0
        w_signed = op.w_unsigned is None
        recomb = recomb_table(m, wb, c, mapping, s, w_signed)
        recomb = recomb if cols is None else recomb[cols]
        if op.is_dynamic:
            r = np.asarray(w, dtype=np.int64)
            r = block_diagonal(r, k) if k > 1 else r
            cells = np.stack([map_cells(r[b], wb, c, mapping, s, where="xbar.map", signed=w_signed)
                              for b in range(r.shape[0])])
            return (cells if cols is None else cells[..., cols]), recomb, correction(r, a_bits, signed, zx)
        where = f"layer '{self.current.name}'" if self.current is not None else "xbar.map"
        blob = self.current.weight if self.current is not None else None

        def make(_: Any) -> tuple[np.ndarray, np.ndarray]:
            wk = block_diagonal(np.asarray(w), k) if k > 1 else w
            cells = map_cells(wk, wb, c, mapping, s, where=where, signed=w_signed)
            return (cells if cols is None else np.ascontiguousarray(cells[..., cols])), correction(wk, a_bits, signed, zx)

        key = ("cells", w.shape, wb, c, mapping, s, a_bits, signed, zx, w_signed, k,
               None if cols is None else cols.tobytes())
        cells, corr = blob.derived(key, make) if blob is not None else make(None)
        return cells, recomb, corr

    @impl(xbar.PackBlocksOp)
    def run_pack_blocks(self, interp: Interpreter, op: xbar.PackBlocksOp, args: tuple[Any, ...]):
        return (pack_inputs(args[0], op.blocks.value.data),)

    @impl(xbar.UnpackBlocksOp)
    def run_unpack_blocks(self, interp: Interpreter, op: xbar.UnpackBlocksOp, args: tuple[Any, ...]):
        h = op.output.type.get_shape()[1]  # type: ignore[union-attr]
        return (unpack_outputs(args[0], h, op.blocks.value.data),)

    @impl(xbar.TileAtOp)
    def run_tile_at(self, interp: Interpreter, op: xbar.TileAtOp, args: tuple[Any, ...]):
        flat = cimq.ints(op.tiles)
        i = 3 * args[0]
        return flat[i], flat[i + 1], flat[i + 2]

    @impl(xbar.OffsetOp)
    def run_offset(self, interp: Interpreter, op: xbar.OffsetOp, args: tuple[Any, ...]):
        a = op.a_bits.value.data
        xu = np.array(args[0], dtype=np.int64, order="C")  # a C-ordered copy (im2col gives a view)
        if op.signed is not None:
            xu += 1 << (a - 1)
        if xu.size and (xu.min() < 0 or xu.max() >= (1 << a)):
            raise ExecutionError(f"xbar.offset: inputs do not fit {a}-bit integers")
        return (xu,)

    @impl(xbar.AllocOp)
    def run_alloc(self, interp: Interpreter, op: xbar.AllocOp, args: tuple[Any, ...]):
        t = op.output.type
        assert isinstance(t, xbar.BufType)
        return (PhysAcc(t.repeats.data, t.cols.data),)

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

    @impl(xbar.RecombineOp)
    def run_recombine(self, interp: Interpreter, op: xbar.RecombineOp, args: tuple[Any, ...]):
        buf, recomb, corr = args
        if buf.data is None:
            raise ExecutionError("xbar.recombine: the accumulators were never written")
        m = op.output.type.get_shape()[-1]  # type: ignore[union-attr]
        y = recombine(buf.data, recomb, m).transpose(1, 0, 2, 3)  # [B, H, P, m]
        self._counters().recombine_adds += buf.data.size
        corr = corr[None, :, None, :] if corr.ndim == 2 else corr[:, :, None, :]
        return (np.ascontiguousarray(y - corr),)


    @impl(xbar.ZpCorrectOp)
    def run_zp_correct(self, interp: Interpreter, op: xbar.ZpCorrectOp, args: tuple[Any, ...]):
        acc, x = args
        b, h, p, m = acc.shape
        self._counters().recombine_adds += zero_point_adds(h, p, x.shape[-1], m, b)
        return (zp_corrected(acc, _centered(x, op.input), op.w_zp.value.data),)


def zp_corrected(y: np.ndarray, xc: np.ndarray, w_zp: int) -> np.ndarray:
    """``y - w_zp * rowsum(xc)`` (``xbar.zp_correct``: ``xc`` the centred streamed input
    ``[B, H, P, n]``, ``y`` its product ``[B, H, P, m]``); ``y`` itself when ``w_zp`` is 0."""
    if not w_zp:
        return y
    return y - w_zp * np.sum(xc, axis=-1, dtype=np.int64, keepdims=True)


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
    """``scf.for`` with the chunk loops of crossbar tiles fused (:meth:`XbarFunctions.run_chunks_fused`)."""

    def __init__(self, fns: XbarFunctions):
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


def _zero_point(value: Any) -> int:
    """The zero point of a quantized value's type (0 for anything else)."""
    t = value.type
    return t.element_type.zp if isinstance(t, TensorType) and isinstance(t.element_type, cimq.QuantType) else 0


def _centered(x: np.ndarray, value: Any) -> np.ndarray:
    """The streamed integers minus their zero point (what the crossbar's correction leaves)."""
    zp = _zero_point(value)
    return np.asarray(x, dtype=np.int64) - zp if zp else x
