"""The ``xbar`` dialect: crossbar products and the explicit bit-serial crossbar program.

Two IR levels use it.

``xbar-mm`` (from ``convert-cimq-to-xbar``): every crossbar product is one layer-level integer
matrix product on a 4-D operand ``[B, H, P, n]`` (batch, repeats, MVMs, inputs):

* :class:`MatMulOp` with a static weight ``[H, n, m]`` (conv via :class:`Im2ColOp` /
  :class:`Col2ImOp`, linear via ``cimq.reshape`` / :class:`UnpackOp`);
* :class:`MatMulDynOp` whose right operand ``[B, H, n, m]`` is written to the crossbar at run
  time (attention; ``H`` = heads).

A grouped / depthwise convolution with ``G`` groups is ``H = G`` repeats of an
``(m = C_out/G, n = C_in/G*kh*kw, P = Ho*Wo)`` layer: groups never share a tile.

``xbar`` (from ``xbar-tile``): every product is an :class:`LayerOp` whose region is the crossbar
program with its loops kept in the IR (``scf.for`` over repeats, row tiles, column tiles and
DAC input chunks)::

    %g, %r, %k = xbar.map %w {...} : ... -> !xbar.cells<1x27x32, c4> // sliced + mapped weights
    %xu  = xbar.offset %x {a_bits = 8, signed}                      // offset-encoded inputs
    %buf = xbar.alloc : !xbar.buf<1x32>                             // physical column sums
    scf.for %h, %rt, %ct {
      %t = xbar.program %g[%h, %rt, %ct]                            // one tile write
      scf.for %i {
        %p = xbar.plane %xu[%h, %rt], %i                            // DAC chunk i, all vectors
        %c = xbar.cycle %t, %p                                      // one cycle per vector, ADC
        xbar.shift_add %buf[%h, %ct], %c, %i
      }
    }
    %y = xbar.recombine %buf, %r, %k                                // slices, signs, offset
    %z = xbar.zp_correct %y, %x {w_zp = 100}                        // a weight zero point

Every op does a whole tile's or plane's work for all ``B * P`` vectors. Integer data are builtin
integer tensors (``i32``); quantized operands keep their ``!cimq.q`` types (the weight of
:class:`MatMulOp` is on its integer grid: scale 1). Constants are ``#cimq.blob`` references
(:mod:`cimc.weights`) or inline ``dense``.

Batch: types carry the module's static batch; the executor accepts any batch at run time
(axis 0). Static tiles are programmed once per inference and used for every vector of the batch;
dynamic tiles (:class:`MapOp` of a run-time operand) are programmed once per batch element.
"""

from __future__ import annotations

from xdsl.dialects.builtin import (
    DenseArrayBase,
    DenseIntOrFPElementsAttr,
    I64,
    IndexType,
    IntAttr,
    IntegerAttr,
    IntegerType,
    StringAttr,
    TensorType,
    UnitAttr,
    i64,
)
from xdsl.ir import Attribute, Dialect, ParametrizedAttribute, TypeAttribute
from xdsl.irdl import (
    IRDLOperation,
    ParsePropInAttrDict,
    irdl_attr_definition,
    irdl_op_definition,
    operand_def,
    opt_prop_def,
    prop_def,
    region_def,
    result_def,
    traits_def,
    var_operand_def,
)
from xdsl.parser import AttrParser
from xdsl.printer import Printer
from xdsl.traits import IsTerminator, Pure
from xdsl.utils.exceptions import VerifyException

from cimc.dialects.cimq import BlobAttr, QuantType, ints
from cimc.target.geometry import KINDS, ceil_div
from cimc.target.hw import MAPPINGS

# --------------------------------------------------------------------------------------------
# Types
# --------------------------------------------------------------------------------------------


def _parse_shape(parser: AttrParser, count: int, what: str) -> list[int]:
    """``AxBxC``: ``count`` static dimensions separated by ``x``."""
    dims = [parser.parse_shape_dimension(allow_dynamic=False)]
    while len(dims) < count:
        parser.parse_shape_delimiter()
        dims.append(parser.parse_shape_dimension(allow_dynamic=False))
    return dims


