"""``xbar-tile``: every ``xbar.matmul``/``xbar.matmul_dyn`` becomes an ``xbar.layer`` holding its
explicit bit-serial crossbar program, with the loops in the IR (not unrolled)::

    scf.for %h (repeats) { scf.for %rt (row tiles) { scf.for %ct (column tiles) {
      %t = xbar.program %g[%h, %rt, %ct]                     // one write
      scf.for %i (DAC chunks) { plane; cycle; shift_add }    // one cycle per vector
    } } }

Static weights are sliced and mapped here, at compile time (:func:`cimc.exec.xbar_exec.map_cells`,
the layout of :func:`cimc.exec.kernels.map_weights`), and stored as ``#cimq.blob`` constants;
dynamic operands get an ``xbar.map_dyn``. Options default to the paper's hardware; the pipeline
fills them from the :class:`cimc.hw.Hardware` given to ``lower``. The program's trip counts are
exactly the paper's ``X = row_tiles * col_tiles`` writes and ``P * X * ceil(a/d)`` cycles per
repeat (``S = ceil(w/c)`` slices, or ``ceil((w-1)/c)`` after ``xbar-narrow-slices``).

The ADC resolution is not compiled in: the executor applies the hardware's ADC at run time, so
one program can be run lossless and lossy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
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

from cimc.dialects import cimq, xbar
from cimc.errors import HardwareError, UnsupportedModelError
from cimc.passes.options import check_choice, check_int
from cimc.weights import STORE

#: Attribute naming the role of each loop of a layer program (reports read the trip counts).
LOOP_ATTR = "xbar.loop"
LOOP_ROLES = ("repeats", "row_tiles", "col_tiles", "chunks")


@dataclass(frozen=True)
class Geometry:
    """The crossbar the program is compiled for."""

    rows: int = 256
    cols: int = 256
    cell_bits: int = 4
    dac_bits: int = 1
    mapping: str = "dc"

    def check(self) -> None:
        if self.rows < 1 or self.cols < 1:
            raise HardwareError(f"xbar-tile: crossbar {self.rows}x{self.cols} must be positive")
        if not 1 <= self.cell_bits <= 8 or not 1 <= self.dac_bits <= 8:
            raise HardwareError("xbar-tile: cell-bits and dac-bits must be in 1..8")
        if self.mapping not in xbar.MAPPINGS:
            raise HardwareError(f"xbar-tile: mapping '{self.mapping}' is not one of dc, dr, of")


def phys_shape(n: int, m: int, slices: int, mapping: str) -> tuple[int, int]:
    """Physical ``(rows, cols)`` of an ``n x m`` weight with ``slices`` slices."""
    if mapping == "dc":
        return n, 2 * m * slices
    if mapping == "dr":
        return 2 * n, m * slices
    return n, m * slices + 1


#: Mapped cells of static weights: ``(weight blob digest, shape, w_bits, c, mapping, slices,
#: offset) -> (cells, recomb, correction)`` digests in the weight store. Mapping is a pure
#: function of these, so a second compile of the same weights (the report's 8/8 baseline,
#: re-lowering a module) reuses the cells instead of mapping and hashing them again.
_MAPPED: dict[tuple, tuple[str, str, str]] = {}


def _mapped_blobs(
    w: SSAValue, shape: tuple[int, int, int], w_bits: int, c: int, mapping: str, slices: int,
    offset: int, name: str,
) -> tuple[str, str, str]:
    """Digests of the cells, recombination and correction blobs of the static weight ``w``."""
    from cimc.exec.xbar_exec import map_cells_stack
    from cimc.passes.convert_cimq_to_xbar import weight_array

    owner = w.owner
    key = None
    if isinstance(owner, cimq.ConstOp) and isinstance(owner.value, cimq.BlobAttr):
        key = (owner.value.digest.data, shape, w_bits, c, mapping, slices, offset)
        hit = _MAPPED.get(key)
        if hit is not None and all(d in STORE for d in hit):
            return hit
    W = weight_array(w, f"layer '{name}'")
    g, rec = map_cells_stack(W, w_bits, c, mapping, slices, where=f"layer '{name}'")
    corr_arr = offset * W.sum(axis=1, dtype=np.int64)  # [H, m]
    out = (STORE.put(g), STORE.put(np.ascontiguousarray(rec, dtype=np.int64)),
           STORE.put(np.ascontiguousarray(corr_arr, dtype=np.int64)))
    if key is not None:
        _MAPPED[key] = out
    return out


def _quant(value: SSAValue) -> cimq.QuantType:
    t = value.type
    assert isinstance(t, TensorType) and isinstance(t.element_type, cimq.QuantType)
    return t.element_type


_IV_HINT = __import__("re").compile(r"[^A-Za-z0-9_]")
_IV_NAMES = {"repeats": "h", "row_tiles": "rt", "col_tiles": "ct", "chunks": "i"}


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
    geo: Geometry,
    narrow: bool = False,
) -> xbar.LayerOp:
    """The ``xbar.layer`` computing ``x [B, H, P, n] @ w`` on crossbars of ``geo``."""
    xq = _quant(x)
    xs = list(x.type.get_shape())  # type: ignore[union-attr]
    ws = list(w.type.get_shape())  # type: ignore[union-attr]
    _, h, p, n = xs
    m = ws[-1]
    c, d = geo.cell_bits, geo.dac_bits
    slices = xbar.ceil_div(w_bits - 1 if narrow else w_bits, c)
    if slices < 1:
        raise UnsupportedModelError(f"layer '{name}': {w_bits}-bit weights leave no magnitude bits")
    prow, pcol = phys_shape(n, m, slices, geo.mapping)
    row_tiles, col_tiles = xbar.ceil_div(prow, geo.rows), xbar.ceil_div(pcol, geo.cols)
    chunks = xbar.ceil_div(a_bits, d)
    signed = xq.is_signed
    offset = (1 << (a_bits - 1)) if signed else 0
    cells_t = xbar.CellsType(h, prow, pcol, c)
    recomb_t = TensorType(i64, [pcol, 2])
    out_t = TensorType(i32, [xs[0], h, p, m])

    block = Block(arg_types=[x.type, w.type])
    xa, wa = block.args
    xa.name_hint, wa.name_hint = "x", "w"
    with ImplicitBuilder(block):
        if dynamic:
            mapped = xbar.MapDynOp.create(
                operands=[wa],
                result_types=[cells_t, recomb_t, TensorType(i64, [ws[0], h, m])],
                properties={
                    "w_bits": xbar.i64_attr(w_bits),
                    "a_bits": xbar.i64_attr(a_bits),
                    "a_signed": xbar.i64_attr(int(signed)),
                    "slices": xbar.i64_attr(slices),
                    "mapping": StringAttr(geo.mapping),
                },
            )
            cells, recomb, corr = mapped.results
        else:
            digests = _mapped_blobs(w, (h, n, m), w_bits, c, geo.mapping, slices, offset, name)
            cells = xbar.ConstOp(cimq.BlobAttr(f"{name}.cells", digests[0]), cells_t).output
            recomb = xbar.ConstOp(cimq.BlobAttr(f"{name}.recomb", digests[1]), recomb_t).output
            corr = xbar.ConstOp(
                cimq.BlobAttr(f"{name}.correction", digests[2]), TensorType(i64, [h, m])
            ).output
        cells.name_hint, recomb.name_hint, corr.name_hint = "cells", "recomb", "corr"
        xu = xbar.OffsetOp.create(
            operands=[xa],
            result_types=[TensorType(i32, xs)],
            properties={"a_bits": xbar.i64_attr(a_bits), **({"signed": UnitAttr()} if signed else {})},
        ).output
        xu.name_hint = "xu"
        buf = xbar.AllocOp.create(result_types=[xbar.BufType(h, pcol)]).output
        buf.name_hint = "buf"
        consts: dict[int, SSAValue] = {}

        def idx(v: int) -> SSAValue:
            if v not in consts:
                consts[v] = arith.ConstantOp(IntegerAttr(v, IndexType())).result
                consts[v].name_hint = f"c{v}"
            return consts[v]

        zero, one = idx(0), idx(1)
        bounds = (idx(h), idx(row_tiles), idx(col_tiles), idx(chunks))
        tile_t = xbar.TileType(geo.rows, geo.cols, c)
        plane_t = xbar.PlaneType(geo.rows, d)
        cols_t = xbar.ColumnsType(geo.cols)

        def chunk_body(hv, rtv, ctv, tile):
            def body(iv):
                plane = xbar.PlaneOp.create(
                    operands=[xu, hv, rtv, iv],
                    result_types=[plane_t],
                    properties={"dual": UnitAttr()} if geo.mapping == "dr" else {},
                ).plane
                plane.name_hint = "plane"
                col = xbar.CycleOp.create(operands=[tile, plane], result_types=[cols_t]).output
                col.name_hint = "adc"
                xbar.ShiftAddOp.create(
                    operands=[buf, hv, ctv, col, iv], properties={"dac_bits": xbar.i64_attr(d)}
                )

            return body

        def ct_body(hv, rtv):
            def body(ctv):
                tile = xbar.ProgramOp.create(operands=[cells, hv, rtv, ctv], result_types=[tile_t]).tile
                tile.name_hint = "tile"
                _loop(zero, bounds[3], one, "chunks", chunk_body(hv, rtv, ctv, tile))

            return body

        _loop(
            zero, bounds[0], one, "repeats",
            lambda hv: _loop(zero, bounds[1], one, "row_tiles", lambda rtv: _loop(
                zero, bounds[2], one, "col_tiles", ct_body(hv, rtv))),
        )
        acc = xbar.RecombineOp.create(operands=[buf, recomb, corr], result_types=[out_t]).output
        acc.name_hint = "acc"
        xbar.YieldOp.create(operands=[acc])

    props = {
        "layer": StringAttr(name),
        "kind": StringAttr(kind),
        "mapping": StringAttr(geo.mapping),
        **{
            k: xbar.i64_attr(v)
            for k, v in dict(
                m=m, n=n, P=p, H=h, w_bits=w_bits, a_bits=a_bits, a_signed=int(signed),
                slices=slices, row_tiles=row_tiles, col_tiles=col_tiles, chunks=chunks,
                cell_bits=c, dac_bits=d,
            ).items()
        },
    }
    if dynamic:
        props["dynamic"] = UnitAttr()
    layer = xbar.LayerOp.create(
        operands=[x, w], result_types=[out_t], properties=props, regions=[Region(block)]
    )
    layer.output.name_hint = _IV_HINT.sub("_", name) + "_acc"
    return layer


def layer_geometry(layer: xbar.LayerOp) -> Geometry:
    """The crossbar a layer was compiled for (from its tile type and properties)."""
    for op in layer.body.walk():
        if isinstance(op, xbar.ProgramOp):
            t = op.tile.type
            assert isinstance(t, xbar.TileType)
            return Geometry(
                t.rows.data, t.cols.data, layer.value("cell_bits"), layer.value("dac_bits"),
                layer.mapping.data,
            )
    raise UnsupportedModelError(f"layer '{layer.layer.data}' has no xbar.program")


@dataclass
class TileProducts(RewritePattern):
    geo: Geometry

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
            geo=self.geo,
            narrow=op.narrow_slices is not None,
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
        check_choice(self.name, "mapping", self.mapping, xbar.MAPPINGS)

    @staticmethod
    def from_hardware(hw) -> XbarTilePass:
        return XbarTilePass(hw.rows, hw.cols, hw.cell_bits, hw.dac_bits, hw.mapping)

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        geo = Geometry(self.rows, self.cols, self.cell_bits, self.dac_bits, self.mapping)
        geo.check()
        PatternRewriteWalker(TileProducts(geo), apply_recursively=False).rewrite_module(op)
