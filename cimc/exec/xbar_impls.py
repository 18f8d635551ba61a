"""Interpreter functions of the ``xbar`` dialect: every op does a whole tile's or plane's work.

:class:`XbarFunctions` runs the ``xbar-mm`` ops (im2col, col2im, unpack, layer-level products on
the fast path with closed-form counters) and the ``xbar`` crossbar program (map, offset, alloc,
program, plane, cycle, shift_add, recombine), counting hardware events as it executes them: a
write per ``xbar.program``, per vector a cycle, its row drives and column conversions per
``xbar.cycle``, and every ADC clip. The crossbar arithmetic is the target's
(:mod:`cimc.target.kernels`, :mod:`cimc.target.mapping`); this module only moves values between
ops. A tile's chunk loop (``plane; cycle; shift_add``) runs fused, with all chunks of all vectors
in one BLAS call (:class:`cimc.exec.xbar_tiles.FusedChunkLoops`); that is bit-identical to the op-by-op loop (tested).

State lives in the function-table instance of one run and in the module's blobs (cells and
float32 weights derived once per blob); nothing is global.

The tile loop lives in :mod:`cimc.exec.xbar_tiles` (the base class), the per-run records and
shared value helpers in :mod:`cimc.exec.xbar_records`.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from xdsl.dialects.builtin import TensorType
from xdsl.interpreter import (
    Interpreter,
    ReturnedValues,
    impl,
    impl_terminator,
    register_impls,
)
from xdsl.ir import Operation

from cimc.analysis import LayerProgram, analyse_layer
from cimc.dialects import cimq, xbar
from cimc.errors import ExecutionError
from cimc.exec.cimq_exec import const_value
from cimc.exec.fast_path import fast_matmul
from cimc.exec.host import im2col_grouped
from cimc.exec.skipping import fast_path_skips
from cimc.exec.xbar_records import LayerRecord, PhysAcc, centered, static_blob, zero_point, zp_corrected
from cimc.exec.xbar_tiles import TileFunctions
from cimc.target.counters import layer_counters, zero_point_adds
from cimc.target.geometry import LayerDesc, layer_geometry
from cimc.target.hw import Hardware
from cimc.target.kernels import plane_dtype
from cimc.target.mapping import correction, map_cells, recomb_table, recombine
from cimc.target.noise import Device
from cimc.target.packing import block_diagonal, pack_inputs, unpack_outputs


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
class XbarFunctions(TileFunctions):
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
                zero_point(op.input),
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
        c = layer_counters(geom, self.hw, batch=x.shape[0], dynamic=dyn, zero_point=bool(zero_point(op.rhs)))
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
        xc = centered(x, op.lhs)
        return (zp_corrected(fast_matmul(xc, w, static_blob(op.rhs)), xc, zero_point(op.rhs)),)

    @impl(xbar.MatMulDynOp)
    def run_matmul_dyn(self, interp: Interpreter, op: xbar.MatMulDynOp, args: tuple[Any, ...]):
        self._ideal_only(op)
        x, r = args
        self._finish(self._formula_layer(op, x))
        xc = centered(x, op.lhs)
        return (zp_corrected(fast_matmul(xc, r), xc, zero_point(op.rhs)),)

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
            xc = centered(x, op.operands[0])
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
        return (zp_corrected(acc, centered(x, op.input), op.w_zp.value.data),)
