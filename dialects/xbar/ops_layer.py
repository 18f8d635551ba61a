"""``xbar`` level ops around a crossbar program: ``xbar.layer`` and its terminator, constants,
weight mapping, input offset, accumulator allocation and block packing.
"""

from __future__ import annotations

from xdsl.dialects.builtin import (
    I64,
    DenseArrayBase,
    DenseIntOrFPElementsAttr,
    IntegerAttr,
    StringAttr,
    TensorType,
    UnitAttr,
)
from xdsl.ir import Attribute
from xdsl.irdl import (
    IRDLOperation,
    ParsePropInAttrDict,
    irdl_op_definition,
    operand_def,
    opt_prop_def,
    prop_def,
    region_def,
    result_def,
    traits_def,
    var_operand_def,
)
from xdsl.traits import IsTerminator, Pure
from xdsl.utils.exceptions import VerifyException

from cimc.dialects.cimq.attrs import BlobAttr, QuantType
from cimc.dialects.cimq.helpers import ints
from cimc.dialects.xbar.attrs import BufType, CellsType
from cimc.dialects.xbar.helpers import (
    check_bits,
    dims_match,
    element_type,
    int_tensor_shape,
    int_value,
    quant_element,
    tensor_shape,
    unsigned_cells,
)
from cimc.dialects.xbar.ops_tile import ZpCorrectOp
from cimc.target.geometry import KINDS, ceil_div
from cimc.target.hw import MAPPINGS


@irdl_op_definition
class YieldOp(IRDLOperation):
    """Terminator of :class:`LayerOp`: ``xbar.yield %acc : tensor<1x1x64x16xi32>``."""

    name = "xbar.yield"
    values = var_operand_def()
    assembly_format = "attr-dict ($values^ `:` type($values))?"
    traits = traits_def(IsTerminator())


