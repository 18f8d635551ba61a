"""``xbar-tile``: every ``xbar.matmul``/``xbar.matmul_dyn`` becomes an ``xbar.layer`` holding its
explicit bit-serial crossbar program, with the loops in the IR (not unrolled)::

    scf.for %h (repeats) { scf.for %rt (row tiles) { scf.for %ct (column tiles) {
      %t = xbar.program %g[%h, %rt, %ct]                     // one write
      scf.for %i (DAC chunks) { plane; cycle; shift_add }    // one cycle per vector
    } } }

Shapes, slices, tiles and chunks come from the target model
(:func:`cimc.target.geometry.layer_geometry`); the weight is not touched: an ``xbar.map`` op says
how it is sliced and mapped (:mod:`cimc.target.mapping`), and the cells are built when the program
first needs them (the executor), never for counting. Options default to the paper's hardware; the
pipeline fills them from the :class:`cimc.target.hw.Hardware` given to ``lower``. The program's
trip counts are exactly the paper's ``X = row_tiles * col_tiles`` writes and ``P * X * ceil(a/d)``
cycles per repeat (``S = ceil(w/c)`` slices, or ``ceil((w-1)/c)`` after ``xbar-narrow-slices``).

Zero points: the streamed input's ``zx`` is removed by the recombination's correction
(``xbar.map``'s ``a_zp``); a stored operand's ``zw`` by ``xbar.zp_correct`` after it (the
crossbar holds the operand's integers as they are; an unsigned operand at its own width in
unsigned cells, ``xbar.map``'s ``w_unsigned``).

The ADC resolution is not compiled in: the executor applies the hardware's ADC at run time, so
one program can be run lossless and lossy.

:func:`build_layer` takes a :class:`TilePlan`: what the ``xbar-opt`` passes changed about a layer
(narrow slicing, block-diagonal repeats, kept columns, the list of programmed tiles, the shared
array group, amortised writes, skipped zero planes). :func:`read_plan` reads it back off a built
layer, so a pass that rebuilds a layer keeps what the passes before it did. With a tile list the
three tile loops become one loop over the listed tiles (``xbar.tile_at``)::

    scf.for %k (tiles) { %h, %rt, %ct = xbar.tile_at %k {tiles = [...]}; program; chunks }
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from xdsl.builder import ImplicitBuilder
from xdsl.context import Context
from xdsl.dialects import arith, scf
from xdsl.dialects.builtin import (
    IndexType,
    IntegerAttr,
    ModuleOp,
    StringAttr,
    TensorType,
    UnitAttr,
    i32,
    i64,
)
from xdsl.ir import Block, Operation, Region, SSAValue
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import (
    PatternRewriter,
    PatternRewriteWalker,
    RewritePattern,
)

from cimc.analysis import LOOP_ATTR
from cimc.dialects import cimq, xbar
from cimc.errors import CimcError, HardwareError, UnsupportedModelError
from cimc.passes.options import check_choice, check_int
from cimc.target.geometry import LayerDesc, LayerGeometry, layer_geometry, slices
from cimc.target.hw import MAPPINGS, Hardware

def crossbar(rows: int, cols: int, cell_bits: int, dac_bits: int, mapping: str) -> Hardware:
    """The crossbar a program is compiled for (timings and ADC are run-time matters)."""
    try:
        return Hardware(rows=rows, cols=cols, cell_bits=cell_bits, dac_bits=dac_bits, mapping=mapping)
    except HardwareError as exc:
        raise HardwareError(f"xbar-tile: {exc.message}") from None


def _quant(value: SSAValue) -> cimq.QuantType:
    t = value.type
    assert isinstance(t, TensorType) and isinstance(t.element_type, cimq.QuantType)
    return t.element_type


_IV_HINT = re.compile(r"[^A-Za-z0-9_]")
_IV_NAMES = {"repeats": "h", "row_tiles": "rt", "col_tiles": "ct", "chunks": "i", "tiles": "k"}


@dataclass(frozen=True)
class TilePlan:
    """What the ``xbar-opt`` passes decided about a layer (the paper's program: the defaults)."""

    narrow: bool = False
    """``ceil((w-1)/c)`` slices (``xbar-narrow-slices``)."""
    blocks: int = 1
    """Repeats per block-diagonal matrix (``xbar-pack``)."""
    columns: tuple[int, ...] | None = None
    """Physical columns kept (``xbar-skip-zero-weights``); None: all."""
    tiles: tuple[tuple[int, int, int], ...] | None = None
    """Programmed tiles ``(h, rt, ct)`` (``xbar-skip-zero-weights``); None: every tile."""
    program: dict = field(default_factory=dict, hash=False, compare=False)
    """Properties of ``xbar.program`` (``group``, ``offset``, ``shared``, ``amortised``)."""
    skip_zero: bool = False
    """Cycles skip zero planes (``xbar-skip-zero-planes``)."""


def read_plan(layer: xbar.LayerOp) -> TilePlan:
    """The plan a built layer was built with (see :class:`TilePlan`)."""
    w, c = layer.value("w_bits"), layer.value("cell_bits")
    narrow = layer.value("slices") != slices(w, c)
    columns = tiles = None
    program: dict = {}
    skip = False
    for op in layer.body.walk():
        if isinstance(op, xbar.MapOp) and op.columns is not None:
            columns = cimq.ints(op.columns)
        elif isinstance(op, xbar.TileAtOp):
            flat = cimq.ints(op.tiles)
            tiles = tuple(tuple(flat[i : i + 3]) for i in range(0, len(flat), 3))
        elif isinstance(op, xbar.ProgramOp):
            program = {k: v for k, v in op.properties.items() if k in xbar.PROGRAM_PLAN}
        elif isinstance(op, xbar.CycleOp):
            skip = op.skip_zero is not None
    return TilePlan(narrow, max(layer.value("blocks"), 1), columns, tiles, program, skip)  # type: ignore[arg-type]


def _loop(lb: SSAValue, ub: SSAValue, step: SSAValue, role: str, body) -> scf.ForOp:
    block = Block(arg_types=[IndexType()])
    block.args[0].name_hint = _IV_NAMES[role]
    with ImplicitBuilder(block):
        body(block.args[0])
        scf.YieldOp()
    loop = scf.ForOp(lb, ub, step, [], block)
    loop.attributes[LOOP_ATTR] = StringAttr(role)
    return loop


def build_layer(
    x: SSAValue,
    w: SSAValue,
    *,
    name: str,
    kind: str,
    w_bits: int,
    a_bits: int,
    dynamic: bool,
    hw: Hardware,
    plan: TilePlan = TilePlan(),
) -> xbar.LayerOp:
    """The ``xbar.layer`` computing ``x [B, H, P, n] @ w`` on crossbars of ``hw`` per ``plan``."""
    xq = _quant(x)
    xs = list(x.type.get_shape())  # type: ignore[union-attr]
    ws = list(w.type.get_shape())  # type: ignore[union-attr]
    _, h, p, n = xs
    m = ws[-1]
    k = plan.blocks
    try:
        geo = layer_geometry(LayerDesc(name, m, n, p, h, kind), w_bits, a_bits, hw, narrow=plan.narrow,
                             blocks=k, kept_cols=None if plan.columns is None else len(plan.columns),
                             tiles=plan.tiles)
    except CimcError as exc:
        raise UnsupportedModelError(exc.message) from None
    signed = xq.is_signed
    wq = _quant(w)
    hp = geo.repeats
    cells_t = xbar.CellsType(hp, geo.phys_rows, geo.phys_cols, hw.cell_bits)
    corr_t = TensorType(i64, [ws[0], hp, k * m] if dynamic else [hp, k * m])
    out_t = TensorType(i32, [xs[0], h, p, m])

    block = Block(arg_types=[x.type, w.type])
    xa, wa = block.args
    xa.name_hint, wa.name_hint = "x", "w"
    with ImplicitBuilder(block):
        map_props = {
            "w_bits": xbar.i64_attr(w_bits),
            "a_bits": xbar.i64_attr(a_bits),
            "a_signed": xbar.i64_attr(int(signed)),
            "slices": xbar.i64_attr(geo.slices),
            "mapping": StringAttr(hw.mapping),
        }
        if k > 1:
            map_props["blocks"] = xbar.i64_attr(k)
        if xq.zp:
            map_props["a_zp"] = xbar.i64_attr(xq.zp)
        if xbar.unsigned_cells(wq, w_bits):
            map_props["w_unsigned"] = UnitAttr()
        if plan.columns is not None:
            map_props["columns"] = cimq.i64_array(plan.columns)
        mapped = xbar.MapOp.create(
            operands=[wa],
            result_types=[cells_t, TensorType(i64, [geo.phys_cols, 2]), corr_t],
            properties=map_props,
        )
        cells, recomb, corr = mapped.results
        cells.name_hint, recomb.name_hint, corr.name_hint = "cells", "recomb", "corr"
        xu = xbar.OffsetOp.create(
            operands=[xa],
            result_types=[TensorType(i32, xs)],
            properties={"a_bits": xbar.i64_attr(a_bits), **({"signed": UnitAttr()} if signed else {})},
        ).output
        xu.name_hint = "xu"
        if k > 1:
            xu = xbar.PackBlocksOp.create(operands=[xu], result_types=[TensorType(i32, [xs[0], hp, p, k * n])],
                                          properties={"blocks": xbar.i64_attr(k)}).output
            xu.name_hint = "xp"
        buf = xbar.AllocOp.create(result_types=[xbar.BufType(hp, geo.phys_cols)]).output
        buf.name_hint = "buf"
        _build_loops(geo, hw, cells, xu, buf, plan)
        acc_t = out_t if k == 1 else TensorType(i32, [xs[0], hp, p, k * m])
        acc = xbar.RecombineOp.create(operands=[buf, recomb, corr], result_types=[acc_t]).output
        acc.name_hint = "acc"
        if k > 1:
            acc = xbar.UnpackBlocksOp.create(operands=[acc], result_types=[out_t],
                                             properties={"blocks": xbar.i64_attr(k)}).output
            acc.name_hint = "y"
        if wq.zp:
            acc = xbar.ZpCorrectOp.create(operands=[acc, xa], result_types=[out_t],
                                          properties={"w_zp": xbar.i64_attr(wq.zp)}).output
            acc.name_hint = "yz"
        xbar.YieldOp.create(operands=[acc])

    props = {
        "layer": StringAttr(name),
        "kind": StringAttr(kind),
        "mapping": StringAttr(hw.mapping),
        **{
            key: xbar.i64_attr(v)
            for key, v in dict(
                m=m, n=n, P=p, H=h, w_bits=w_bits, a_bits=a_bits, a_signed=int(signed),
                slices=geo.slices, row_tiles=geo.row_tiles, col_tiles=geo.col_tiles,
                chunks=geo.chunks, cell_bits=hw.cell_bits, dac_bits=hw.dac_bits,
            ).items()
        },
    }
    if k > 1:
        props["blocks"] = xbar.i64_attr(k)
    if dynamic:
        props["dynamic"] = UnitAttr()
    layer = xbar.LayerOp.create(
        operands=[x, w], result_types=[out_t], properties=props, regions=[Region(block)]
    )
    layer.output.name_hint = _IV_HINT.sub("_", name) + "_acc"
    return layer


def _build_loops(geo: LayerGeometry, hw: Hardware, cells: SSAValue, xu: SSAValue, buf: SSAValue,
                 plan: TilePlan) -> None:
    """``scf.for`` repeats x row tiles x column tiles (or one loop over the listed tiles)
    { program; scf.for chunks { plane; cycle; shift_add } }, at the current insertion point."""
    consts: dict[int, SSAValue] = {}

    def idx(v: int) -> SSAValue:
        if v not in consts:
            consts[v] = arith.ConstantOp(IntegerAttr(v, IndexType())).result
            consts[v].name_hint = f"c{v}"
        return consts[v]

    zero, one = idx(0), idx(1)
    tile_t = xbar.TileType(hw.rows, hw.cols, hw.cell_bits)
    plane_t = xbar.PlaneType(hw.rows, hw.dac_bits)
    cols_t = xbar.ColumnsType(hw.cols)
    n_chunks = idx(geo.chunks)

    def tile_body(hv, rtv, ctv):
        tile = xbar.ProgramOp.create(operands=[cells, hv, rtv, ctv], result_types=[tile_t],
                                     properties=dict(plan.program)).tile
        tile.name_hint = "tile"

        def body(iv):
            plane = xbar.PlaneOp.create(
                operands=[xu, hv, rtv, iv],
                result_types=[plane_t],
                properties={"dual": UnitAttr()} if hw.mapping == "dr" else {},
            ).plane
            plane.name_hint = "plane"
            col = xbar.CycleOp.create(operands=[tile, plane], result_types=[cols_t],
                                      properties={"skip_zero": UnitAttr()} if plan.skip_zero else {}).output
            col.name_hint = "adc"
            xbar.ShiftAddOp.create(
                operands=[buf, hv, ctv, col, iv], properties={"dac_bits": xbar.i64_attr(hw.dac_bits)}
            )

        _loop(zero, n_chunks, one, "chunks", body)

    if plan.tiles is not None:
        def listed(kv):
            at = xbar.TileAtOp.create(operands=[kv], result_types=[IndexType()] * 3,
                                      properties={"tiles": cimq.i64_array([v for t in plan.tiles for v in t])})
            for res, hint in zip(at.results, ("h", "rt", "ct")):
                res.name_hint = hint
            tile_body(*at.results)

        _loop(zero, idx(len(plan.tiles)), one, "tiles", listed)
        return
    bounds = (idx(geo.repeats), idx(geo.row_tiles), idx(geo.col_tiles))
    _loop(
        zero, bounds[0], one, "repeats",
        lambda hv: _loop(zero, bounds[1], one, "row_tiles", lambda rtv: _loop(
            zero, bounds[2], one, "col_tiles", lambda ctv: tile_body(hv, rtv, ctv))),
    )


def layer_crossbar(layer: xbar.LayerOp) -> Hardware:
    """The crossbar a layer was compiled for (from its tile type and properties)."""
    for op in layer.body.walk():
        if isinstance(op, xbar.ProgramOp):
            t = op.tile.type
            assert isinstance(t, xbar.TileType)
            return crossbar(t.rows.data, t.cols.data, layer.value("cell_bits"),
                            layer.value("dac_bits"), layer.mapping.data)
    raise UnsupportedModelError(f"layer '{layer.layer.data}' has no xbar.program")


@dataclass
class TileProducts(RewritePattern):
    hw: Hardware

    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter) -> None:
        if not isinstance(op, (xbar.MatMulOp, xbar.MatMulDynOp)):
            return
        layer = build_layer(
            op.lhs,
            op.rhs,
            name=op.layer.data,
            kind=op.kind.data,
            w_bits=op.w_bits.value.data,
            a_bits=op.a_bits.value.data,
            dynamic=isinstance(op, xbar.MatMulDynOp),
            hw=self.hw,
            plan=TilePlan(narrow=op.narrow_slices is not None),
        )
        rewriter.replace(op, [layer])


@dataclass(frozen=True)
class XbarTilePass(ModulePass):
    """Lower layer-level products to tiled, bit-serial crossbar programs."""

    name = "xbar-tile"

    rows: int = 256
    cols: int = 256
    cell_bits: int = 4
    dac_bits: int = 1
    mapping: str = "dc"

    def __post_init__(self) -> None:
        check_int(self.name, "rows", self.rows, 1)
        check_int(self.name, "cols", self.cols, 1)
        check_int(self.name, "cell-bits", self.cell_bits, 1, 8)
        check_int(self.name, "dac-bits", self.dac_bits, 1, 8)
        check_choice(self.name, "mapping", self.mapping, MAPPINGS)

    @staticmethod
    def from_hardware(hw: Hardware) -> XbarTilePass:
        return XbarTilePass(hw.rows, hw.cols, hw.cell_bits, hw.dac_bits, hw.mapping)

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        hw = crossbar(self.rows, self.cols, self.cell_bits, self.dac_bits, self.mapping)
        PatternRewriteWalker(TileProducts(hw), apply_recursively=False).rewrite_module(op)
