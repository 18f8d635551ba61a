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
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from xdsl.dialects import scf
from xdsl.dialects.builtin import DenseIntOrFPElementsAttr, ModuleOp, StringAttr, TensorType
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
from cimc.exec.cimq_exec import CimqFunctions, _qtype, check_inputs, dense_to_numpy, find_main
from cimc.exec.kernels import Counters
from cimc.hw import Hardware, column_value_max
from cimc.weights import STORE

_F32_EXACT = 1 << 24

# ---------------------------------------------------------------------------- weight mapping


def _recomb_table(m: int, w_bits: int, cell_bits: int, mapping: str, slices: int) -> np.ndarray:
    """``recomb [cols, 2]`` (output, coefficient) of the physical columns of :func:`map_cells`."""
    shifts = np.int64(1) << (cell_bits * np.arange(slices, dtype=np.int64))
    if mapping == "dc":
        outs = np.repeat(np.arange(m, dtype=np.int64), slices * 2)
        coefs = np.tile(np.stack([shifts, -shifts], axis=1).reshape(-1), m)
        return np.stack([outs, coefs], axis=1)
    outs = np.repeat(np.arange(m, dtype=np.int64), slices)
    coefs = np.tile(shifts, m)
    if mapping == "of":
        outs = np.append(outs, -1)
        coefs = np.append(coefs, -(1 << (w_bits - 1)))
    return np.stack([outs, coefs], axis=1)


def _mapping_error(W: np.ndarray, status: int, w_bits: int, cell_bits: int, mapping: str,
                   slices: int, where: str) -> ExecutionError:
    lo, hi = -(1 << (w_bits - 1)), (1 << (w_bits - 1)) - 1
    if int(W.min()) < lo or int(W.max()) > hi:  # the range is checked before the capacity
        return ExecutionError(f"{where}: values in [{W.min()}, {W.max()}] exceed {w_bits}-bit signed integers")
    W64 = W.astype(np.int64)
    top = int((W64 + (1 << (w_bits - 1))).max()) if mapping == "of" else int(np.abs(W64).max())
    return ExecutionError(
        f"{where}: {slices} slice(s) of {cell_bits}-bit cells cannot hold the stored values (up to {top})"
    )