def _parse_tagged(parser: AttrParser, tag: str, what: str) -> int:
    word = parser.parse_identifier(f"{what} such as {tag}4")
    if not word.startswith(tag) or not word[len(tag):].isdigit():
        parser.raise_error(f"{what}: expected {tag}<bits> such as {tag}4, got '{word}'")
    return int(word[len(tag):])


@irdl_attr_definition
class CellsType(ParametrizedAttribute, TypeAttribute):
    """``!xbar.cells<HxRxC, c4>``: mapped cell levels of a layer, ``H`` repeats of an ``R x C``
    physical matrix (rows = crossbar inputs, columns = crossbar outputs) of ``c``-bit cells.

    Dynamic layers hold one such stack per batch element at run time.
    """

    name = "xbar.cells"
    repeats: IntAttr
    rows: IntAttr
    cols: IntAttr
    cell_bits: IntAttr

    def __init__(self, repeats: int, rows: int, cols: int, cell_bits: int):
        super().__init__(IntAttr(repeats), IntAttr(rows), IntAttr(cols), IntAttr(cell_bits))

    @classmethod
    def parse_parameters(cls, parser: AttrParser) -> list[Attribute]:
        with parser.in_angle_brackets():
            h, r, c = _parse_shape(parser, 3, "!xbar.cells")
            parser.parse_punctuation(",")
            bits = _parse_tagged(parser, "c", "!xbar.cells cell bits")
        return [IntAttr(h), IntAttr(r), IntAttr(c), IntAttr(bits)]

    def print_parameters(self, printer: Printer) -> None:
        printer.print_string(
            f"<{self.repeats.data}x{self.rows.data}x{self.cols.data}, c{self.cell_bits.data}>"
        )

    def verify(self) -> None:
        if min(self.repeats.data, self.rows.data, self.cols.data) < 1:
            raise VerifyException("!xbar.cells dimensions must be positive")
        if not 1 <= self.cell_bits.data <= 8:
            raise VerifyException(f"!xbar.cells: cell bits {self.cell_bits.data} not in 1..8")


@irdl_attr_definition
class TileType(ParametrizedAttribute, TypeAttribute):
    """``!xbar.tile<256x256, c4>``: one programmed crossbar (``rows`` inputs x ``cols`` outputs,
    ``c``-bit cells). An edge tile uses only part of it."""

    name = "xbar.tile"
    rows: IntAttr
    cols: IntAttr
    cell_bits: IntAttr

    def __init__(self, rows: int, cols: int, cell_bits: int):
        super().__init__(IntAttr(rows), IntAttr(cols), IntAttr(cell_bits))

    @classmethod
    def parse_parameters(cls, parser: AttrParser) -> list[Attribute]:
        with parser.in_angle_brackets():
            r, c = _parse_shape(parser, 2, "!xbar.tile")
            parser.parse_punctuation(",")
            bits = _parse_tagged(parser, "c", "!xbar.tile cell bits")
        return [IntAttr(r), IntAttr(c), IntAttr(bits)]

    def print_parameters(self, printer: Printer) -> None:
        printer.print_string(f"<{self.rows.data}x{self.cols.data}, c{self.cell_bits.data}>")

    def verify(self) -> None:
        if min(self.rows.data, self.cols.data) < 1:
            raise VerifyException("!xbar.tile dimensions must be positive")
        if not 1 <= self.cell_bits.data <= 8:
            raise VerifyException(f"!xbar.tile: cell bits {self.cell_bits.data} not in 1..8")


