"""Program analysis: what a compiled ``xbar`` program does, read off the IR without running it.

Host work is read the same way: :func:`host_elements` counts the elements the host compute ops
of ``@main`` produce (requantize, activations, pools, softmax, ...; layout ops, constants and the
crossbar layers are not host compute), from their result types (:func:`is_host_compute`).

:func:`analyse_layer` reads one ``xbar.layer``: its descriptor and bits from the properties, the
physical matrix from its cells type, and the repeats, row tiles, column tiles and chunks from the
trip counts of its loops, checked against the tile-write and cycle issues of the program. The
counters then follow from the one closed form (:func:`cimc.target.counters.layer_counters`). No
weight is read, let alone mapped to cells: ``cimc report`` and the search's cost use this.

May import: xDSL, :mod:`cimc.dialects`, :mod:`cimc.target`, :mod:`cimc.errors`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from xdsl.dialects import arith, scf
from xdsl.dialects.builtin import ModuleOp, StringAttr, TensorType
from xdsl.ir import Operation

from cimc.dialects import cimq, xbar
from cimc.errors import ExecutionError, UnsupportedModelError
from cimc.target.counters import Counters, layer_counters, layer_tiles, writes_per_run
from cimc.target.geometry import LayerDesc, LayerGeometry
from cimc.target.hw import Hardware
from cimc.target.schedule import SchedLayer, SchedTile

#: Attribute naming the role of each loop of a layer program (``xbar-tile`` sets it).
LOOP_ATTR = "xbar.loop"
LOOP_ROLES = ("repeats", "row_tiles", "col_tiles", "chunks", "tiles")


def trip_count(loop: scf.ForOp) -> int:
    """The trip count of an ``scf.for`` with constant bounds."""
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
    """A compiled ``xbar.layer``: its geometry as the program has it, and how it streams."""

    geometry: LayerGeometry
    a_signed: bool
    dynamic: bool
    amortised: bool = False
    """Static tiles programmed once per run (``xbar-batch-amortise``), not once per inference."""
    skip_zero: bool = False
    """Cycles whose input plane is zero on every row of the tile are skipped at run time."""
    group: str | None = None
    """The shared array its one tile is placed in (``xbar-pack``)."""
    shared: bool = False
    """That array is programmed by an earlier layer's write: no write of its own."""
    w_zp: int = 0
    """The stored operand's zero point, corrected digitally (``xbar.zp_correct``); 0: none."""

    def __getattr__(self, name: str) -> Any:  # descriptor and geometry fields read through
        if name in ("geometry", "a_signed", "dynamic", "amortised", "skip_zero", "group", "shared", "w_zp"):
            raise AttributeError(name)
        for part in (self.geometry, self.geometry.desc):
            if hasattr(part, name):
                return getattr(part, name)
        raise AttributeError(f"LayerProgram has no attribute '{name}'")

    @property
    def writes(self) -> int:
        """Tile writes per inference (batch 1)."""
        return self.counters(1).writes

    @property
    def executes(self) -> int:
        """Crossbar cycles per inference (batch 1)."""
        return self.counters(1).executes

    def counters(self, batch: int, hw: Hardware | None = None) -> Counters:
        """The counters of running ``batch`` inferences on ``hw`` (no saturations: lossless; no
        skipped cycles: the worst case of run-time skipping)."""
        return layer_counters(self.geometry, hw, batch=batch, dynamic=self.dynamic,
                              amortised=self.amortised, shared=self.shared, zero_point=bool(self.w_zp))


def _loop_trips(layer: xbar.LayerOp) -> dict[str, int]:
    trips: dict[str, int] = {}
    for op in layer.body.walk():
        role = op.attributes.get(LOOP_ATTR)
        if isinstance(op, scf.ForOp) and isinstance(role, StringAttr):
            trips[role.data] = trip_count(op)
    return trips


@dataclass
class _Facts:
    """What the ops of a layer's program say (issue counts, types, properties)."""

    writes: int = 0
    cycles: int = 0
    cells: Any = None
    tile: Any = None
    amortised: set = field(default_factory=set)
    skip: set = field(default_factory=set)
    groups: set = field(default_factory=set)
    shared: set = field(default_factory=set)
    tile_list: tuple[tuple[int, int, int], ...] | None = None
    w_zp: int = 0


