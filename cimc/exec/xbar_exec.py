"""Execution of ``xbar`` programs: the bit-serial crossbar interpreter with hardware counters.

The program runs in xDSL's interpreter (func, arith and scf impls from xDSL, the cimq host ops
from :mod:`cimc.exec.cimq_exec`, the xbar ops here). Every xbar op does a whole tile's or
plane's work for all ``B * P`` vectors in numpy; the loops of a layer are interpreted, so the
interpreter runs ``H * row_tiles * col_tiles * chunks`` loop bodies per layer.

Counters (per layer and in total): tile writes and cells written, crossbar cycles (executes),
ADC conversions and saturations, DAC activations, and the host ops' wall time. Latency is
``writes * t_write + executes * t_exec``. At batch ``B`` every vector needs its own cycles, so
executes scale with ``B``; static tiles are written once per inference and do not, while dynamic
(attention) tiles are written once per batch element. With ``B = 1`` the counts are the paper's
formula (:func:`cimc.cost.layer_cost`).

Fast path: when the ADC cannot clip (lossless for the layer's tallest tile), an ``xbar.layer``
may compute its exact integer result in one step (:func:`cimc.semantics.exact_matmul`) and take
its counters from the program's loop trip counts; ``fast=False`` forces the bit-serial loops.
Both give identical outputs and counters (tested).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from xdsl.dialects import scf
from xdsl.dialects.builtin import DenseIntOrFPElementsAttr, ModuleOp, TensorType
from xdsl.interpreter import (
    Interpreter,
    InterpreterFunctions,
    ReturnedValues,
    impl,
    impl_terminator,
    register_impls,
)
from xdsl.interpreters.arith import ArithFunctions
from xdsl.interpreters.func import FuncFunctions
from xdsl.interpreters.scf import ScfFunctions
from xdsl.ir import Operation

from cimc import semantics as sem
from cimc.dialects import cimq, xbar
from cimc.errors import ExecutionError, UnsupportedModelError
from cimc.exec import RunResult
from cimc.exec.cimq_exec import CimqFunctions, check_inputs, dense_to_numpy, find_main
from cimc.exec.kernels import Counters
from cimc.hw import Hardware, column_value_max
from cimc.weights import STORE

_F32_EXACT = 1 << 24

# ---------------------------------------------------------------------------- weight mapping


def map_cells(
    W: np.ndarray, w_bits: int, cell_bits: int, mapping: str, slices: int, *, where: str = "layer"
) -> tuple[np.ndarray, np.ndarray]:
    """Slice and map signed ``w_bits`` weights ``W [n, m]`` onto ``slices`` cell slices.

    Same physical layout as :func:`cimc.exec.kernels.map_weights` (``dc``: column
    ``(o*S + j)*2 + p``; ``dr``: plus rows then minus rows (negative levels, driven ``[x, x]``),
    column ``o*S + j``; ``of``: ``W + 2^(w-1)`` in column ``o*S + j`` and a level-1 reference
    column ``m*S``), but it accepts the full signed range ``[-2^(w-1), 2^(w-1) - 1]`` (activations
    written at run time are not narrow) and any slice count whose bits hold the stored
    magnitudes (``xbar-narrow-slices`` uses ``ceil((w-1)/c)`` for narrow weights). Returns
    ``(g [rows, cols] int8/int16, recomb [cols, 2] int64)``: physical column ``k`` adds
    ``recomb[k, 1] * value`` to output ``recomb[k, 0]`` (``-1``: to every output, the offset
    mapping's reference column), so that recombining ``drive(xu) @ g`` gives ``xu @ W``
    (:func:`recombine`). Intermediates are int16: VGG-size layers map without gigabytes of
    temporaries.
    """
    W = np.asarray(W)
    n, m = W.shape
    lo, hi = -(1 << (w_bits - 1)), (1 << (w_bits - 1)) - 1
    if W.size and (int(W.min()) < lo or int(W.max()) > hi):
        raise ExecutionError(f"{where}: values in [{W.min()}, {W.max()}] exceed {w_bits}-bit signed integers")
    W16 = W.astype(np.int16)
    if mapping == "of":
        parts = [W16 + np.int16(1 << (w_bits - 1))]
    else:
        parts = [np.maximum(W16, 0), np.maximum(-W16, 0)]
    cap = 1 << (cell_bits * slices)
    if W.size and max(int(p.max()) for p in parts) >= cap:
        raise ExecutionError(
            f"{where}: {slices} slice(s) of {cell_bits}-bit cells cannot hold the stored values "
            f"(up to {max(int(p.max()) for p in parts)})"
        )
    gdtype = np.int8 if cell_bits <= 7 else np.int16
    mask = (1 << cell_bits) - 1
    shifts = np.int64(1) << (cell_bits * np.arange(slices, dtype=np.int64))
    bit_shifts = (cell_bits * np.arange(slices)).astype(np.int16)
    if mapping == "dc":
        both = np.stack(parts, axis=-1)[:, :, None, :]  # [n, m, 1, 2]
        g = ((both >> bit_shifts[None, None, :, None]) & mask).astype(gdtype)  # [n, m, S, 2]
        outs = np.repeat(np.arange(m, dtype=np.int64), slices * 2)
        coefs = np.tile(np.stack([shifts, -shifts], axis=1).reshape(-1), m)
        return g.reshape(n, m * slices * 2), np.stack([outs, coefs], axis=1)
    outs = np.repeat(np.arange(m, dtype=np.int64), slices)
    coefs = np.tile(shifts, m)
    if mapping == "of":
        outs = np.append(outs, -1)
        coefs = np.append(coefs, -(1 << (w_bits - 1)))
    recomb = np.stack([outs, coefs], axis=1)
    if mapping == "dr":
        both = np.stack([parts[0], parts[1]])[:, :, :, None]  # [2, n, m, 1]
        g = ((both >> bit_shifts) & mask).astype(gdtype)  # [2, n, m, S]
        g[1] *= -1
        return g.reshape(2 * n, m * slices), recomb
    if mapping != "of":
        raise ExecutionError(f"{where}: unknown mapping '{mapping}'")
    levels = ((parts[0][:, :, None] >> bit_shifts) & mask).astype(gdtype)  # [n, m, S]
    g = np.concatenate([levels.reshape(n, m * slices), np.ones((n, 1), dtype=gdtype)], axis=1)
    return g, recomb


def recombine(phys: np.ndarray, recomb: np.ndarray, m: int) -> np.ndarray:
    """Digital recombination of physical column sums ``phys [..., cols]`` to ``[..., m]``
    (``recomb`` as returned by :func:`map_cells`), exact in int64."""
    outs, coefs = recomb[:, 0], recomb[:, 1]
    scaled = phys * coefs
    y = np.zeros((*phys.shape[:-1], m), dtype=np.int64)
    every = outs < 0
    if every.any():
        y += scaled[..., every].sum(axis=-1, keepdims=True)
    cols = np.nonzero(~every)[0]
    order = cols[np.argsort(outs[cols], kind="stable")]
    sorted_outs = outs[order]
    starts = np.nonzero(np.r_[True, sorted_outs[1:] != sorted_outs[:-1]])[0]
    if order.size:
        y[..., sorted_outs[starts]] += np.add.reduceat(scaled[..., order], starts, axis=-1)
    return y


# ---------------------------------------------------------------------------- program analysis


def trip_count(loop: scf.ForOp) -> int:
    """The trip count of an ``scf.for`` with constant bounds."""
    from xdsl.dialects import arith

    vals = []
    for v in (loop.lb, loop.ub, loop.step):
        owner = v.owner
        if not isinstance(owner, arith.ConstantOp):
            raise UnsupportedModelError("xbar program loops must have constant bounds")
        vals.append(owner.value.value.data)  # type: ignore[union-attr]
    lb, ub, step = vals
    return max(0, -(-(ub - lb) // step))


def issue_count(op: Operation, layer: xbar.LayerOp) -> int:
    """How many times ``op`` runs per layer execution: the product of its loops' trip counts."""
    count = 1
    parent = op.parent_op()
    while parent is not None and parent is not layer:
        if isinstance(parent, scf.ForOp):
            count *= trip_count(parent)
        parent = parent.parent_op()
    return count


@dataclass(frozen=True)
class LayerProgram:
    """What a compiled ``xbar.layer`` does per inference (batch 1), read from its program."""

    name: str
    kind: str
    m: int
    n: int
    P: int
    H: int
    w_bits: int
    a_bits: int
    a_signed: bool
    slices: int
    row_tiles: int
    col_tiles: int
    chunks: int
    phys_rows: int
    phys_cols: int
    dynamic: bool
    writes: int
    """Tile programmings (``xbar.program`` issues)."""
    cycle_issues: int
    """``xbar.cycle`` issues; each is one crossbar cycle per vector (``P`` per inference)."""

    @property
    def executes(self) -> int:
        return self.cycle_issues * self.P

    def counters(self, batch: int) -> Counters:
        """The counters of running ``batch`` inferences (no saturations: lossless)."""
        vec = batch * self.P
        wmul = batch if self.dynamic else 1
        per = vec * self.chunks * self.H
        return Counters(
            writes=self.writes * wmul,
            cells_written=self.H * self.phys_rows * self.phys_cols * wmul,
            executes=self.cycle_issues * vec,
            adc_conversions=per * self.phys_cols * self.row_tiles,
            adc_saturations=0,
            dac_activations=per * self.phys_rows * self.col_tiles,
        )


def analyse_layer(layer: xbar.LayerOp) -> LayerProgram:
    """Read a layer's descriptor and its write / cycle counts from the IR."""
    writes = cycles = 0
    cells_t = None
    for op in layer.body.walk():
        if isinstance(op, xbar.ProgramOp):
            writes += issue_count(op, layer)
            cells_t = op.cells.type
        elif isinstance(op, xbar.CycleOp):
            cycles += issue_count(op, layer)
    if not isinstance(cells_t, xbar.CellsType):
        raise UnsupportedModelError(f"layer '{layer.layer.data}' programs no tile")
    v = layer.value
    return LayerProgram(
        name=layer.layer.data, kind=layer.kind.data, m=v("m"), n=v("n"), P=v("P"), H=v("H"),
        w_bits=v("w_bits"), a_bits=v("a_bits"), a_signed=bool(v("a_signed")), slices=v("slices"),
        row_tiles=v("row_tiles"), col_tiles=v("col_tiles"), chunks=v("chunks"),
        phys_rows=cells_t.rows.data, phys_cols=cells_t.cols.data, dynamic=layer.is_dynamic,
        writes=writes, cycle_issues=cycles,
    )


def module_layers(module: ModuleOp) -> list[xbar.LayerOp]:
    """The module's ``xbar.layer`` ops in program order."""
    return [op for op in module.walk() if isinstance(op, xbar.LayerOp)]


def compiled_geometry(module: ModuleOp) -> dict[str, Any] | None:
    """``rows, cols, cell_bits, dac_bits, mapping`` the module was tiled for (None if untiled)."""
    for op in module.walk():
        if isinstance(op, xbar.ProgramOp):
            t = op.tile.type
            layer = op.parent_op()
            while layer is not None and not isinstance(layer, xbar.LayerOp):
                layer = layer.parent_op()
            assert isinstance(t, xbar.TileType) and isinstance(layer, xbar.LayerOp)
            return dict(
                rows=t.rows.data, cols=t.cols.data, cell_bits=layer.value("cell_bits"),
                dac_bits=layer.value("dac_bits"), mapping=layer.mapping.data,
            )
    return None


# ---------------------------------------------------------------------------- runtime values


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


def _const_array(value: Any) -> np.ndarray:
    if isinstance(value, cimq.BlobAttr):
        return STORE.get(value.digest.data)
    if isinstance(value, DenseIntOrFPElementsAttr):
        return dense_to_numpy(value)
    raise ExecutionError(f"xbar.const of unsupported value {value}")


@register_impls
class XbarFunctions(InterpreterFunctions):
    """numpy implementations of the xbar ops, counting hardware activity."""

    def __init__(self, hw: Hardware, fast: bool | None, progress: Any = None):
        self.hw = hw
        self.fast = fast
        self.progress = progress
        self.layers: list[LayerRecord] = []
        self.current: LayerRecord | None = None
        self._planes: dict[tuple[int, int, int, int], np.ndarray] = {}
        bound = column_value_max(hw.rows, hw.cell_bits, hw.dac_bits)
        self.fdtype = np.float32 if bound < _F32_EXACT else np.float64

    # ---------------------------------------------------------------- xbar-mm level

    @impl(xbar.Im2ColOp)
    def run_im2col(self, interp: Interpreter, op: xbar.Im2ColOp, args: tuple[Any, ...]):
        x = args[0]
        g = op.groups.value.data
        cg = x.shape[1] // g
        parts = [
            sem.im2col(
                x[:, i * cg : (i + 1) * cg], cimq.ints(op.kernel), cimq.ints(op.strides),  # type: ignore[arg-type]
                cimq.ints(op.pads), cimq.ints(op.dilations),  # type: ignore[arg-type]
            )[0]
            for i in range(g)
        ]
        return (np.stack(parts, axis=1),)

    @impl(xbar.Col2ImOp)
    def run_col2im(self, interp: Interpreter, op: xbar.Col2ImOp, args: tuple[Any, ...]):
        a = args[0]
        _, c, ho, wo = op.output.type.get_shape()  # type: ignore[union-attr]
        return (np.ascontiguousarray(a.transpose(0, 1, 3, 2)).reshape(a.shape[0], c, ho, wo),)

    @impl(xbar.UnpackOp)
    def run_unpack(self, interp: Interpreter, op: xbar.UnpackOp, args: tuple[Any, ...]):
        shape = list(op.output.type.get_shape())  # type: ignore[union-attr]
        return (args[0].reshape([args[0].shape[0], *shape[1:]]),)

    def _formula_layer(self, op: xbar.MatMulOp | xbar.MatMulDynOp, x: np.ndarray) -> LayerRecord:
        from cimc.cost import LayerDesc, layer_cost

        _, h, p, n = x.shape
        m = op.output.type.get_shape()[-1]  # type: ignore[union-attr]
        desc = LayerDesc(op.layer.data, int(m), int(n), int(p), int(h), op.kind.data)
        cost = layer_cost(desc, op.w_bits.value.data, op.a_bits.value.data, self.hw)
        b = x.shape[0]
        dyn = isinstance(op, xbar.MatMulDynOp)
        c = Counters(
            writes=cost.writes * (b if dyn else 1),
            cells_written=h * cost.phys_rows * cost.phys_cols * (b if dyn else 1),
            executes=cost.executes * b,
            adc_conversions=cost.adc_conversions * b,
            dac_activations=cost.dac_activations * b,
        )
        return LayerRecord(None, op.layer.data, op.kind.data, c, path="formula")

    @impl(xbar.MatMulOp)
    def run_matmul(self, interp: Interpreter, op: xbar.MatMulOp, args: tuple[Any, ...]):
        x, w = args
        self._finish(self._formula_layer(op, x))
        return (sem.exact_matmul(x, w[None]),)

    @impl(xbar.MatMulDynOp)
    def run_matmul_dyn(self, interp: Interpreter, op: xbar.MatMulDynOp, args: tuple[Any, ...]):
        x, r = args
        self._finish(self._formula_layer(op, x))
        return (sem.exact_matmul(x, r),)

    # ---------------------------------------------------------------- xbar level

    def _lossless(self, prog: LayerProgram) -> bool:
        if self.hw.adc_bits is None:
            return True
        return self.hw.adc_bits >= self.hw.lossless_adc_bits(min(prog.phys_rows, self.hw.rows))

    def _finish(self, record: LayerRecord) -> None:
        self.layers.append(record)
        if self.progress is not None:
            self.progress.update(1)

    @impl(xbar.LayerOp)
    def run_layer(self, interp: Interpreter, op: xbar.LayerOp, args: tuple[Any, ...]):
        start = time.perf_counter()
        prog = analyse_layer(op)
        record = LayerRecord(prog, prog.name, prog.kind)
        lossless = self._lossless(prog)
        if self.fast and not lossless:
            raise ExecutionError(
                f"layer '{prog.name}': the fast path needs a lossless ADC ({self.hw.adc_bits} bits "
                f"< {self.hw.lossless_adc_bits(min(prog.phys_rows, self.hw.rows))}); run with fast=False"
            )
        x, w = args
        if (self.fast is None and lossless) or self.fast:
            y = sem.exact_matmul(x, w if prog.dynamic else w[None])
            record.counters = prog.counters(x.shape[0])
            record.path = "exact"
        else:
            self.current = record
            self._planes.clear()
            (y,) = interp.run_ssacfg_region(op.body, args, f"xbar.layer {prog.name}")
            self.current = None
            self._planes.clear()
            record.path = "bit-serial"
        record.seconds = time.perf_counter() - start
        self._finish(record)
        return (y,)

    @impl_terminator(xbar.YieldOp)
    def run_yield(self, interp: Interpreter, op: xbar.YieldOp, args: tuple[Any, ...]):
        return ReturnedValues(args), ()

    @impl(xbar.ConstOp)
    def run_const(self, interp: Interpreter, op: xbar.ConstOp, args: tuple[Any, ...]):
        arr = _const_array(op.value)
        t = op.output.type
        if isinstance(t, xbar.CellsType):
            return (arr.reshape(t.repeats.data, t.rows.data, t.cols.data),)
        assert isinstance(t, TensorType)
        return (np.asarray(arr, dtype=np.int64).reshape(t.get_shape()),)

    @impl(xbar.MapDynOp)
    def run_map_dyn(self, interp: Interpreter, op: xbar.MapDynOp, args: tuple[Any, ...]):
        r = np.asarray(args[0], dtype=np.int64)  # [B, H, n, m]
        b, h = r.shape[:2]
        wb, s = op.w_bits.value.data, op.slices.value.data
        cells_t = op.cells.type
        assert isinstance(cells_t, xbar.CellsType)
        c = cells_t.cell_bits.data
        gs = []
        recomb = None
        for bi in range(b):
            for hi in range(h):
                g, recomb = map_cells(r[bi, hi], wb, c, op.mapping.data, s, where="xbar.map_dyn")
                gs.append(g)
        g_all = np.stack(gs).reshape(b, h, *gs[0].shape)
        offset = (1 << (op.a_bits.value.data - 1)) if op.a_signed.value.data else 0
        return g_all, recomb, offset * r.sum(axis=2)

    @impl(xbar.OffsetOp)
    def run_offset(self, interp: Interpreter, op: xbar.OffsetOp, args: tuple[Any, ...]):
        a = op.a_bits.value.data
        xu = np.asarray(args[0], dtype=np.int64) + ((1 << (a - 1)) if op.signed is not None else 0)
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

    @impl(xbar.ProgramOp)
    def run_program(self, interp: Interpreter, op: xbar.ProgramOp, args: tuple[Any, ...]):
        cells, h, rt, ct = args
        t = op.tile.type
        assert isinstance(t, xbar.TileType)
        rs, cs = slice(rt * t.rows.data, (rt + 1) * t.rows.data), slice(ct * t.cols.data, (ct + 1) * t.cols.data)
        tile = cells[:, h, rs, cs] if cells.ndim == 4 else cells[h, rs, cs]
        c = self._counters()
        copies = cells.shape[0] if cells.ndim == 4 else 1
        c.writes += copies
        c.cells_written += copies * tile.shape[-2] * tile.shape[-1]
        return (np.ascontiguousarray(tile, dtype=self.fdtype),)

    @impl(xbar.PlaneOp)
    def run_plane(self, interp: Interpreter, op: xbar.PlaneOp, args: tuple[Any, ...]):
        xu, h, rt, i = args
        key = (id(xu), h, rt, i)  # the same plane drives every column tile of a row tile
        if key in self._planes:
            return (self._planes[key],)
        if not any(k[:3] == key[:3] for k in self._planes):
            self._planes.clear()  # keep the planes of one (repeat, row tile) only
        t = op.plane.type
        assert isinstance(t, xbar.PlaneType)
        n = xu.shape[-1]
        phys = 2 * n if op.dual is not None else n
        src = np.arange(rt * t.rows.data, min((rt + 1) * t.rows.data, phys)) % n
        d = t.dac_bits.data
        plane = (((xu[:, h][..., src]) >> (i * d)) & ((1 << d) - 1)).astype(self.fdtype)
        self._planes[key] = plane
        return (plane,)

    @impl(xbar.CycleOp)
    def run_cycle(self, interp: Interpreter, op: xbar.CycleOp, args: tuple[Any, ...]):
        tile, plane = args  # tile [r, c] or [B, r, c]; plane [B, P, r]
        part = np.rint(plane @ tile).astype(np.int64)  # [B, P, c]
        rows, cols = tile.shape[-2], tile.shape[-1]
        lo, hi = self.hw.adc_range(rows)
        clipped = np.clip(part, lo, hi)
        c = self._counters()
        vec = plane.shape[0] * plane.shape[1]
        c.executes += vec
        c.adc_conversions += vec * cols
        c.dac_activations += vec * rows
        c.adc_saturations += int(np.count_nonzero(clipped != part))
        return (clipped,)

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
        corr = corr[None, :, None, :] if corr.ndim == 2 else corr[:, :, None, :]
        return (np.ascontiguousarray(y - corr),)


class _HostTimer(Interpreter.Listener):
    """Wall time of the host ops of ``@main`` (everything but the crossbar layers)."""

    def __init__(self, main: Operation):
        self.main_body = main.regions[0].block
        self.start: dict[int, float] = {}
        self.seconds = 0.0

    def _host(self, op: Operation) -> bool:
        return op.parent_block() is self.main_body and not isinstance(op, xbar.CROSSBAR_OPS)

    def will_interpret_op(self, op: Operation, args: Any) -> None:
        if self._host(op):
            self.start[id(op)] = time.perf_counter()

    def did_interpret_op(self, op: Operation, results: Any) -> None:
        t0 = self.start.pop(id(op), None)
        if t0 is not None:
            self.seconds += time.perf_counter() - t0


# ---------------------------------------------------------------------------- driver


def check_hardware(module: ModuleOp, hw: Hardware | None) -> Hardware:
    """The hardware to run on: ``hw`` (its geometry must match the compiled one) or, if None,
    the compiled geometry with a lossless ADC and the paper's timings."""
    geo = compiled_geometry(module)
    if hw is None:
        return Hardware(**geo) if geo else Hardware()
    if geo is not None:
        for key, value in geo.items():
            if getattr(hw, key) != value:
                raise ExecutionError(
                    f"the program was compiled for {key}={value} but the hardware has "
                    f"{key}={getattr(hw, key)}; lower it again with this hardware"
                )
    return hw


def run_xbar(
    module: ModuleOp,
    inputs: Sequence[np.ndarray],
    *,
    hw: Hardware | None = None,
    progress: bool = False,
    fast: bool | None = None,
    record_layers: bool = False,
) -> RunResult:
    """Run ``@main`` of an ``xbar-mm``/``xbar`` level module; counters in the result's report.

    ``fast``: None = exact one-step layers where the ADC is lossless, else bit-serial; True =
    always exact (an error on a lossy ADC); False = always bit-serial. ``record_layers`` adds the
    crossbar layers' outputs (``report["_layer_outputs"]``, not JSON) for comparisons.
    """
    hw = check_hardware(module, hw)
    main = find_main(module)
    args = check_inputs(main, inputs)
    n_layers = sum(1 for op in module.walk() if isinstance(op, xbar.CROSSBAR_OPS) and not _nested(op))
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=n_layers, desc="crossbar layers", unit="layer", leave=False)
    fns = XbarFunctions(hw, fast, bar)
    timer = _HostTimer(main)
    outputs: dict[str, np.ndarray] = {}

    class _Rec(Interpreter.Listener):
        def did_interpret_op(self, op: Operation, results: Any) -> None:
            if record_layers and isinstance(op, xbar.CROSSBAR_OPS) and not _nested(op):
                outputs[op.layer.data] = results[0]  # type: ignore[union-attr]

    interp = Interpreter(module, listeners=(timer, _Rec()))
    for f in (FuncFunctions(), ArithFunctions(), ScfFunctions(), CimqFunctions(), fns):
        interp.register_implementations(f)
    try:
        outs = interp.call_op("main", tuple(args))
    finally:
        if bar is not None:
            bar.close()
    batch = int(args[0].shape[0]) if args else 1
    report = build_report(fns.layers, hw, batch, timer.seconds)
    if record_layers:
        report["_layer_outputs"] = outputs
    return RunResult([np.asarray(o) for o in outs], report, counters_table(report))