@irdl_attr_definition
class PlaneType(ParametrizedAttribute, TypeAttribute):
    """``!xbar.plane<256, d1>``: one DAC input chunk of ``d`` bits on up to ``rows`` crossbar
    rows, for every vector of the layer."""

    name = "xbar.plane"
    rows: IntAttr
    dac_bits: IntAttr

    def __init__(self, rows: int, dac_bits: int):
        super().__init__(IntAttr(rows), IntAttr(dac_bits))

    @classmethod
    def parse_parameters(cls, parser: AttrParser) -> list[Attribute]:
        with parser.in_angle_brackets():
            rows = parser.parse_integer(allow_boolean=False, allow_negative=False)
            parser.parse_punctuation(",")
            bits = _parse_tagged(parser, "d", "!xbar.plane DAC bits")
        return [IntAttr(rows), IntAttr(bits)]

    def print_parameters(self, printer: Printer) -> None:
        printer.print_string(f"<{self.rows.data}, d{self.dac_bits.data}>")

    def verify(self) -> None:
        if self.rows.data < 1 or not 1 <= self.dac_bits.data <= 8:
            raise VerifyException("!xbar.plane needs rows >= 1 and DAC bits in 1..8")


@irdl_attr_definition
class ColumnsType(ParametrizedAttribute, TypeAttribute):
    """``!xbar.columns<256>``: the ADC codes of up to ``cols`` columns of one cycle, for every
    vector of the layer."""

    name = "xbar.columns"
    cols: IntAttr

    def __init__(self, cols: int):
        super().__init__(IntAttr(cols))

    @classmethod
    def parse_parameters(cls, parser: AttrParser) -> list[Attribute]:
        with parser.in_angle_brackets():
            cols = parser.parse_integer(allow_boolean=False, allow_negative=False)
        return [IntAttr(cols)]

    def print_parameters(self, printer: Printer) -> None:
        printer.print_string(f"<{self.cols.data}>")


@irdl_attr_definition
class BufType(ParametrizedAttribute, TypeAttribute):
    """``!xbar.buf<HxC>``: digital accumulators of ``C`` physical columns for ``H`` repeats (and
    every vector), where shifted ADC codes of all chunks and row tiles are added."""

    name = "xbar.buf"
    repeats: IntAttr
    cols: IntAttr

    def __init__(self, repeats: int, cols: int):
        super().__init__(IntAttr(repeats), IntAttr(cols))

    @classmethod
    def parse_parameters(cls, parser: AttrParser) -> list[Attribute]:
        with parser.in_angle_brackets():
            h, c = _parse_shape(parser, 2, "!xbar.buf")
        return [IntAttr(h), IntAttr(c)]

    def print_parameters(self, printer: Printer) -> None:
        printer.print_string(f"<{self.repeats.data}x{self.cols.data}>")


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------



def _shape(value_type: Attribute, what: str) -> tuple[int, ...]:
    if not isinstance(value_type, TensorType):
        raise VerifyException(f"{what} must be a tensor, got {value_type}")
    return tuple(value_type.get_shape())


def _elem(value_type: Attribute) -> Attribute:
    assert isinstance(value_type, TensorType)
    return value_type.element_type


def _quant(value_type: Attribute, what: str) -> QuantType:
    _shape(value_type, what)
    elem = _elem(value_type)
    if not isinstance(elem, QuantType):
        raise VerifyException(f"{what} must be a quantized tensor (!cimq.q), got {value_type}")
    return elem


def _int_tensor(value_type: Attribute, what: str) -> tuple[int, ...]:
    shape = _shape(value_type, what)
    if not isinstance(_elem(value_type), IntegerType):
        raise VerifyException(f"{what} must be an integer tensor, got {value_type}")
    return shape


def _ival(attr: IntegerAttr | None, default: int = 0) -> int:
    return default if attr is None else int(attr.value.data)


def _i64(v: int) -> IntegerAttr:
    return IntegerAttr(int(v), i64)


def _same(a: int, b: int) -> bool:
    return a == b or a < 0 or b < 0


def _check_bits(w_bits: int, a_bits: int, what: str) -> None:
    if not 1 <= w_bits <= 8 or not 1 <= a_bits <= 8:
        raise VerifyException(f"{what}: w_bits {w_bits} / a_bits {a_bits} must be in 1..8")


def operand_bits(q: QuantType) -> int:
    """Bits of the signed integers that hold every value of ``q`` (unsigned needs one more)."""
    return q.width if q.is_signed else q.width + 1


def unsigned_cells(q: QuantType, bits: int) -> bool:
    """Whether an operand of type ``q`` stored at ``bits`` is held as unsigned cells (values in
    ``[0, 2^bits - 1]``): an unsigned operand at its own width. Otherwise the cells hold signed
    ``bits``-bit integers (an unsigned operand needs one bit more)."""
    return not q.is_signed and bits == q.width