@irdl_op_definition
class LayerOp(IRDLOperation):
    """One crossbar layer ``(m, n, P, H)`` and its bit-serial program (the region).

    Operands: the streamed input ``[B, H, P, n]`` and the weight: static ``[H, n, m]`` (kept for
    the executor's exact fast path and for re-tiling) or dynamic ``[B, H, n, m]``. The region's
    two block arguments are those operands; it yields ``[B, H, P, m]``. Properties describe the
    layer and how it was tiled; the counts a report needs are the loops' trip counts.

    ``%y = xbar.layer "fc" (%x, %w) {kind = "linear", m = 10 : i64, ...} : (...) -> tensor<...> {
    ^bb0(%a: ..., %b: ...): ... xbar.yield %acc : tensor<1x1x1x10xi32> }``
    """

    name = "xbar.layer"
    input = operand_def(TensorType)
    weight = operand_def(TensorType)
    output = result_def(TensorType)
    body = region_def("single_block")
    layer = prop_def(StringAttr)
    kind = prop_def(StringAttr)
    mapping = prop_def(StringAttr)
    m = prop_def(IntegerAttr[I64])
    n = prop_def(IntegerAttr[I64])
    P = prop_def(IntegerAttr[I64])
    H = prop_def(IntegerAttr[I64])
    w_bits = prop_def(IntegerAttr[I64])
    a_bits = prop_def(IntegerAttr[I64])
    a_signed = prop_def(IntegerAttr[I64])
    slices = prop_def(IntegerAttr[I64])
    row_tiles = prop_def(IntegerAttr[I64])
    col_tiles = prop_def(IntegerAttr[I64])
    chunks = prop_def(IntegerAttr[I64])
    cell_bits = prop_def(IntegerAttr[I64])
    dac_bits = prop_def(IntegerAttr[I64])
    dynamic = opt_prop_def(UnitAttr)
    blocks = opt_prop_def(IntegerAttr[I64])
    """Repeats packed block-diagonally per programmed matrix (``xbar-pack``); absent: 1."""
    assembly_format = (
        "$layer `(` $input `,` $weight `)` attr-dict `:` functional-type(operands, results) $body"
    )
    irdl_options = (ParsePropInAttrDict(),)

    def value(self, name: str) -> int:
        """An integer property by name."""
        return int_value(getattr(self, name))

    @property
    def is_dynamic(self) -> bool:
        return self.dynamic is not None

    @property
    def w_unsigned(self) -> bool:
        """Whether the weight is stored as unsigned cells (:func:`unsigned_cells`)."""
        q = element_type(self.weight.type)
        return isinstance(q, QuantType) and unsigned_cells(q, self.value("w_bits"))

    def verify_(self) -> None:
        name = f"xbar.layer '{self.layer.data}'"
        v = self.value
        if self.mapping.data not in MAPPINGS:
            raise VerifyException(f"{name}: mapping '{self.mapping.data}' not one of dc, dr, of")
        if self.kind.data not in KINDS:
            raise VerifyException(f"{name}: kind '{self.kind.data}' not one of {', '.join(KINDS)}")
        check_bits(v("w_bits"), v("a_bits"), name)
        c, d = v("cell_bits"), v("dac_bits")
        if not 1 <= c <= 8 or not 1 <= d <= 8:
            raise VerifyException(f"{name}: cell bits {c} and DAC bits {d} must be in 1..8")
        full, narrow = ceil_div(v("w_bits"), c), ceil_div(v("w_bits") - 1, c)
        if v("slices") not in (full, narrow) or v("slices") < 1:
            raise VerifyException(
                f"{name}: slices {v('slices')} != ceil(w/c) = {full} (or ceil((w-1)/c) narrow)"
            )
        if v("chunks") != ceil_div(v("a_bits"), d):
            raise VerifyException(f"{name}: chunks {v('chunks')} != ceil(a/d) = {ceil_div(v('a_bits'), d)}")
        xs = tensor_shape(self.input.type, f"{name} input")
        ws = tensor_shape(self.weight.type, f"{name} weight")
        ys = int_tensor_shape(self.output.type, f"{name} result")
        want_w = (v("H"), v("n"), v("m"))
        if self.is_dynamic:
            want_w = (xs[0],) + want_w if xs else want_w
        if len(xs) != 4 or tuple(xs[1:]) != (v("H"), v("P"), v("n")):
            raise VerifyException(f"{name}: input {list(xs)} is not [B, H={v('H')}, P={v('P')}, n={v('n')}]")
        if len(ws) != len(want_w) or not all(dims_match(a, b) for a, b in zip(ws, want_w)):
            raise VerifyException(f"{name}: weight {list(ws)}, expected {list(want_w)}")
        if tuple(ys[1:]) != (v("H"), v("P"), v("m")):
            raise VerifyException(f"{name}: result {list(ys)} is not [B, H, P, m={v('m')}]")
        block = self.body.block
        if [a.type for a in block.args] != [self.input.type, self.weight.type]:
            raise VerifyException(f"{name}: the body's arguments must have the operand types")
        last = block.last_op
        if not isinstance(last, YieldOp) or [x.type for x in last.values] != [self.output.type]:
            raise VerifyException(f"{name}: the body must end in xbar.yield of the result type")
        self._verify_zero_point(name)

    def _verify_zero_point(self, name: str) -> None:
        """A stored operand with zero point ``zw`` needs exactly one ``xbar.zp_correct {w_zp = zw}``
        of the streamed input in the body; one without needs none."""
        q = element_type(self.weight.type)
        want = [q.zp] if isinstance(q, QuantType) and q.zp else []
        block = self.body.block
        ops = [op for op in block.ops if isinstance(op, ZpCorrectOp)]
        if [int_value(op.w_zp) for op in ops] != want or any(op.input is not block.args[0] for op in ops):
            raise VerifyException(
                f"{name}: the weight's zero point {want[0] if want else 0} needs "
                f"{'one xbar.zp_correct of the input with w_zp = ' + str(want[0]) if want else 'no xbar.zp_correct'}"
                f", got {len(ops)}"
            )


@irdl_op_definition
class ConstOp(IRDLOperation):
    """A compile-time constant of the crossbar program: mapped cells, recombination matrix,
    signed-activation correction.

    ``%g = xbar.const #cimq.blob<"conv1.cells", "9c1e..."> : !xbar.cells<1x27x32, c4>``
    ``%r = xbar.const dense<[[1], [-1]]> : tensor<2x1xi64> : tensor<2x1xi64>``
    """

    name = "xbar.const"
    value = prop_def(Attribute)
    output = result_def()
    assembly_format = "$value attr-dict `:` type($output)"
    irdl_options = (ParsePropInAttrDict(),)
    traits = traits_def(Pure())

    def __init__(self, value: Attribute, result_type: Attribute):
        super().__init__(properties={"value": value}, result_types=[result_type])

    def verify_(self) -> None:
        if isinstance(self.value, BlobAttr):
            return
        if not isinstance(self.value, DenseIntOrFPElementsAttr):
            raise VerifyException("xbar.const value must be #cimq.blob<...> or dense<...>")
        if isinstance(self.output.type, TensorType) and tuple(self.value.get_shape()) != tuple(
            self.output.type.get_shape()
        ):
            raise VerifyException(
                f"xbar.const: value shape {self.value.get_shape()} differs from the result's"
            )