def _facts(layer: xbar.LayerOp) -> _Facts:
    f = _Facts()
    for op in layer.body.walk():
        if isinstance(op, xbar.ProgramOp):
            f.writes += issue_count(op, layer)
            f.cells, f.tile = op.cells.type, op.tile.type
            f.amortised.add(op.amortised is not None)
            f.groups.add(op.group.data if op.group is not None else None)
            f.shared.add(op.shared is not None)
        elif isinstance(op, xbar.CycleOp):
            f.cycles += issue_count(op, layer)
            f.skip.add(op.skip_zero is not None)
        elif isinstance(op, xbar.ZpCorrectOp):
            f.w_zp = op.w_zp.value.data
        elif isinstance(op, xbar.TileAtOp):
            flat = cimq.ints(op.tiles)
            f.tile_list = tuple(tuple(flat[i : i + 3]) for i in range(0, len(flat), 3))  # type: ignore[misc]
    return f


def analyse_layer(layer: xbar.LayerOp) -> LayerProgram:
    """Read a layer's geometry off its program (properties, cells type, loop trip counts)."""
    name = layer.layer.data
    f = _facts(layer)
    if not isinstance(f.cells, xbar.CellsType):
        raise UnsupportedModelError(f"layer '{name}' programs no tile")
    v = layer.value
    blocks = max(v("blocks"), 1)
    trips = _loop_trips(layer)
    desc = LayerDesc(name, v("m"), v("n"), v("P"), v("H"), layer.kind.data)
    counts = {role: trips.get(role, v(role)) for role in ("row_tiles", "col_tiles", "chunks")}
    geom = LayerGeometry(
        desc=desc, w_bits=v("w_bits"), a_bits=v("a_bits"), slices=v("slices"),
        phys_rows=f.cells.rows.data, phys_cols=f.cells.cols.data, tile_rows=f.tile.rows.data,
        tile_cols=f.tile.cols.data, row_tiles=counts["row_tiles"], col_tiles=counts["col_tiles"],
        chunks=counts["chunks"], blocks=blocks, tile_list=f.tile_list,
    )
    repeats = trips.get("repeats", geom.repeats)
    tiles = len(f.tile_list) if f.tile_list is not None else geom.repeats * geom.tiles
    if repeats != geom.repeats or f.cells.repeats.data != geom.repeats or f.writes != tiles \
            or f.cycles != f.writes * geom.chunks or trips.get("tiles", tiles) != tiles:
        raise UnsupportedModelError(
            f"layer '{name}': {f.writes} tile writes and {f.cycles} cycle issues do not match the "
            f"program's loops ({repeats} x {geom.row_tiles} x {geom.col_tiles} x {geom.chunks})"
        )
    if any(len(x) > 1 for x in (f.amortised, f.skip, f.groups, f.shared)):
        raise UnsupportedModelError(f"layer '{name}': its tiles disagree on amortised / skip_zero / group")
    if layer.is_dynamic and (True in f.amortised or f.groups != {None}):
        raise UnsupportedModelError(f"layer '{name}': run-time written tiles cannot be amortised or shared")
    if f.groups != {None} and tiles != 1:
        raise UnsupportedModelError(f"layer '{name}': only a layer of one tile can share an array")
    return LayerProgram(geom, bool(v("a_signed")), layer.is_dynamic, True in f.amortised, True in f.skip,
                        next(iter(f.groups)), True in f.shared, f.w_zp)


def module_layers(module: ModuleOp) -> list[xbar.LayerOp]:
    """The module's ``xbar.layer`` ops in program order."""
    return [op for op in module.walk() if isinstance(op, xbar.LayerOp)]


@dataclass(frozen=True)
class HostLayer:
    """A Conv / Gemm / MatMul that runs on the host, not on crossbars (the host fallback):
    zero crossbar cost. ``op`` is its ONNX op type, ``reason`` why it is on the host."""

    name: str
    op: str
    reason: str
    kind: str = "host"

    def line(self) -> str:
        """``node 'n' (op Conv): reason`` (how refusals name a node)."""
        return f"node '{self.name}' (op {self.op}): {self.reason}"


def host_layer(op: Operation) -> HostLayer | None:
    """The host layer ``op`` is (a ``cimq.host_conv`` / ``cimq.host_matmul``), else None."""
    if isinstance(op, cimq.HOST_PRODUCTS):
        return HostLayer(op.layer.data, op.op.data, op.reason.data)
    return None