def _nested(op: Operation) -> bool:
    parent = op.parent_op()
    while parent is not None:
        if isinstance(parent, xbar.LayerOp):
            return True
        parent = parent.parent_op()
    return False


def build_report(layers: list[LayerRecord], hw: Hardware, batch: int, host_s: float) -> dict[str, Any]:
    """JSON-able counters per layer and in total."""
    rows = []
    total = Counters()
    for rec in layers:
        c = rec.counters
        total += c
        row: dict[str, Any] = {"name": rec.name, "kind": rec.kind, "path": rec.path}
        if rec.program is not None:
            p = rec.program
            row.update(m=p.m, n=p.n, P=p.P, H=p.H, w_bits=p.w_bits, a_bits=p.a_bits,
                       slices=p.slices, row_tiles=p.row_tiles, col_tiles=p.col_tiles, chunks=p.chunks)
        row.update(c.as_dict())
        row["latency_us"] = c.writes * hw.t_write_us + c.executes * hw.t_exec_us
        row["seconds"] = rec.seconds
        rows.append(row)
    tot: dict[str, Any] = total.as_dict()
    tot["latency_us"] = total.writes * hw.t_write_us + total.executes * hw.t_exec_us
    return {
        "batch": batch,
        "hardware": hw.to_dict(),
        "layers": rows,
        "total": tot,
        "host_seconds": host_s,
    }