@irdl_op_definition
class MapOp(IRDLOperation):
    """Slice and map a layer's weight onto cells, with its recombination table and
    signed-input correction (:mod:`cimc.target.mapping`).

    A static weight ``[H, n, m]`` gives cells ``!xbar.cells<HxRxC>`` and a correction ``[H, m]``;
    its cells are built once, when the program first needs them (never by the passes that only
    count). A run-time operand ``[B, H, n, m]`` (attention) is mapped at every run, one cell stack
    per batch element, correction ``[B, H, m]``. ``recomb`` is ``[C, 2]`` (output, coefficient).

    ``%g, %r, %k = xbar.map %w {w_bits = 8 : i64, a_bits = 8 : i64, a_signed = 1 : i64,
    slices = 2 : i64, mapping = "dc"} : (tensor<1x27x16x!cimq.q<s8n:1.0>>) ->
    (!xbar.cells<1x27x64, c4>, tensor<64x2xi64>, tensor<1x16xi64>)``
    """

    name = "xbar.map"
    input = operand_def(TensorType)
    cells = result_def(CellsType)
    recomb = result_def(TensorType)
    correction = result_def(TensorType)
    w_bits = prop_def(IntegerAttr[I64])
    a_bits = prop_def(IntegerAttr[I64])
    a_signed = prop_def(IntegerAttr[I64])
    slices = prop_def(IntegerAttr[I64])
    mapping = prop_def(StringAttr)
    blocks = opt_prop_def(IntegerAttr[I64])
    """``k`` repeats per block-diagonal matrix: cells ``<ceil(H/k) x .. x ..>`` (``xbar-pack``)."""
    a_zp = opt_prop_def(IntegerAttr[I64])
    """The streamed input's zero point ``zx``: the correction also removes ``zx * colsum(w)``."""
    w_unsigned = opt_prop_def(UnitAttr)
    """The operand is stored as unsigned cells (:func:`unsigned_cells`)."""
    columns = opt_prop_def(DenseArrayBase)
    """The physical columns kept (ascending); the others hold only zero cells and are dropped
    (``xbar-skip-zero-weights``)."""
    assembly_format = "$input attr-dict `:` functional-type(operands, results)"
    irdl_options = (ParsePropInAttrDict(),)
    traits = traits_def(Pure())

    @property
    def is_dynamic(self) -> bool:
        """Whether the operand is written at run time (``[B, H, n, m]``)."""
        return len(tensor_shape(self.input.type, "xbar.map input")) == 4

    def verify_(self) -> None:
        ws = tensor_shape(self.input.type, "xbar.map input")
        cells = self.cells.type
        assert isinstance(cells, CellsType)
        k = int_value(self.blocks, 1)
        if k < 1:
            raise VerifyException(f"xbar.map: blocks {k} must be positive")
        if len(ws) not in (3, 4) or cells.repeats.data != ceil_div(ws[-3], k):
            raise VerifyException(
                "xbar.map: input [H, n, m] (or [B, H, n, m]) and cells <ceil(H/blocks) x R x C> disagree"
            )
        if self.columns is not None:
            cols = ints(self.columns)
            if len(cols) != cells.cols.data or any(b <= a for a, b in zip(cols, cols[1:])) or min(cols) < 0:
                raise VerifyException(
                    f"xbar.map: columns must be {cells.cols.data} ascending physical column indices"
                )
        if self.mapping.data not in MAPPINGS:
            raise VerifyException(f"xbar.map: mapping '{self.mapping.data}' not one of dc, dr, of")
        q = element_type(self.input.type)
        if isinstance(q, QuantType) and unsigned_cells(q, int_value(self.w_bits)) != (self.w_unsigned is not None):
            raise VerifyException(
                f"xbar.map: a {q.spec()} operand at {int_value(self.w_bits)} bits is stored as "
                f"{'unsigned' if unsigned_cells(q, int_value(self.w_bits)) else 'signed'} cells: "
                f"w_unsigned must be {'set' if unsigned_cells(q, int_value(self.w_bits)) else 'absent'}"
            )
        rs = int_tensor_shape(self.recomb.type, "xbar.map recomb")
        if tuple(rs) != (cells.cols.data, 2):
            raise VerifyException(f"xbar.map: recomb {list(rs)} must be [{cells.cols.data}, 2]")


