"""``xbar`` level ops of the bit-serial tile loop: tile selection, programming, DAC planes,
cycles, shift-add, recombination and the weight zero-point correction.
"""

from __future__ import annotations

from xdsl.dialects.builtin import (
    I64,
    DenseArrayBase,
    IndexType,
    IntegerAttr,
    StringAttr,
    TensorType,
    UnitAttr,
)
from xdsl.irdl import (
    IRDLOperation,
    ParsePropInAttrDict,
    irdl_op_definition,
    operand_def,
    opt_prop_def,
    prop_def,
    result_def,
    traits_def,
)
from xdsl.traits import Pure
from xdsl.utils.exceptions import VerifyException

from cimc.dialects.cimq.helpers import ints
from cimc.dialects.xbar.attrs import BufType, CellsType, ColumnsType, PlaneType, TileType
from cimc.dialects.xbar.helpers import (
    dims_match,
    int_tensor_shape,
    int_value,
    quant_element,
    tensor_shape,
)


@irdl_op_definition
class TileAtOp(IRDLOperation):
    """The coordinates ``(h, rt, ct)`` of the ``k``-th programmed tile of a layer whose all-zero
    tiles are skipped (``xbar-skip-zero-weights``): ``tiles`` lists them, three numbers each.

    ``%h, %rt, %ct = xbar.tile_at %k {tiles = array<i64: 0, 0, 0, 0, 1, 1>}``
    """

    name = "xbar.tile_at"
    index = operand_def(IndexType)
    h = result_def(IndexType())
    rt = result_def(IndexType())
    ct = result_def(IndexType())
    tiles = prop_def(DenseArrayBase)
    assembly_format = "$index attr-dict"
    irdl_options = (ParsePropInAttrDict(),)
    traits = traits_def(Pure())

    def verify_(self) -> None:
        flat = ints(self.tiles)
        if not flat or len(flat) % 3 or min(flat) < 0:
            raise VerifyException("xbar.tile_at: tiles must be non-empty (h, rt, ct) triples")


@irdl_op_definition
class ProgramOp(IRDLOperation):
    """Program one tile (one write per inference): the cells of repeat ``h``, row tile ``rt``,
    column tile ``ct`` (edge tiles are partly used); ``{amortised}``: one write for the batch.

    ``%t = xbar.program %g[%h, %rt, %ct] : !xbar.cells<1x27x32, c4> -> !xbar.tile<256x256, c4>``
    """

    name = "xbar.program"
    cells = operand_def(CellsType)
    h = operand_def(IndexType)
    rt = operand_def(IndexType)
    ct = operand_def(IndexType)
    tile = result_def(TileType)
    amortised = opt_prop_def(UnitAttr)
    """Programmed once for the whole batch (``xbar-batch-amortise``); without it every inference
    of the batch programs the tile again, as in the paper (run-time written cells always are)."""
    group = opt_prop_def(StringAttr)
    """The shared array (``xbar-pack``) the tile is placed in, at ``offset`` (row, column)."""
    offset = opt_prop_def(DenseArrayBase)
    shared = opt_prop_def(UnitAttr)
    """The group's array was programmed by an earlier layer's write: no write here."""
    assembly_format = (
        "$cells `[` $h `,` $rt `,` $ct `]` attr-dict `:` type($cells) `->` type($tile)"
    )
    irdl_options = (ParsePropInAttrDict(),)

    def verify_(self) -> None:
        cells, tile = self.cells.type, self.tile.type
        assert isinstance(cells, CellsType) and isinstance(tile, TileType)
        if (self.shared is not None or self.offset is not None) and self.group is None:
            raise VerifyException("xbar.program: shared / offset need a group")
        if self.offset is not None and len(ints(self.offset)) != 2:
            raise VerifyException("xbar.program: offset is [row, column]")
        if cells.cell_bits != tile.cell_bits:
            raise VerifyException(
                f"xbar.program: cells of {cells.cell_bits.data} bits on a tile of "
                f"{tile.cell_bits.data}-bit cells"
            )


@irdl_op_definition
class PlaneOp(IRDLOperation):
    """DAC chunk ``i`` (bits ``[i*d, (i+1)*d)``) of repeat ``h``'s inputs on the rows of row tile
    ``rt``, for every vector. ``dual`` (differential rows) drives ``[x, x]``.

    ``%p = xbar.plane %xu[%h, %rt], %i : tensor<1x1x64x27xi32> -> !xbar.plane<256, d1>``
    """

    name = "xbar.plane"
    input = operand_def(TensorType)
    h = operand_def(IndexType)
    rt = operand_def(IndexType)
    chunk = operand_def(IndexType)
    plane = result_def(PlaneType)
    dual = opt_prop_def(UnitAttr)
    assembly_format = (
        "$input `[` $h `,` $rt `]` `,` $chunk attr-dict `:` type($input) `->` type($plane)"
    )
    irdl_options = (ParsePropInAttrDict(),)

    def verify_(self) -> None:
        int_tensor_shape(self.input.type, "xbar.plane input")