def counters_table(report: dict[str, Any]) -> Any:
    """A rich Table of the per-layer counters."""
    from rich.table import Table

    keys = ("writes", "cells_written", "executes", "adc_conversions", "adc_saturations", "dac_activations")
    table = Table(title=f"crossbar counters (batch {report['batch']})")
    table.add_column("layer")
    for k in keys:
        table.add_column(k.replace("_", " "), justify="right")
    table.add_column("latency us", justify="right")
    for row in report["layers"]:
        table.add_row(row["name"], *(f"{row[k]:,}" for k in keys), f"{row['latency_us']:,.1f}")
    tot = report["total"]
    table.add_row("total", *(f"{tot[k]:,}" for k in keys), f"{tot['latency_us']:,.1f}", style="bold")
    return table


def compare_lossy(module: ModuleOp, inputs: Sequence[np.ndarray], hw: Hardware) -> dict[str, Any]:
    """Run ``module`` (an ``xbar`` level program) with ``hw``'s ADC and with a lossless one.

    Returns per-layer saturations and output errors of the lossy run against the lossless run,
    and the error of the model outputs (max / mean absolute difference, fraction changed).
    """
    import dataclasses

    exact = run_xbar(module, inputs, hw=dataclasses.replace(hw, adc_bits=None), record_layers=True)
    lossy = run_xbar(module, inputs, hw=hw, fast=False if not hw.lossless else None, record_layers=True)
    ex_out, lo_out = exact.report["_layer_outputs"], lossy.report["_layer_outputs"]
    layers = []
    for row in lossy.report["layers"]:
        a = np.asarray(ex_out[row["name"]], dtype=np.float64)
        b = np.asarray(lo_out[row["name"]], dtype=np.float64)
        layers.append({
            "name": row["name"],
            "adc_saturations": row["adc_saturations"],
            "adc_conversions": row["adc_conversions"],
            "max_abs_error": float(np.abs(a - b).max(initial=0)),
            "rel_error": float(np.linalg.norm(a - b) / max(np.linalg.norm(a), 1e-30)),
        })
    outs = []
    for a, b in zip(exact.outputs, lossy.outputs):
        a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
        outs.append({
            "max_abs_error": float(np.abs(a64 - b64).max(initial=0)),
            "mean_abs_error": float(np.abs(a64 - b64).mean()) if a64.size else 0.0,
            "changed_fraction": float(np.mean(a64 != b64)) if a64.size else 0.0,
        })
    return {
        "adc_bits": hw.adc_bits,
        "saturations": lossy.report["total"]["adc_saturations"],
        "layers": layers,
        "outputs": outs,
        "lossless_outputs": exact.outputs,
        "lossy_outputs": lossy.outputs,
    }