@irdl_op_definition
class OffsetOp(IRDLOperation):
    """Offset-encode the streamed input: ``xu = x + 2^(a-1)`` for signed ``a``-bit inputs
    (corrected in :class:`RecombineOp`), ``xu = x`` for unsigned ones.

    ``%xu = xbar.offset %x {a_bits = 8 : i64, signed} : (tensor<1x1x64x27x!cimq.q<s8:0.1>>)
    -> tensor<1x1x64x27xi32>``
    """

    name = "xbar.offset"
    input = operand_def(TensorType)
    output = result_def(TensorType)
    a_bits = prop_def(IntegerAttr[I64])
    signed = opt_prop_def(UnitAttr)
    assembly_format = "$input attr-dict `:` functional-type(operands, results)"
    irdl_options = (ParsePropInAttrDict(),)
    traits = traits_def(Pure())

    def verify_(self) -> None:
        q = quant_element(self.input.type, "xbar.offset input")
        int_tensor_shape(self.output.type, "xbar.offset result")
        if q.width > int_value(self.a_bits):
            raise VerifyException(f"xbar.offset: {q.spec()} input does not fit {int_value(self.a_bits)} bits")
        if q.is_signed != (self.signed is not None):
            raise VerifyException("xbar.offset: `signed` must match the input's signedness")


@irdl_op_definition
class AllocOp(IRDLOperation):
    """Zeroed physical-column accumulators: ``%buf = xbar.alloc : !xbar.buf<1x32>``."""

    name = "xbar.alloc"
    output = result_def(BufType)
    assembly_format = "attr-dict `:` type($output)"


@irdl_op_definition
class PackBlocksOp(IRDLOperation):
    """The inputs of ``k`` repeats side by side, for a block-diagonal matrix (``xbar-pack``):
    ``[B, H, P, n]`` -> ``[B, ceil(H/k), P, k*n]`` (the last block padded with zeros).

    ``%xp = xbar.pack_blocks %xu {blocks = 4 : i64} : (tensor<1x8x9x3xi32>) -> tensor<1x2x9x12xi32>``
    """

    name = "xbar.pack_blocks"
    input = operand_def(TensorType)
    output = result_def(TensorType)
    blocks = prop_def(IntegerAttr[I64])
    assembly_format = "$input attr-dict `:` functional-type(operands, results)"
    irdl_options = (ParsePropInAttrDict(),)
    traits = traits_def(Pure())

    def verify_(self) -> None:
        xs, ys, k = int_tensor_shape(self.input.type, "xbar.pack_blocks input"), \
            int_tensor_shape(self.output.type, "xbar.pack_blocks result"), int_value(self.blocks)
        want = (xs[0], ceil_div(xs[1], max(k, 1)), xs[2], k * xs[3]) if len(xs) == 4 else None
        if k < 1 or want is None or tuple(ys) != want:
            raise VerifyException(f"xbar.pack_blocks: {list(xs)} with {k} blocks is not {list(ys)}")


@irdl_op_definition
class UnpackBlocksOp(IRDLOperation):
    """Back from block-diagonal outputs: ``[B, ceil(H/k), P, k*m]`` -> ``[B, H, P, m]``.

    ``%y = xbar.unpack_blocks %acc {blocks = 4 : i64} : (tensor<1x2x9x8xi32>) -> tensor<1x8x9x2xi32>``
    """

    name = "xbar.unpack_blocks"
    input = operand_def(TensorType)
    output = result_def(TensorType)
    blocks = prop_def(IntegerAttr[I64])
    assembly_format = "$input attr-dict `:` functional-type(operands, results)"
    irdl_options = (ParsePropInAttrDict(),)
    traits = traits_def(Pure())

    def verify_(self) -> None:
        xs, ys, k = int_tensor_shape(self.input.type, "xbar.unpack_blocks input"), \
            int_tensor_shape(self.output.type, "xbar.unpack_blocks result"), int_value(self.blocks)
        ok = len(xs) == len(ys) == 4 and k >= 1 and xs[3] == k * ys[3] and xs[1] == ceil_div(ys[1], k) \
            and xs[0] == ys[0] and xs[2] == ys[2]
        if not ok:
            raise VerifyException(f"xbar.unpack_blocks: {list(xs)} with {k} blocks is not {list(ys)}")