@irdl_op_definition
class CycleOp(IRDLOperation):
    """One crossbar cycle per vector: the plane drives the tile's rows, every used column is
    converted by the ADC (clipped to the hardware's range; clips are counted).

    ``%c = xbar.cycle %t, %p : !xbar.tile<256x256, c4>, !xbar.plane<256, d1> -> !xbar.columns<256>``
    """

    name = "xbar.cycle"
    tile = operand_def(TileType)
    plane = operand_def(PlaneType)
    output = result_def(ColumnsType)
    skip_zero = opt_prop_def(UnitAttr)
    """Run-time skipping (``xbar-skip-zero-planes``): a vector whose plane is zero on every row
    of the tile gets no cycle (its codes are zero); the executor counts it as skipped."""
    assembly_format = "$tile `,` $plane attr-dict `:` type($tile) `,` type($plane) `->` type($output)"
    irdl_options = (ParsePropInAttrDict(),)

    def verify_(self) -> None:
        tile, plane, cols = self.tile.type, self.plane.type, self.output.type
        assert isinstance(tile, TileType) and isinstance(plane, PlaneType)
        assert isinstance(cols, ColumnsType)
        if tile.rows != plane.rows:
            raise VerifyException(
                f"xbar.cycle: a plane of {plane.rows.data} rows on a tile of {tile.rows.data} rows"
            )
        if tile.cols != cols.cols:
            raise VerifyException("xbar.cycle: the columns type must have the tile's width")


@irdl_op_definition
class ShiftAddOp(IRDLOperation):
    """Accumulate ADC codes of chunk ``i`` shifted by ``i * dac_bits`` into the accumulators of
    repeat ``h``, columns of column tile ``ct`` (row tiles add up here, digitally).

    ``xbar.shift_add %buf[%h, %ct], %c, %i {dac_bits = 1 : i64} : !xbar.buf<1x32>, !xbar.columns<256>``
    """

    name = "xbar.shift_add"
    buf = operand_def(BufType)
    h = operand_def(IndexType)
    ct = operand_def(IndexType)
    columns = operand_def(ColumnsType)
    chunk = operand_def(IndexType)
    dac_bits = prop_def(IntegerAttr[I64])
    assembly_format = (
        "$buf `[` $h `,` $ct `]` `,` $columns `,` $chunk attr-dict `:` type($buf) `,` "
        "type($columns)"
    )
    irdl_options = (ParsePropInAttrDict(),)


@irdl_op_definition
class RecombineOp(IRDLOperation):
    """Digital recombination: ``y[o] = sum_k recomb[k, 1] * buf[k]`` over the physical columns
    ``k`` with ``recomb[k, 0] == o`` (``-1``: every output), minus ``correction``. This undoes
    the weight slicing (shifts), the column-pair / reference-column signs and the signed-
    activation offset. ``recomb`` is ``[phys_cols, 2]`` (output, coefficient).

    ``%y = xbar.recombine %buf, %r, %k : !xbar.buf<1x32>, tensor<32x2xi64>, tensor<1x16xi64>
    -> tensor<1x1x64x16xi32>``
    """

    name = "xbar.recombine"
    buf = operand_def(BufType)
    recomb = operand_def(TensorType)
    correction = operand_def(TensorType)
    output = result_def(TensorType)
    assembly_format = (
        "$buf `,` $recomb `,` $correction attr-dict `:` type($buf) `,` type($recomb) `,` "
        "type($correction) `->` type($output)"
    )

    def verify_(self) -> None:
        buf = self.buf.type
        assert isinstance(buf, BufType)
        rs = int_tensor_shape(self.recomb.type, "xbar.recombine recomb")
        ys = int_tensor_shape(self.output.type, "xbar.recombine result")
        if tuple(rs) != (buf.cols.data, 2):
            raise VerifyException(
                f"xbar.recombine: recomb {list(rs)} must be [{buf.cols.data} physical cols, 2]"
            )
        if len(ys) != 4 or ys[1] != buf.repeats.data:
            raise VerifyException(f"xbar.recombine: result {list(ys)} is not [B, H={buf.repeats.data}, P, m]")


@irdl_op_definition
class ZpCorrectOp(IRDLOperation):
    """Digital correction of the stored operand's zero point ``zw`` (the crossbar holds ``w`` as
    it is): ``y[b, h, p, o] = acc[b, h, p, o] - w_zp * sum_k (x[b, h, p, k] - zx)``, so with
    ``acc = (x - zx) @ w`` (the recombination already removed ``zx``) ``y = (x - zx) @ (w - zw)``.
    ``x`` is the layer's streamed input (``[B, H, P, n]``, zero point ``zx`` in its type); one
    row sum per vector, the same for every output.

    ``%y = xbar.zp_correct %acc, %x {w_zp = 100 : i64} : (tensor<1x1x1x10xi32>,
    tensor<1x1x1x256x!cimq.q<u8:0.01>>) -> tensor<1x1x1x10xi32>``
    """

    name = "xbar.zp_correct"
    acc = operand_def(TensorType)
    input = operand_def(TensorType)
    output = result_def(TensorType)
    w_zp = prop_def(IntegerAttr[I64])
    assembly_format = "$acc `,` $input attr-dict `:` functional-type(operands, results)"
    irdl_options = (ParsePropInAttrDict(),)
    traits = traits_def(Pure())

    def verify_(self) -> None:
        acc = int_tensor_shape(self.acc.type, "xbar.zp_correct accumulator")
        quant_element(self.input.type, "xbar.zp_correct input")
        xs = tensor_shape(self.input.type, "xbar.zp_correct input")
        if self.output.type != self.acc.type:
            raise VerifyException("xbar.zp_correct: the result has the accumulator's type")
        if int_value(self.w_zp) == 0:
            raise VerifyException("xbar.zp_correct: w_zp must be non-zero (no correction: no op)")
        if len(acc) != 4 or len(xs) != 4 or not all(dims_match(a, b) for a, b in zip(acc[:3], xs[:3])):
            raise VerifyException(
                f"xbar.zp_correct: accumulator {list(acc)} and input {list(xs)} are not "
                "[B, H, P, m] and [B, H, P, n]"
            )


#: Properties of ``xbar.program`` that passes set and a rebuilt layer keeps.
PROGRAM_PLAN = ("amortised", "group", "offset", "shared")