def host_layers(module: ModuleOp) -> list[HostLayer]:
    """The module's host layers in program order."""
    return [h for op in module.walk() if (h := host_layer(op)) is not None]


def program_layers(module: ModuleOp) -> list[xbar.LayerOp | HostLayer]:
    """Every Conv / Gemm / MatMul of an ``xbar`` module in program order: ``xbar.layer`` ops
    (crossbar layers) and :class:`HostLayer` records (host layers)."""
    out: list[xbar.LayerOp | HostLayer] = []
    for op in module.walk():
        if isinstance(op, xbar.LayerOp):
            out.append(op)
        elif (h := host_layer(op)) is not None:
            out.append(h)
    return out


def host_warnings(module: ModuleOp, *, strict: bool = False) -> list[str]:
    """One warning line per host layer of ``module``; with ``strict`` the first host layer is a
    one-line error instead (``--strict``: every Conv / Gemm / MatMul must map to crossbars)."""
    found = host_layers(module)
    if strict and found:
        raise UnsupportedModelError(f"{found[0].line()}; it would run on the host, not on "
                                    "crossbars (--strict)")
    return [f"warning: {h.line()}; it runs on the host, not on crossbars" for h in found] + \
        batch_axis_warnings(module)


def _main(module: ModuleOp) -> Any:
    from xdsl.dialects import func

    return next((op for op in module.walk() if isinstance(op, func.FuncOp) and op.sym_name.data == "main"),
                None)


def batch_axes(module: ModuleOp) -> tuple[int, ...]:
    """Each input's batch axis as the importer recorded it (``cimq.batch_axes`` on ``@main``:
    ``--batch-axis`` or a symbolic dim off axis 0); axis 0 for every input without it."""
    main = _main(module)
    if main is None or not main.body.blocks:
        return ()
    attr = main.attributes.get("cimq.batch_axes")
    if attr is not None:
        return tuple(cimq.ints(attr))  # type: ignore[arg-type]
    return tuple(0 for _ in main.body.block.args)


def run_batch(module: ModuleOp) -> int | None:
    """The batch of one run of a module that runs at its typed batch only (``cimq.fixed_batch``):
    the size of the inputs' batch axis (:func:`batch_axes`), 1 without inputs; None for the
    others, whose batched tensors all carry the batch on axis 0."""
    main = _main(module)
    if main is None or "cimq.fixed_batch" not in main.attributes:
        return None
    args = main.body.block.args if main.body.blocks else ()
    for arg, axis in zip(args, batch_axes(module)):
        if isinstance(arg.type, TensorType) and arg.type.get_shape():
            d = arg.type.get_shape()[axis]
            return None if d < 0 else d
    return 1


def batch_axis_warnings(module: ModuleOp) -> list[str]:
    """A warning when a layer's per-inference counts could not be derived: the model moves the
    batch away from axis 0 (``cimq.fixed_batch``: one run is the inputs' batch axis, ``N``) and
    a crossbar layer's products of one run do not split into ``N`` inferences (its leading axis
    is not ``N``). That happens when an input is not batch-first (``[tokens, batch, dim]``) and
    nobody said so (``--batch-axis``): the file's shapes cannot say which axis is the batch, so
    that layer's P and H are per run."""
    main = _main(module)
    n = run_batch(module)
    if n is None or not main.body.blocks:
        return []
    odd = [layer for layer in module_layers(module)
           if isinstance(layer.results[0].type, TensorType) and layer.results[0].type.get_shape()[0] != n]
    if not odd:
        return []
    shape = next((list(a.type.get_shape()) for a in main.body.block.args if isinstance(a.type, TensorType)), [])
    axes = batch_axes(module)
    axis = axes[0] if axes else 0
    return [f"warning: layer {odd[0].properties['layer']} (and {len(odd) - 1} more): its products do "
            f"not split into the {n} inferences of axis {axis} of input shape {shape}; if that "
            "input's batch is on another axis (e.g. [tokens, batch, dim]), give it with "
            "--batch-axis AXIS (or NAME=AXIS), else its P and H are per run, not per inference"]


def compiled_geometry(module: ModuleOp) -> dict[str, Any] | None:
    """``rows, cols, cell_bits, dac_bits, mapping`` the module was tiled for (None if untiled)."""
    for layer in module_layers(module):
        for op in layer.body.walk():
            if isinstance(op, xbar.ProgramOp):
                t = op.tile.type
                assert isinstance(t, xbar.TileType)
                return dict(rows=t.rows.data, cols=t.cols.data, cell_bits=layer.value("cell_bits"),
                            dac_bits=layer.value("dac_bits"), mapping=layer.mapping.data)
    return None


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