def _check_fits(q: QuantType, bits: int, what: str, op: str, *, as_signed: bool) -> None:
    """The operand's integers must fit the ``bits`` the crossbar streams / stores."""
    need = operand_bits(q) if as_signed else q.width
    if bits < need:
        raise VerifyException(
            f"{op}: {what} is {q.spec()} and needs {need} bits but the layer uses {bits}; "
            "bits can only grow"
        )


# --------------------------------------------------------------------------------------------
# xbar-mm level
# --------------------------------------------------------------------------------------------


@irdl_op_definition
class Im2ColOp(IRDLOperation):
    """Host op: NCHW input to zero-padded patches ``[B, G, P, C/G*kh*kw]`` (``P = Ho*Wo``).

    Patch columns are channel-major, then ky, kx (OIHW weight order).

    ``%p = xbar.im2col %x {kernel = array<i64: 3, 3>, strides = array<i64: 1, 1>,
    pads = array<i64: 1, 1, 1, 1>, dilations = array<i64: 1, 1>, groups = 1 : i64}
    : (tensor<1x3x8x8x!cimq.q<u8:0.1>>) -> tensor<1x1x64x27x!cimq.q<u8:0.1>>``
    """

    name = "xbar.im2col"
    input = operand_def(TensorType)
    output = result_def(TensorType)
    kernel = prop_def(DenseArrayBase)
    strides = prop_def(DenseArrayBase)
    pads = prop_def(DenseArrayBase)
    dilations = prop_def(DenseArrayBase)
    groups = prop_def(IntegerAttr[I64])
    assembly_format = "$input attr-dict `:` functional-type(operands, results)"
    irdl_options = (ParsePropInAttrDict(),)
    traits = traits_def(Pure())

    def verify_(self) -> None:
        q = _quant(self.input.type, "xbar.im2col input")
        if _elem(self.output.type) != q:
            raise VerifyException("xbar.im2col: patches keep the input's element type")
        xs = _shape(self.input.type, "xbar.im2col input")
        ys = _shape(self.output.type, "xbar.im2col result")
        if len(xs) != 4 or len(ys) != 4:
            raise VerifyException("xbar.im2col maps NCHW to [B, G, P, n] patches")
        k, s, p, d = (ints(a) for a in (self.kernel, self.strides, self.pads, self.dilations))
        if len(k) != 2 or len(s) != 2 or len(d) != 2 or len(p) != 4:
            raise VerifyException("xbar.im2col: kernel/strides/dilations need 2 values, pads 4")
        g = _ival(self.groups)
        if g < 1 or xs[1] % g:
            raise VerifyException(f"xbar.im2col: {xs[1]} channels do not split in {g} groups")
        ho = (xs[2] + p[0] + p[2] - d[0] * (k[0] - 1) - 1) // s[0] + 1
        wo = (xs[3] + p[1] + p[3] - d[1] * (k[1] - 1) - 1) // s[1] + 1
        want = (xs[0], g, ho * wo, xs[1] // g * k[0] * k[1])
        if not all(_same(a, b) for a, b in zip(ys, want)):
            raise VerifyException(f"xbar.im2col: result shape {list(ys)}, expected {list(want)}")


@irdl_op_definition
class Col2ImOp(IRDLOperation):
    """Host op: products ``[B, G, Ho*Wo, m]`` back to the NCHW accumulator ``[B, G*m, Ho, Wo]``.

    ``%y = xbar.col2im %a : (tensor<1x1x64x16xi32>) -> tensor<1x16x8x8x!cimq.q<s32:0.01>>``
    """

    name = "xbar.col2im"
    input = operand_def(TensorType)
    output = result_def(TensorType)
    assembly_format = "$input attr-dict `:` functional-type(operands, results)"
    traits = traits_def(Pure())

    def verify_(self) -> None:
        xs = _int_tensor(self.input.type, "xbar.col2im input")
        acc = _quant(self.output.type, "xbar.col2im result")
        ys = _shape(self.output.type, "xbar.col2im result")
        if acc.width != 32 or len(xs) != 4 or len(ys) != 4:
            raise VerifyException("xbar.col2im maps [B, G, P, m] to an NCHW s32 accumulator")
        if ys[1] != xs[1] * xs[3] or ys[2] * ys[3] != xs[2] or not _same(xs[0], ys[0]):
            raise VerifyException(f"xbar.col2im: {list(xs)} does not fold into {list(ys)}")


@irdl_op_definition
class UnpackOp(IRDLOperation):
    """Host op: products ``[B, H, P, m]`` reshaped to the cimq accumulator they replace (row
    major; with a symbolic batch both keep it on axis 0; a model typed at one batch may carry
    it elsewhere, e.g. ``[tokens, B, dim]``).

    ``%y = xbar.unpack %a : (tensor<1x1x50x10xi32>) -> tensor<1x50x10x!cimq.q<s32:0.01>>``
    """

    name = "xbar.unpack"
    input = operand_def(TensorType)
    output = result_def(TensorType)
    assembly_format = "$input attr-dict `:` functional-type(operands, results)"
    traits = traits_def(Pure())

    def verify_(self) -> None:
        xs = _int_tensor(self.input.type, "xbar.unpack input")
        acc = _quant(self.output.type, "xbar.unpack result")
        ys = _shape(self.output.type, "xbar.unpack result")
        if acc.width != 32 or len(xs) != 4:
            raise VerifyException("xbar.unpack maps [B, H, P, m] to an s32 accumulator")
        size = lambda s: 1 if not s else s[0] * size(s[1:])  # noqa: E731
        static = min(*xs, *ys) >= 0
        last = ys[-1] if ys else 1  # m = 1: a vector weight's product drops the axis
        if (xs[-1] != last and xs[-1] != 1) or (size(xs) != size(ys) if static else size(xs[1:]) != size(ys[1:])):
            raise VerifyException(f"xbar.unpack: {list(xs)} does not reshape into {list(ys)}")


class _Product(IRDLOperation):
    """Both operands' zero points are removed digitally: the product is ``(x - zx) @ (w - zw)``.
    The stored operand holds its integers as they are: signed cells of ``w_bits`` bits, or
    unsigned cells when it is unsigned at its own width (:func:`unsigned_cells`)."""

    lhs = operand_def(TensorType)
    rhs = operand_def(TensorType)
    output = result_def(TensorType)
    layer = prop_def(StringAttr)
    kind = prop_def(StringAttr)
    w_bits = prop_def(IntegerAttr[I64])
    a_bits = prop_def(IntegerAttr[I64])
    narrow_slices = opt_prop_def(UnitAttr)
    assembly_format = (
        "$lhs `,` $rhs `layer` $layer `kind` $kind `w` $w_bits `a` $a_bits attr-dict `:` "
        "functional-type(operands, results)"
    )
    irdl_options = (ParsePropInAttrDict(),)
    traits = traits_def(Pure())

    def _verify_common(self, rhs_rank: int) -> tuple[int, int, int, int]:
        op = self.name
        x = _quant(self.lhs.type, f"{op} lhs")
        w = _quant(self.rhs.type, f"{op} rhs")
        xs = _shape(self.lhs.type, f"{op} lhs")
        ws = _shape(self.rhs.type, f"{op} rhs")
        ys = _int_tensor(self.output.type, f"{op} result")
        if self.kind.data not in KINDS:
            raise VerifyException(f"{op}: kind '{self.kind.data}' is not one of {', '.join(KINDS)}")
        wb, ab = _ival(self.w_bits), _ival(self.a_bits)
        _check_bits(wb, ab, op)
        _check_fits(w, wb, "the weight", op, as_signed=False)  # unsigned at its width: unsigned cells
        _check_fits(x, ab, "the input", op, as_signed=False)
        if len(xs) != 4 or len(ws) != rhs_rank or len(ys) != 4:
            raise VerifyException(
                f"{op}: expected lhs [B, H, P, n], rhs of rank {rhs_rank}, result [B, H, P, m]"
            )
        b, h, p, n = xs
        m = ws[-1]
        if not _same(ws[-2], n) or ws[-3] != h:
            raise VerifyException(f"{op}: lhs {list(xs)} and rhs {list(ws)} do not multiply")
        if tuple(ys[1:]) != (h, p, m) or not _same(ys[0], b):
            raise VerifyException(f"{op}: result {list(ys)}, expected {[b, h, p, m]}")
        return h, p, n, m


@irdl_op_definition
class MatMulOp(_Product):
    """A crossbar layer with a static weight: ``y[b, h] = x[b, h] @ w[h]``.

    ``x [B, H, P, n]`` is streamed (``a_bits``), ``w [H, n, m]`` (signed, ``w_bits``) is
    programmed at compile time. ``narrow_slices`` (set by ``xbar-narrow-slices``) lets ``dc``/
    ``dr`` mappings store only the ``w-1`` magnitude bits.

    ``%y = xbar.matmul %p, %w layer "conv1" kind "conv" w 4 a 8 : (tensor<1x1x64x27x!cimq.q<u8:0.1>>,
    tensor<1x27x16x!cimq.q<s4n:1.0>>) -> tensor<1x1x64x16xi32>``
    """

    name = "xbar.matmul"

    def verify_(self) -> None:
        self._verify_common(3)


@irdl_op_definition
class MatMulDynOp(_Product):
    """A crossbar layer whose operand is written at run time (attention):
    ``y[b, h] = x[b, h] @ r[b, h]`` with ``x [B, H, P, n]`` streamed and ``r [B, H, n, m]``
    (K^T or V of head ``h``) programmed once per head and batch element.

    ``%s = xbar.matmul_dyn %q, %kt layer "attn.qk" kind "matmul" w 8 a 8 :
    (tensor<1x12x50x64x!cimq.q<s8:0.1>>, tensor<1x12x64x50x!cimq.q<s8:0.1>>) -> tensor<1x12x50x50xi32>``
    """

    name = "xbar.matmul_dyn"

    def verify_(self) -> None:
        self._verify_common(4)


# --------------------------------------------------------------------------------------------
# xbar level: the crossbar program
# --------------------------------------------------------------------------------------------


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
        return _ival(getattr(self, name))

    @property
    def is_dynamic(self) -> bool:
        return self.dynamic is not None

    @property
    def w_unsigned(self) -> bool:
        """Whether the weight is stored as unsigned cells (:func:`unsigned_cells`)."""
        q = _elem(self.weight.type)
        return isinstance(q, QuantType) and unsigned_cells(q, self.value("w_bits"))

    def verify_(self) -> None:
        name = f"xbar.layer '{self.layer.data}'"
        v = self.value
        if self.mapping.data not in MAPPINGS:
            raise VerifyException(f"{name}: mapping '{self.mapping.data}' not one of dc, dr, of")
        if self.kind.data not in KINDS:
            raise VerifyException(f"{name}: kind '{self.kind.data}' not one of {', '.join(KINDS)}")
        _check_bits(v("w_bits"), v("a_bits"), name)
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
        xs = _shape(self.input.type, f"{name} input")
        ws = _shape(self.weight.type, f"{name} weight")
        ys = _int_tensor(self.output.type, f"{name} result")
        want_w = (v("H"), v("n"), v("m"))
        if self.is_dynamic:
            want_w = (xs[0],) + want_w if xs else want_w
        if len(xs) != 4 or tuple(xs[1:]) != (v("H"), v("P"), v("n")):
            raise VerifyException(f"{name}: input {list(xs)} is not [B, H={v('H')}, P={v('P')}, n={v('n')}]")
        if len(ws) != len(want_w) or not all(_same(a, b) for a, b in zip(ws, want_w)):
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
        q = _elem(self.weight.type)
        want = [q.zp] if isinstance(q, QuantType) and q.zp else []
        block = self.body.block
        ops = [op for op in block.ops if isinstance(op, ZpCorrectOp)]
        if [_ival(op.w_zp) for op in ops] != want or any(op.input is not block.args[0] for op in ops):
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
        return len(_shape(self.input.type, "xbar.map input")) == 4

    def verify_(self) -> None:
        ws = _shape(self.input.type, "xbar.map input")
        cells = self.cells.type
        assert isinstance(cells, CellsType)
        k = _ival(self.blocks, 1)
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
        q = _elem(self.input.type)
        if isinstance(q, QuantType) and unsigned_cells(q, _ival(self.w_bits)) != (self.w_unsigned is not None):
            raise VerifyException(
                f"xbar.map: a {q.spec()} operand at {_ival(self.w_bits)} bits is stored as "
                f"{'unsigned' if unsigned_cells(q, _ival(self.w_bits)) else 'signed'} cells: "
                f"w_unsigned must be {'set' if unsigned_cells(q, _ival(self.w_bits)) else 'absent'}"
            )
        rs = _int_tensor(self.recomb.type, "xbar.map recomb")
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
        q = _quant(self.input.type, "xbar.offset input")
        _int_tensor(self.output.type, "xbar.offset result")
        if q.width > _ival(self.a_bits):
            raise VerifyException(f"xbar.offset: {q.spec()} input does not fit {_ival(self.a_bits)} bits")
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
        xs, ys, k = _int_tensor(self.input.type, "xbar.pack_blocks input"), \
            _int_tensor(self.output.type, "xbar.pack_blocks result"), _ival(self.blocks)
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
        xs, ys, k = _int_tensor(self.input.type, "xbar.unpack_blocks input"), \
            _int_tensor(self.output.type, "xbar.unpack_blocks result"), _ival(self.blocks)
        ok = len(xs) == len(ys) == 4 and k >= 1 and xs[3] == k * ys[3] and xs[1] == ceil_div(ys[1], k) \
            and xs[0] == ys[0] and xs[2] == ys[2]
        if not ok:
            raise VerifyException(f"xbar.unpack_blocks: {list(xs)} with {k} blocks is not {list(ys)}")


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
        _int_tensor(self.input.type, "xbar.plane input")


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
        rs = _int_tensor(self.recomb.type, "xbar.recombine recomb")
        ys = _int_tensor(self.output.type, "xbar.recombine result")
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
        acc = _int_tensor(self.acc.type, "xbar.zp_correct accumulator")
        _quant(self.input.type, "xbar.zp_correct input")
        xs = _shape(self.input.type, "xbar.zp_correct input")
        if self.output.type != self.acc.type:
            raise VerifyException("xbar.zp_correct: the result has the accumulator's type")
        if _ival(self.w_zp) == 0:
            raise VerifyException("xbar.zp_correct: w_zp must be non-zero (no correction: no op)")
        if len(acc) != 4 or len(xs) != 4 or not all(_same(a, b) for a, b in zip(acc[:3], xs[:3])):
            raise VerifyException(
                f"xbar.zp_correct: accumulator {list(acc)} and input {list(xs)} are not "
                "[B, H, P, m] and [B, H, P, n]"
            )


XBAR = Dialect(
    "xbar",
    [
        Im2ColOp,
        Col2ImOp,
        UnpackOp,
        MatMulOp,
        MatMulDynOp,
        LayerOp,
        YieldOp,
        ConstOp,
        MapOp,
        OffsetOp,
        AllocOp,
        PackBlocksOp,
        UnpackBlocksOp,
        TileAtOp,
        ProgramOp,
        PlaneOp,
        CycleOp,
        ShiftAddOp,
        RecombineOp,
        ZpCorrectOp,
    ],
    [CellsType, TileType, PlaneType, ColumnsType, BufType],
)

#: Properties of ``xbar.program`` that passes set and a rebuilt layer keeps.
PROGRAM_PLAN = ("amortised", "group", "offset", "shared")

#: The ops that are hardware work (everything else executes on the host CPU).
CROSSBAR_OPS = (MatMulOp, MatMulDynOp, LayerOp)

__all__ = [n for n in dir() if n.endswith(("Op", "Type"))] + ["XBAR"]


def i64_attr(value: int) -> IntegerAttr:
    """An ``i64`` integer attribute (properties of xbar ops)."""
    return _i64(value)