def map_cells_stack(
    W: np.ndarray, w_bits: int, cell_bits: int, mapping: str, slices: int, *, where: str = "layer"
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`map_cells` of every ``W[h]`` of ``W [H, n, m]``: ``(g [H, rows, cols], recomb)``.

    One numba pass per repeat writes straight into the result (int8 cells; int16 for 8-bit
    cells): no int64/int16 temporaries and no stacking copy, so VGG-size layers map at memory
    speed with the cells as the only allocation.
    """
    from cimc.exec.kernels import map_cells_into

    if mapping not in ("dc", "dr", "of"):
        raise ExecutionError(f"{where}: unknown mapping '{mapping}'")
    W = np.asarray(W)
    h, n, m = W.shape
    rows, cols = (2 * n, m * slices) if mapping == "dr" else (n, m * slices * (2 if mapping == "dc" else 1) + (mapping == "of"))
    gdtype = np.int8 if cell_bits <= 7 else np.int16
    g = np.empty((h, rows, cols), dtype=gdtype)
    for hh in range(h):
        status, _ = map_cells_into(W[hh], w_bits, cell_bits, mapping, slices, g[hh])
        if status:
            raise _mapping_error(W[hh], status, w_bits, cell_bits, mapping, slices, where)
    return g, _recomb_table(m, w_bits, cell_bits, mapping, slices)


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
    (:func:`recombine`). The levels are written by one numba pass (:func:`map_cells_stack`).
    """
    g, recomb = map_cells_stack(np.asarray(W)[None], w_bits, cell_bits, mapping, slices, where=where)
    return g[0], recomb


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


# ---------------------------------------------------------------------------- exact fast path

#: float32 copies of static weights and their per-input-row magnitude bound, keyed by
#: ``(blob digest, shape)``; bounded in bytes (oldest dropped first).
_F32_WEIGHTS: dict[tuple[str, tuple[int, ...]], tuple[np.ndarray, np.ndarray] | None] = {}
_F32_WEIGHTS_BYTES = 1 << 30


def _f32_weights(w: np.ndarray, key: tuple[str, tuple[int, ...]] | None) -> tuple[np.ndarray, np.ndarray] | None:
    """``(w as float32, max_o |w[..., i, o]| as float32)``, or None if ``w`` is not exact in float32."""
    if key is not None and key in _F32_WEIGHTS:
        return _F32_WEIGHTS[key]
    wabs_max = np.abs(w).max(axis=-1) if w.size else np.zeros(w.shape[:-1], dtype=np.int64)
    out = None
    if not w.size or int(wabs_max.max()) < _F32_EXACT:
        out = (w.astype(np.float32), wabs_max.astype(np.float32))
    if key is not None:
        used = sum(v[0].nbytes for v in _F32_WEIGHTS.values() if v is not None)
        while _F32_WEIGHTS and out is not None and used + out[0].nbytes > _F32_WEIGHTS_BYTES:
            old = _F32_WEIGHTS.pop(next(iter(_F32_WEIGHTS)))
            used -= old[0].nbytes if old is not None else 0
        if out is None or out[0].nbytes <= _F32_WEIGHTS_BYTES:
            _F32_WEIGHTS[key] = out
    return out


def _f32_product(xf: np.ndarray, wt: np.ndarray, wmax: np.ndarray) -> np.ndarray | None:
    """``xf [B, H, P, n] @ wt`` as int64 if float32 is provably exact for it, else None.

    The exactness bound ``sum_i |x[r, i]| * wmax[i]`` of every row is one matrix-vector product
    per ``(b, h)`` (no ``abs`` pass when ``x >= 0``). The product is computed transposed
    (``[m, P]``), so the result is a ``[B, H, P, m]`` view of ``[B, H, m, P]`` memory and
    ``xbar.col2im`` needs no copy.
    """
    b_sz, h_sz, p_sz, n = xf.shape
    m = wt.shape[-1]
    limit = _F32_EXACT / (1.0 + 4.0 * n * 2.0**-24)
    nonneg = float(xf.min()) >= 0.0
    for b in range(b_sz):
        for h in range(h_sz):
            xs = xf[b, h]
            bound = np.matmul(xs if nonneg else np.abs(xs), wmax[b, h] if wmax.ndim == 3 else wmax[h])
            if float(bound.max()) >= limit:
                return None
    out = np.empty((b_sz, h_sz, m, p_sz), dtype=np.int64)
    for b in range(b_sz):
        for h in range(h_sz):
            out[b, h] = np.matmul((wt[b, h] if wt.ndim == 4 else wt[h]).T, xf[b, h].T)
    return out.transpose(0, 1, 3, 2)


def fast_matmul(x: np.ndarray, w: np.ndarray, key: tuple[str, tuple[int, ...]] | None = None) -> np.ndarray:
    """``x [B, H, P, n] @ w`` (``w [H, n, m]`` static or ``[B, H, n, m]`` dynamic), exact int64.

    float32 BLAS when provably exact: every partial sum of ``x[r] @ w[:, o]``, in any order, is
    an integer of magnitude at most ``sum_i |x[r, i]| * max_o |w[i, o]|``; that bound is computed
    (a float32 matrix-vector product, with its own rounding margin) and must stay below 2^24
    (:func:`_f32_product`).
    Otherwise :func:`cimc.semantics.exact_matmul` (float64 or int64). ``key`` caches the static
    weight's float32 copy across runs. The result may be a transposed view.
    """
    wf = _f32_weights(w, key)
    if wf is not None and x.size and w.size:
        y = _f32_product(x.astype(np.float32, copy=False), *wf)
        if y is not None:
            return y
    return sem.exact_matmul(x, w if w.ndim == 4 else w[None])


def _static_key(op: xbar.LayerOp | xbar.MatMulOp) -> tuple[str, tuple[int, ...]] | None:
    owner = op.operands[1].owner
    if isinstance(owner, cimq.ConstOp) and isinstance(owner.value, cimq.BlobAttr):
        return owner.value.digest.data, tuple(op.operands[1].type.get_shape())  # type: ignore[union-attr]
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


def _const_value(op: cimq.ConstOp) -> np.ndarray:
    from cimc.exec.cimq_exec import const_value

    if isinstance(op.value, cimq.BlobAttr) and _feeds_static_layers_only(op):
        arr = STORE.get(op.value.digest.data)
        shape = op.output.type.get_shape()  # type: ignore[union-attr]
        if arr.dtype.kind in "iu" and arr.size == int(np.prod(shape)):
            return arr.reshape(shape)
    return const_value(op)


def cached_const(op: cimq.ConstOp) -> np.ndarray:
    """The run-time value of a ``cimq.const`` (read-only), made once per op (:data:`_CONSTS`)."""
    hit = _CONSTS.get(op)
    if hit is not None and hit[0] is op.value and hit[1] is op.output.type:
        return hit[2]
    value = _const_value(op)
    value.setflags(write=False)  # shared by every run of the module
    _CONSTS[op] = (op.value, op.output.type, value)
    return value


@dataclass(frozen=True)
class RequantPlan:
    """``dequantize(s32) -> [mul c] -> [add c] -> [add r] -> [relu] -> quantize``, every value used once."""

    head: cimq.DequantizeOp
    tail: cimq.QuantizeOp
    inner: tuple[Operation, ...]
    mul: Any  # SSA value of the per-channel factor, or None
    add: Any  # SSA value of the per-channel term, or None
    res: Any  # SSA value of the full-shape term, or None
    relu: bool
    keep: bool = False
    """Whether the float value quantized (the last inner op's) is also read by other ops."""


_PLANS: "weakref.WeakKeyDictionary[Operation, tuple[Any, RequantPlan | None]]" = weakref.WeakKeyDictionary()


def _defined_before(value: Any, op: Operation) -> bool:
    """Whether ``value`` is computed before ``op`` runs (a block argument, or an op earlier in
    ``op``'s block)."""
    owner = value.owner
    block = op.parent_block()
    if not isinstance(owner, Operation):
        return owner is block
    if owner.parent_block() is not block:
        return False
    cur = op.prev_op
    while cur is not None:
        if cur is owner:
            return True
        cur = cur.prev_op
    return False


def _find_requant_plan(op: cimq.DequantizeOp) -> RequantPlan | None:
    qt = _qtype(op.input.type)
    if qt.width != 32 or qt.zp or (qt.per_channel and qt.channel_axis % 4 != 1):
        return None
    shape = op.output.type.get_shape()  # type: ignore[union-attr]
    if len(shape) != 4:
        return None
    slots: dict[str, Any] = {"mul": None, "add": None, "res": None}
    order = ["mul", "add", "res", "relu"]
    inner: list[Operation] = []
    relu = False
    value = op.output
    while True:
        uses = list(value.uses)
        quants = [u.operation for u in uses if isinstance(u.operation, cimq.QuantizeOp)]
        if len(uses) > 1 and len(quants) == 1 and inner:  # the float value is read elsewhere too
            uses = [u for u in uses if u.operation is quants[0]]
            keep = True
        elif len(uses) != 1:
            return None
        else:
            keep = False
        user, index = uses[0].operation, uses[0].index
        if isinstance(user, cimq.QuantizeOp):
            if _qtype(user.output.type).per_channel:
                return None
            return RequantPlan(op, user, tuple(inner), slots["mul"], slots["add"], slots["res"], relu, keep)
        if keep:
            return None
        if isinstance(user, (cimq.MulOp, cimq.AddOp)):
            other = user.operands[1 - index]
            if other is value or not (isinstance(other.owner, cimq.ConstOp) or _defined_before(other, op)):
                return None
            full = list(other.type.get_shape()) == list(shape)  # type: ignore[union-attr]
            kind = ("res" if full else "add") if isinstance(user, cimq.AddOp) else "mul"
            if kind not in order or (kind == "mul" and full):
                return None
            order = order[order.index(kind) + 1 :]
            slots[kind] = other
        elif isinstance(user, cimq.ReluOp):
            if "relu" not in order:
                return None
            order = []
            relu = True
        else:
            return None
        inner.append(user)
        value = user.results[0]


def _uses_key(ops: Sequence[Operation]) -> tuple[Any, ...]:
    return tuple(
        (id(op), tuple((id(u.operation), u.index) for u in op.results[0].uses),
         tuple(id(v) for v in op.operands))
        for op in ops
    )


def requant_plan(op: cimq.DequantizeOp) -> RequantPlan | None:
    """The requantize chain that ``op`` heads, if any. Cached per op, and used again only while
    the uses and operands of every op of the chain are unchanged."""
    hit = _PLANS.get(op)
    if hit is not None:
        key, plan = hit
        if key == _uses_key([op, *(plan.inner if plan is not None else ())]):
            return plan
    plan = _find_requant_plan(op)
    _PLANS[op] = (_uses_key([op, *(plan.inner if plan is not None else ())]), plan)
    return plan


def _per_channel(arr: Any, c: int) -> np.ndarray | None:
    """``arr`` as a float32 vector ``[C]`` if it broadcasts as ``[1, C, 1, 1]`` (or a scalar)."""
    arr = np.asarray(arr)
    if arr.dtype != np.float32 or arr.ndim > 4:
        return None
    shape = (1,) * (4 - arr.ndim) + arr.shape
    if shape[0] != 1 or shape[2] != 1 or shape[3] != 1 or shape[1] not in (1, c):
        return None
    return np.ascontiguousarray(np.broadcast_to(arr.reshape(-1), (c,)))


def _operand(value: Any, interp: Interpreter) -> Any:
    """A chain operand: constants are evaluated here (they may come later in the block)."""
    if isinstance(value.owner, cimq.ConstOp):
        return cached_const(value.owner)
    return interp.get_values((value,))[0]


def _run_requant_chain(
    plan: RequantPlan, acc: np.ndarray, interp: Interpreter
) -> tuple[np.ndarray, np.ndarray | None] | None:
    """The quantized result of ``plan`` on ``acc`` (and the float value it quantized when
    ``plan.keep``), or None where the operands do not fit the kernel (the ops then run one by one)."""
    from cimc.exec.kernels import requant_chain

    acc = np.asarray(acc)
    if acc.ndim != 4 or acc.dtype.kind not in "iu":
        return None
    c = acc.shape[1]
    qt_in = _qtype(plan.head.input.type)
    dscale = np.ascontiguousarray(np.broadcast_to(sem.scale_array(qt_in, 4).reshape(-1), (c,)), dtype=np.float64)
    ones = np.zeros(c, dtype=np.float32)
    mul = add = ones
    if plan.mul is not None:
        mul = _per_channel(_operand(plan.mul, interp), c)
    if plan.add is not None:
        add = _per_channel(_operand(plan.add, interp), c)
    res = np.zeros((1, 1, 1, 1), dtype=np.float32)
    if plan.res is not None:
        res = np.asarray(_operand(plan.res, interp))
        if res.dtype != np.float32 or res.shape != acc.shape:
            return None
    if mul is None or add is None:
        return None
    qt = _qtype(plan.tail.output.type)
    qscale = np.float32(sem.scale_array(qt, 4).astype(np.float32).reshape(()))
    t = np.empty(acc.shape, dtype=np.float32)
    y = np.empty(acc.shape if plan.keep else (1, 1, 1, 1), dtype=np.float32)
    requant_chain(acc, dscale, mul, add, res, plan.mul is not None, plan.add is not None,
                  plan.res is not None, plan.relu, qscale, plan.keep, y, t)
    np.clip(t, np.float32(qt.qmin - qt.zp), np.float32(qt.qmax - qt.zp), out=t)  # as sem.quantize
    q = t.astype(np.int64)
    if qt.zp:
        q += qt.zp
    return q, (y if plan.keep else None)


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


#: ``cimq.const`` values by op, with the value and type attributes they were made from (a changed
#: op is recomputed); read-only arrays, dropped with the op.
_CONSTS: "weakref.WeakKeyDictionary[Operation, tuple[Any, Any, np.ndarray]]" = weakref.WeakKeyDictionary()


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
        self._skip: dict[Operation, np.ndarray | None] = {}  # fused chain ops -> their value
        self._fused: dict[Operation, np.ndarray] = {}
        bound = column_value_max(hw.rows, hw.cell_bits, hw.dac_bits)
        self.fdtype = np.float32 if bound < _F32_EXACT else np.float64

    @impl(cimq.ConstOp)
    def run_cimq_const(self, interp: Interpreter, op: cimq.ConstOp, args: tuple[Any, ...]):
        """As :func:`cimc.exec.cimq_exec.const_value`, but a constant used only as static
        crossbar weights is returned as stored (int8, read-only): no int64 copy per run; every
        value is made once per op and reused by later runs (:data:`_CONSTS`)."""
        return (cached_const(op),)

    # ---------------------------------------------------------------- fused host chains

    @impl(cimq.DequantizeOp)
    def run_dequantize(self, interp: Interpreter, op: cimq.DequantizeOp, args: tuple[Any, ...]):
        """A 32-bit dequantize that heads a requantize chain (:func:`requant_plan`) runs the
        whole chain in one pass (:func:`cimc.exec.kernels.requant_chain`); the chain's other
        ops then pass their precomputed values on. Otherwise as in :mod:`cimq_exec`."""
        plan = requant_plan(op)
        if plan is not None:
            done = _run_requant_chain(plan, args[0], interp)
            if done is not None:
                q, y = done
                for inner in plan.inner:
                    self._skip[inner] = None
                if plan.keep:
                    self._skip[plan.inner[-1]] = y
                self._fused[plan.tail] = q
                return (None,)
        return (sem.dequantize(args[0], _qtype(op.input.type)),)

    def _chain_or(self, op: Operation, fallback: Callable[[], Any]) -> tuple[Any, ...]:
        if op in self._skip:
            return (self._skip.pop(op),)
        return (fallback(),)

    @impl(cimq.MulOp)
    def run_mul(self, interp: Interpreter, op: cimq.MulOp, args: tuple[Any, ...]):
        return self._chain_or(op, lambda: (args[0] * args[1]).astype(np.float32, copy=False))

    @impl(cimq.AddOp)
    def run_add(self, interp: Interpreter, op: cimq.AddOp, args: tuple[Any, ...]):
        return self._chain_or(op, lambda: (args[0] + args[1]).astype(np.float32, copy=False))

    @impl(cimq.ReluOp)
    def run_relu(self, interp: Interpreter, op: cimq.ReluOp, args: tuple[Any, ...]):
        return self._chain_or(op, lambda: np.maximum(args[0], np.float32(0)))

    @impl(cimq.QuantizeOp)
    def run_quantize(self, interp: Interpreter, op: cimq.QuantizeOp, args: tuple[Any, ...]):
        q = self._fused.pop(op, None)
        if q is not None:
            return (q,)
        return (sem.quantize(args[0], _qtype(op.output.type)),)

    # ---------------------------------------------------------------- xbar-mm level

    @impl(xbar.Im2ColOp)
    def run_im2col(self, interp: Interpreter, op: xbar.Im2ColOp, args: tuple[Any, ...]):
        """Grouped patches ``[B, G, Ho*Wo, Cg*kh*kw]`` (:func:`cimc.exec.kernels.im2col_grouped`,
        a transposed view). When only crossbar layers read them they are float32 (exact: the
        integers are below 2^24, checked), the dtype the fast path multiplies in and that the
        bit-serial path's ``xbar.offset`` converts from exactly."""
        from cimc.exec.kernels import im2col_grouped

        dtype = np.float32 if _feeds_layers_only(op) else None
        return (
            im2col_grouped(
                args[0], op.groups.value.data, cimq.ints(op.kernel), cimq.ints(op.strides),  # type: ignore[arg-type]
                cimq.ints(op.pads), cimq.ints(op.dilations), dtype,  # type: ignore[arg-type]
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
        return (fast_matmul(x, w, _static_key(op)),)

    @impl(xbar.MatMulDynOp)
    def run_matmul_dyn(self, interp: Interpreter, op: xbar.MatMulDynOp, args: tuple[Any, ...]):
        x, r = args
        self._finish(self._formula_layer(op, x))
        return (fast_matmul(x, r),)

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
            y = fast_matmul(x, w, None if prog.dynamic else _static_key(op))
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
        t = op.output.type
        if isinstance(t, xbar.CellsType) and isinstance(op.value, cimq.BlobAttr):
            return (self._float_cells(op.value.digest.data, t),)
        arr = _const_array(op.value)
        if isinstance(t, xbar.CellsType):
            return (arr.reshape(t.repeats.data, t.rows.data, t.cols.data),)
        assert isinstance(t, TensorType)
        return (np.asarray(arr, dtype=np.int64).reshape(t.get_shape()),)

    def _float_cells(self, digest: str, t: xbar.CellsType) -> np.ndarray:
        """The static cells as the float dtype the tiles are multiplied in, cached across runs
        (:data:`_F32_WEIGHTS`' byte bound): programming a tile is then a slice, not a conversion."""
        key = (digest, (t.repeats.data, t.rows.data, t.cols.data), np.dtype(self.fdtype).str)
        hit = _F32_WEIGHTS.get(key)  # type: ignore[arg-type]
        if hit is not None:
            return hit[0]
        cells = STORE.get(digest).reshape(key[1]).astype(self.fdtype)
        cells.setflags(write=False)
        used = sum(v[0].nbytes for v in _F32_WEIGHTS.values() if v is not None)
        while _F32_WEIGHTS and used + cells.nbytes > _F32_WEIGHTS_BYTES:
            old = _F32_WEIGHTS.pop(next(iter(_F32_WEIGHTS)))
            used -= old[0].nbytes if old is not None else 0
        if cells.nbytes <= _F32_WEIGHTS_BYTES:
            _F32_WEIGHTS[key] = (cells, cells)  # type: ignore[index]
        return cells

    @impl(xbar.MapDynOp)
    def run_map_dyn(self, interp: Interpreter, op: xbar.MapDynOp, args: tuple[Any, ...]):
        r = np.asarray(args[0], dtype=np.int64)  # [B, H, n, m]
        b, h = r.shape[:2]
        wb, s = op.w_bits.value.data, op.slices.value.data
        cells_t = op.cells.type
        assert isinstance(cells_t, xbar.CellsType)
        c = cells_t.cell_bits.data
        parts = [map_cells_stack(r[bi], wb, c, op.mapping.data, s, where="xbar.map_dyn") for bi in range(b)]
        g_all = np.stack([g for g, _ in parts])
        recomb = parts[0][1]
        offset = (1 << (op.a_bits.value.data - 1)) if op.a_signed.value.data else 0
        return g_all, recomb, offset * r.sum(axis=2)

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
        return (np.ascontiguousarray(tile, dtype=self.fdtype),)  # a copy; no conversion if cached

    def run_chunks_fused(
        self, interp: Interpreter, loop: scf.ForOp, plane_op: xbar.PlaneOp, shift_op: xbar.ShiftAddOp,
        n_chunks: int,
    ) -> None:
        """The ``chunks`` loop of one tile (``plane; cycle; shift_add`` per DAC chunk) in one go.

        All chunk planes of all vectors are stacked into one matrix and multiplied with the
        tile in ONE BLAS call; a numba kernel then converts every (chunk, vector, column)
        value on its own (the ADC clip and saturation count of :meth:`run_cycle`) and
        shift-adds chunk ``i`` by ``i * d`` (:meth:`run_shift_add`). Results and counters are
        those of running the loop body ``n_chunks`` times (tested against the unfused loop).
        """
        from cimc.exec.kernels import _PLANE_BYTES, _adc_shift_add, _build_planes

        xu, h, rt = interp.get_values(plane_op.operands[:3])
        (tile,) = interp.get_values((loop.body.block.ops.first.next_op.operands[0],))  # type: ignore[union-attr]
        buf, h2, ct = interp.get_values(shift_op.operands[:3])
        t = plane_op.plane.type
        assert isinstance(t, xbar.PlaneType)
        n = xu.shape[-1]
        phys = 2 * n if plane_op.dual is not None else n
        src = np.arange(rt * t.rows.data, min((rt + 1) * t.rows.data, phys), dtype=np.int64) % n
        d = t.dac_bits.data
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
        itemsize = tile.dtype.itemsize
        block = max(1, _PLANE_BYTES // (n_chunks * max(rows, cols) * itemsize))
        sat = 0
        for b, xv, g, out in groups:
            n_vec = xv.shape[0]
            for v0 in range(0, n_vec, block):
                v1 = min(v0 + block, n_vec)
                key = (id(xu), h, rt, b, v0)
                planes = self._planes.get(key)
                if planes is None:
                    if not any(k[:3] == key[:3] for k in self._planes):
                        self._planes.clear()  # keep the planes of one (repeat, row tile) only
                    xb = np.ascontiguousarray(xv[v0:v1], dtype=np.int64)
                    planes = np.empty((n_chunks * (v1 - v0), len(src)), dtype=tile.dtype)
                    _build_planes(xb, src, 0, len(src), n_chunks, d, planes)
                    if v0 == 0 and v1 == n_vec:  # reused by the next column tiles
                        self._planes[key] = planes
                part = planes @ g
                sat += _adc_shift_add(part, v1 - v0, n_chunks, d, lo, hi, out, v0, c0)
        c = self._counters()
        vec = b_sz * p_sz * n_chunks
        c.executes += vec
        c.adc_conversions += vec * cols
        c.dac_activations += vec * rows
        c.adc_saturations += int(sat)

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


def fusable_chunks(loop: scf.ForOp) -> tuple[xbar.PlaneOp, xbar.ShiftAddOp] | None:
    """``(plane, shift_add)`` if ``loop`` is a tile's canonical chunk loop (as built by
    ``xbar-tile``: ``plane(iv); cycle(tile, plane); shift_add(cycle, iv); yield``), else None."""
    from cimc.passes.xbar_tile import LOOP_ATTR

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
class _FusedLoops(InterpreterFunctions):
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
    fuse: bool = True,
) -> RunResult:
    """Run ``@main`` of an ``xbar-mm``/``xbar`` level module; counters in the result's report.

    ``fast``: None = exact one-step layers where the ADC is lossless, else bit-serial; True =
    always exact (an error on a lossy ADC); False = always bit-serial. ``record_layers`` adds the
    crossbar layers' outputs (``report["_layer_outputs"]``, not JSON) for comparisons.
    ``fuse=False`` interprets every chunk loop op by op (one BLAS call per plane) instead of
    running each tile's chunk loop as one stacked BLAS call; both are bit-identical.
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
    interp.register_implementations(FuncFunctions())
    interp.register_implementations(ArithFunctions())
    interp.register_implementations(ScfFunctions())
    interp.register_implementations(CimqFunctions())
    interp.register_implementations(fns, override=True)  # cimq.const: see run_cimq_const
    if fuse:
        interp.register_implementations(_FusedLoops(fns), override=True)
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
    heads = ("writes", "cells written", "cycles", "ADC conversions", "ADC saturations", "DAC activations")
    table = Table(title=f"crossbar counters (batch {report['batch']})")
    table.add_column("layer")
    for head in heads:
        table.add_column(head, justify="right")
    table.add_column("latency us", justify="right")
    for row in report["layers"]:
        table.add_row(row["name"], *(f"{row[k]:,}" for k in keys), f"{row['latency_us']:,.1f}")
    tot = report["total"]
    table.add_row("total", *(f"{tot[k]:,}" for k in keys), f"{tot['latency_us']:,.1f}", style="bold")
    return table


def compare_lossy(
    module: ModuleOp, inputs: Sequence[np.ndarray], hw: Hardware, *, fast: bool | None = None
) -> dict[str, Any]:
    """Run ``module`` (an ``xbar`` level program) with ``hw``'s ADC and with a lossless one.

    Returns per-layer saturations and output errors of the lossy run against the lossless run,
    and the error of the model outputs (max / mean absolute difference, fraction changed), the
    outputs of both runs and the lossy run's counters report (``lossy_report``). ``fast`` is
    passed to the lossless run (and to the lossy one where its ADC is lossless after all).
    """
    import dataclasses

    exact = run_xbar(module, inputs, hw=dataclasses.replace(hw, adc_bits=None), record_layers=True,
                     fast=fast)
    lossy = run_xbar(module, inputs, hw=hw, fast=False if not hw.lossless else fast, record_layers=True)
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
        "lossy_report": {k: v for k, v in lossy.report.items() if k != "_layer_outputs"},
    }