#: cimq ops that only move or name data (no arithmetic per element), and the crossbar products.
_NOT_HOST_COMPUTE = (
    cimq.ConstOp, cimq.ReshapeOp, cimq.FlattenOp, cimq.TransposeOp, cimq.GatherOp, cimq.SliceOp,
    cimq.ConcatOp, cimq.ConvOp, cimq.MatMulOp, cimq.MatMulActOp,
)


def is_host_compute(op: Operation) -> bool:
    """Whether ``op`` is arithmetic the host does per element (a cimq op other than a constant, a
    layout op or a crossbar product; the xbar dialect's im2col / col2im / unpack are layout)."""
    return op.name.startswith("cimq.") and not isinstance(op, _NOT_HOST_COMPUTE)


def result_elements(op: Operation) -> int:
    """Elements of ``op``'s tensor results, from their types (a dynamic dimension, the batch,
    counts as 1: one inference)."""
    total = 0
    for r in op.results:
        if isinstance(r.type, TensorType):
            n = 1
            for d in r.type.get_shape():
                n *= max(d, 1)
            total += n
    return total


def reduction_length(op: Operation) -> int:
    """Multiply-adds per output element of a product on the host (``cimq.host_conv``: input
    channels per group times the kernel; ``cimq.host_matmul``: the contracted dimension), from
    the types; 0 for any other op."""
    if isinstance(op, cimq.HostConvOp):
        _, cin, kh, kw = op.weight.type.get_shape()  # type: ignore[attr-defined]
        return max(cin, 1) * max(kh, 1) * max(kw, 1)
    if isinstance(op, cimq.HostMatMulOp):
        shape = op.lhs.type.get_shape()  # type: ignore[attr-defined]
        return max(shape[-1], 1) if shape else 1
    return 0


def _main_ops(module: ModuleOp) -> list[Operation]:
    """The ops of ``@main``'s body (none without ``@main``)."""
    main = _main(module)
    return list(main.body.block.ops) if main is not None and main.body.blocks else []


def host_macs(module: ModuleOp) -> int:
    """Multiply-adds of the products on the host in ``@main`` (as typed: one inference for a
    batch-1 model): output elements times :func:`reduction_length`; the interpreter counts the
    same at run time."""
    return sum(result_elements(op) * reduction_length(op) for op in _main_ops(module))


def host_elements(module: ModuleOp) -> int:
    """Elements produced by the host compute ops of ``@main`` (as typed: one inference for a
    batch-1 model); the interpreter counts the same at run time."""
    return sum(result_elements(op) for op in _main_ops(module) if is_host_compute(op))


def schedule_layers(module: ModuleOp, hw: Hardware, *, batch: int = 1,
                    measured: dict[str, dict[tuple[int, int, int], int]] | None = None) -> list[SchedLayer]:
    """The programmed tiles of every layer of an ``xbar`` module as the chip schedule sees them
    (:func:`cimc.target.schedule.schedule`), for one run of ``batch`` inputs; a host layer is a
    layer without tiles (zero crossbar time), in its place in the program.

    Cycles per tile are the program's (the worst case: every cycle executed) unless
    ``measured[layer][(h, rt, ct)]`` gives the cycles a run of ``batch`` inputs executed on that
    tile (the interpreter's counts, skipped cycles left out: ``RunResult.tile_cycles``).
    """
    out = []
    for layer in program_layers(module):
        if isinstance(layer, HostLayer):
            out.append(SchedLayer(layer.name, ()))
            continue
        prog = analyse_layer(layer)
        geom = prog.geometry
        full = batch * geom.desc.P * geom.chunks
        writes = writes_per_run(batch, dynamic=prog.dynamic, amortised=prog.amortised)
        seen = (measured or {}).get(prog.name)
        tiles = tuple(
            SchedTile(h, rt, ct, rows_t, cols_t, seen.get((h, rt, ct), 0) if seen is not None else full, writes)
            for h, rt, ct, rows_t, cols_t in layer_tiles(geom)
        )
        out.append(SchedLayer(prog.name, tiles, static=not prog.dynamic, group=prog.group))
    return out
