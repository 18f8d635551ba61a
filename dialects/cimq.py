"""The ``cimq`` dialect: mixed-precision quantized tensors and the ops of quantized networks.

``cimq`` is the first IR level of cimc, the one the ONNX QCDQ importer produces. Values are
builtin tensors. A tensor whose elements are integers on a quantization grid has the element type
``!cimq.q<...>``, which carries the element bit width (1-8, or 32 for accumulators and biases),
signedness, narrow range, the scale (per tensor, or per channel along an axis) and the zero point::

    !cimq.q<u4:0.135>                 unsigned 4-bit, scale 0.135, zero point 0
    !cimq.q<s4n:0.318>                signed narrow 4-bit ([-7, 7])
    !cimq.q<s6:0.02:zp=3>             signed 6-bit ([-32, 31]) with zero point 3
    !cimq.q<s4n:axis0[0.1, 0.2]>      per-channel scales along axis 0
    !cimq.q<s32:0.0429>               a 32-bit accumulator (scale = input scale * weight scale)

Float tensors (``f32``) are what runs on the host between a ``cimq.dequantize`` and the next
``cimq.quantize``. The integer semantics of every op is documented in :mod:`cimc.semantics`, the
one place that defines rounding and saturation; the executor in :mod:`cimc.exec.cimq_exec`
implements exactly that.

Large constants (weights) are kept out of the text: ``cimq.const`` refers to them with
``#cimq.blob<"name", "digest">`` and the bytes live in a :class:`cimc.weights.WeightStore` that is
written next to the ``.mlir`` file (``model.mlir`` + ``model.weights.npz``). Small constants may be
given inline as ``dense<...>``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from xdsl.dialects.builtin import (
    ArrayAttr,
    DenseArrayBase,
    DenseIntOrFPElementsAttr,
    Float32Type,
    Float64Type,
    FloatAttr,
    FloatData,
    IntAttr,
    IntegerAttr,
    IntegerType,
    StringAttr,
    TensorType,
    f32,
    i64,
)
from xdsl.ir import Attribute, Data, Dialect, ParametrizedAttribute, TypeAttribute
from xdsl.irdl import (
    AttrSizedOperandSegments,
    opt_result_def,
    IRDLOperation,
    irdl_attr_definition,
    irdl_op_definition,
    opt_attr_def,
    opt_operand_def,
    attr_def,
    operand_def,
    result_def,
    var_operand_def,
    traits_def,
)
from xdsl.parser import AttrParser
from xdsl.printer import Printer
from xdsl.traits import Pure
from xdsl.utils.exceptions import VerifyException

from cimc.weights import Blob

# --------------------------------------------------------------------------------------------
# Types and attributes
# --------------------------------------------------------------------------------------------


def format_scale(value: float) -> str:
    """Shortest text that parses back to exactly ``value`` and is an MLIR float literal."""
    text = repr(float(value))
    if "e" in text and "." not in text.split("e")[0]:
        mantissa, exponent = text.split("e")
        text = f"{mantissa}.0e{exponent}"
    return text


@irdl_attr_definition
class QuantType(ParametrizedAttribute, TypeAttribute):
    """Element type of a quantized tensor: ``real = scale * (q - zero_point)``.

    ``bits`` is 1..8 for activations and weights and 32 for accumulators and biases. A narrow
    signed type excludes the most negative value (Brevitas weights: 4 bits -> [-7, 7]).
    ``axis`` is -1 for a per-tensor scale, else the channel axis of the per-channel scales.
    """

    name = "cimq.q"

    bits: IntAttr
    signed: IntAttr
    narrow: IntAttr
    axis: IntAttr
    scales: ArrayAttr[FloatData]
    zero_point: IntAttr

    def __init__(
        self,
        bits: int,
        signed: bool,
        scales: float | Sequence[float],
        *,
        narrow: bool = False,
        axis: int = -1,
        zero_point: int = 0,
    ):
        if isinstance(scales, (int, float)):
            scales = [float(scales)]
        super().__init__(
            IntAttr(bits),
            IntAttr(int(signed)),
            IntAttr(int(narrow)),
            IntAttr(axis),
            ArrayAttr([FloatData(float(s)) for s in scales]),
            IntAttr(zero_point),
        )

    # -- convenience accessors ---------------------------------------------------------------
    @property
    def width(self) -> int:
        return self.bits.data

    @property
    def is_signed(self) -> bool:
        return bool(self.signed.data)

    @property
    def is_narrow(self) -> bool:
        return bool(self.narrow.data)

    @property
    def channel_axis(self) -> int:
        return self.axis.data

    @property
    def per_channel(self) -> bool:
        return self.axis.data >= 0

    @property
    def scale_values(self) -> tuple[float, ...]:
        return tuple(s.data for s in self.scales.data)

    @property
    def zp(self) -> int:
        return self.zero_point.data

    @property
    def qmin(self) -> int:
        if not self.is_signed:
            return 0
        low = -(1 << (self.width - 1))
        return low + 1 if self.is_narrow else low

    @property
    def qmax(self) -> int:
        return (1 << (self.width - 1)) - 1 if self.is_signed else (1 << self.width) - 1

    def spec(self) -> str:
        """``s4n``, ``u8``, ``s32``: signedness, bits and narrow flag."""
        return f"{'s' if self.is_signed else 'u'}{self.width}{'n' if self.is_narrow else ''}"

    def with_scales(self, scales: float | Sequence[float], axis: int = -1) -> QuantType:
        return QuantType(
            self.width, self.is_signed, scales, narrow=self.is_narrow, axis=axis,
            zero_point=self.zp,
        )

    # -- syntax --------------------------------------------------------------------------------
    @classmethod
    def parse_parameters(cls, parser: AttrParser) -> list[Attribute]:
        with parser.in_angle_brackets():
            spec_pos = parser.pos
            spec = parser.parse_identifier("quantized element spec such as s4n or u8")
            signed, bits, narrow = _parse_spec(spec)
            if bits is None:
                parser.raise_error(
                    f"bad quantized element spec '{spec}': expected s<bits>[n] or u<bits>",
                    spec_pos,
                    parser.pos,
                )
            parser.parse_punctuation(":")
            axis = -1
            if (word := parser.parse_optional_identifier()) is not None:
                if not word.startswith("axis") or not word[4:].isdigit():
                    parser.raise_error(f"expected a scale or axis<N>[...], got '{word}'")
                axis = int(word[4:])
                scales = parser.parse_comma_separated_list(
                    parser.Delimiter.SQUARE, lambda: parser.parse_float(allow_negative=False)
                )
            else:
                scales = [parser.parse_float(allow_negative=False)]
            zero_point = 0
            if parser.parse_optional_punctuation(":") is not None:
                parser.parse_keyword("zp")
                parser.parse_punctuation("=")
                zero_point = parser.parse_integer(allow_boolean=False)
        return [
            IntAttr(bits),
            IntAttr(int(signed)),
            IntAttr(int(narrow)),
            IntAttr(axis),
            ArrayAttr([FloatData(s) for s in scales]),
            IntAttr(zero_point),
        ]

    def print_parameters(self, printer: Printer) -> None:
        with printer.in_angle_brackets():
            printer.print_string(self.spec() + ":")
            if self.per_channel:
                body = ", ".join(format_scale(s) for s in self.scale_values)
                printer.print_string(f"axis{self.channel_axis}[{body}]")
            else:
                printer.print_string(format_scale(self.scale_values[0]))
            if self.zp != 0:
                printer.print_string(f":zp={self.zp}")

    def verify(self) -> None:
        bits = self.width
        if bits not in range(1, 9) and bits != 32:
            raise VerifyException(
                f"!cimq.q bit width {bits} is not supported: use 1..8 (or 32 for accumulators)"
            )
        if self.is_narrow and not self.is_signed:
            raise VerifyException("!cimq.q: only signed types can be narrow-range")
        if not self.scales.data:
            raise VerifyException("!cimq.q needs at least one scale")
        for s in self.scale_values:
            if not (s > 0 and math.isfinite(s)):
                raise VerifyException(f"!cimq.q scale must be positive and finite, got {s}")
        if not self.per_channel and len(self.scales.data) != 1:
            raise VerifyException("!cimq.q: a per-tensor type has exactly one scale")
        if bits != 32 and not self.qmin <= self.zp <= self.qmax:
            raise VerifyException(
                f"!cimq.q zero point {self.zp} is outside the range [{self.qmin}, {self.qmax}]"
            )


def _parse_spec(spec: str) -> tuple[bool, int | None, bool]:
    if len(spec) < 2 or spec[0] not in "su":
        return False, None, False
    signed = spec[0] == "s"
    body = spec[1:]
    narrow = body.endswith("n")
    if narrow:
        body = body[:-1]
    if not body.isdigit():
        return signed, None, narrow
    return signed, int(body), narrow


@irdl_attr_definition
class BlobData(Data[Blob]):
    """The :class:`cimc.weights.Blob` a :class:`BlobAttr` holds (never printed on its own)."""

    name = "cimq.blob_data"

    @classmethod
    def parse_parameter(cls, parser: AttrParser) -> Blob:
        return Blob(digest=parser.parse_str_literal())

    def print_parameter(self, printer: Printer) -> None:
        printer.print_string_literal(self.data.digest)


@irdl_attr_definition
class BlobAttr(ParametrizedAttribute):
    """``#cimq.blob<"conv1.weight", "3f2a...">``: a constant kept outside the IR text.

    ``key`` is where the tensor came from (the ONNX initializer); the text shows the content
    digest of the data. The attribute holds the data itself (a :class:`cimc.weights.Blob`), so
    the module owns its weights; a module parsed from text holds digest-only blobs until
    :func:`cimc.ir_io.bind_blobs` fills them from the ``.weights.npz`` file. Two blobs are equal
    when their keys and digests are.
    """

    name = "cimq.blob"

    key: StringAttr
    blob: BlobData

    def __init__(self, key: str, data: np.ndarray | Blob):
        blob = data if isinstance(data, Blob) else Blob(data)
        super().__init__(StringAttr(key), BlobData(blob))

    @property
    def digest(self) -> StringAttr:
        return StringAttr(self.blob.data.digest)

    @property
    def array(self) -> np.ndarray:
        """The data (a one-line error when the blob was parsed and never filled)."""
        return self.blob.data.array

    @classmethod
    def parse_parameters(cls, parser: AttrParser) -> list[Attribute]:
        with parser.in_angle_brackets():
            key = parser.parse_str_literal()
            parser.parse_punctuation(",")
            digest = parser.parse_str_literal()
        return [StringAttr(key), BlobData(Blob(digest=digest))]

    def print_parameters(self, printer: Printer) -> None:
        with printer.in_angle_brackets():
            printer.print_string_literal(self.key.data)
            printer.print_string(", ")
            printer.print_string_literal(self.blob.data.digest)


def dense_to_numpy(attr: DenseIntOrFPElementsAttr) -> np.ndarray:
    """The array held by a ``dense<...>`` attribute (splats broadcast to the full shape)."""
    elem = attr.get_element_type()
    if isinstance(elem, Float32Type):
        dtype = np.dtype(np.float32)
    elif isinstance(elem, Float64Type):
        dtype = np.dtype(np.float64)
    elif isinstance(elem, IntegerType):
        width = elem.width.data
        dtype = np.dtype({1: np.bool_, 8: np.int8, 16: np.int16, 32: np.int32, 64: np.int64}[width])
    else:
        raise VerifyException(f"constant element type {elem} is not supported")
    flat = np.frombuffer(attr.data.data, dtype=dtype)
    shape = tuple(attr.get_shape())
    if flat.size == 1 and int(np.prod(shape)) != 1:
        return np.full(shape, flat[0], dtype=dtype)
    return flat.reshape(shape)


def constant_array(value: Attribute) -> np.ndarray:
    """The stored array of a constant's value (``#cimq.blob`` or ``dense``), as stored."""
    if isinstance(value, BlobAttr):
        return value.array
    if isinstance(value, DenseIntOrFPElementsAttr):
        return dense_to_numpy(value)
    raise VerifyException(f"constant value {value} is neither #cimq.blob nor dense")


# --------------------------------------------------------------------------------------------
# Helpers for verifiers
# --------------------------------------------------------------------------------------------


def tensor_type(value_type: Attribute, what: str) -> TensorType:
    if not isinstance(value_type, TensorType):
        raise VerifyException(f"{what} must be a tensor, got {value_type}")
    return value_type


def quant_elem(value_type: Attribute, what: str) -> QuantType:
    elem = tensor_type(value_type, what).element_type
    if not isinstance(elem, QuantType):
        raise VerifyException(f"{what} must be a quantized tensor (!cimq.q), got {value_type}")
    return elem


def float_elem(value_type: Attribute, what: str) -> None:
    elem = tensor_type(value_type, what).element_type
    if not isinstance(elem, Float32Type):
        raise VerifyException(f"{what} must be an f32 tensor, got {value_type}")


def ints(attr: DenseArrayBase | None, default: Sequence[int] = ()) -> tuple[int, ...]:
    if attr is None:
        return tuple(default)
    return tuple(int(v) for v in attr.get_values())


def i64_array(values: Sequence[int]) -> DenseArrayBase:
    return DenseArrayBase.from_list(i64, [int(v) for v in values])


def _dims_compatible(a: int, b: int) -> bool:
    return a == b or a < 0 or b < 0


def _check_accumulator(result_type: Attribute, x: QuantType, w: QuantType, op: str) -> QuantType:
    acc = quant_elem(result_type, f"{op} result")
    if acc.width != 32 or not acc.is_signed:
        raise VerifyException(f"{op} result must be a signed 32-bit accumulator, got {acc.spec()}")
    if x.per_channel:
        raise VerifyException(f"{op}: the input activation must have a per-tensor scale")
    expected = [x.scale_values[0] * s for s in w.scale_values]
    got = list(acc.scale_values)
    if len(got) != len(expected) or any(
        not math.isclose(g, e, rel_tol=1e-6) for g, e in zip(got, expected)
    ):
        raise VerifyException(
            f"{op}: accumulator scale must be input scale * weight scale ({expected[:4]}...), "
            f"got {got[:4]}"
        )
    return acc


def _check_operand_bits(t: QuantType, what: str, op: str) -> None:
    if t.width > 8:
        raise VerifyException(
            f"{op}: {what} has {t.width} bits; crossbar operands must have 1..8 bits"
        )


# --------------------------------------------------------------------------------------------
# Float boundary and constants
# --------------------------------------------------------------------------------------------


@irdl_op_definition
class QuantizeOp(IRDLOperation):
    """Quantize a float tensor: ``q = saturate(round_half_even(x / scale) + zero_point)``.

    ``%q = cimq.quantize %x : (tensor<1x16xf32>) -> tensor<1x16x!cimq.q<u4:0.1>>``
    """

    name = "cimq.quantize"
    input = operand_def(TensorType)
    output = result_def(TensorType)
    assembly_format = "$input attr-dict `:` functional-type(operands, results)"
    traits = traits_def(Pure())

    def verify_(self) -> None:
        float_elem(self.input.type, "cimq.quantize input")
        q = quant_elem(self.output.type, "cimq.quantize result")
        if q.width > 8:
            raise VerifyException("cimq.quantize produces 1..8-bit tensors")
        _check_same_shape(self.input.type, self.output.type, "cimq.quantize")


@irdl_op_definition
class DequantizeOp(IRDLOperation):
    """Dequantize: ``x = (q - zero_point) * scale`` (float32).

    ``%x = cimq.dequantize %q : (tensor<1x16x!cimq.q<u4:0.1>>) -> tensor<1x16xf32>``
    """

    name = "cimq.dequantize"
    input = operand_def(TensorType)
    output = result_def(TensorType)
    assembly_format = "$input attr-dict `:` functional-type(operands, results)"
    traits = traits_def(Pure())

    def verify_(self) -> None:
        quant_elem(self.input.type, "cimq.dequantize input")
        float_elem(self.output.type, "cimq.dequantize result")
        _check_same_shape(self.input.type, self.output.type, "cimq.dequantize")


@irdl_op_definition
class ConstOp(IRDLOperation):
    """A constant tensor: quantized integers (weights, int32 biases) or floats.

    ``%w = cimq.const #cimq.blob<"conv1.weight", "9c1e..."> : tensor<4x1x3x3x!cimq.q<s2n:0.3>>``
    ``%b = cimq.const dense<[1, -2]> : tensor<2xi32> : tensor<2x!cimq.q<s32:0.01>>``
    """

    name = "cimq.const"
    value = attr_def(Attribute)
    output = result_def(TensorType)
    assembly_format = "$value attr-dict `:` type($output)"
    traits = traits_def(Pure())

    def __init__(self, value: Attribute, result_type: TensorType, name: str | None = None):
        attrs: dict[str, Attribute] = {"value": value}
        if name is not None:
            attrs["sym_name"] = StringAttr(name)
        super().__init__(attributes=attrs, result_types=[result_type])

    def verify_(self) -> None:
        out = tensor_type(self.output.type, "cimq.const result")
        if isinstance(self.value, BlobAttr):
            return
        if not isinstance(self.value, DenseIntOrFPElementsAttr):
            raise VerifyException(
                "cimq.const value must be #cimq.blob<...> or dense<...>, got "
                f"{self.value.name}"
            )
        if tuple(self.value.get_shape()) != tuple(out.get_shape()):
            raise VerifyException(
                f"cimq.const: value shape {self.value.get_shape()} differs from result shape "
                f"{out.get_shape()}"
            )


# --------------------------------------------------------------------------------------------
# Crossbar candidates: integer products
# --------------------------------------------------------------------------------------------


@irdl_op_definition
class ConvOp(IRDLOperation):
    """2-D convolution (NCHW input, OIHW weight) of quantized integers into an accumulator.

    ``acc[n, o, y, x] = sum_{c, ky, kx} (in - zp_in)[n, g*C/G + c, ...] * (w - zp_w)[o, c, ky, kx]``
    over the padded input (padding with the input zero point: a real zero).
    Attributes: ``strides`` (2), ``pads`` (4: top, left, bottom, right), ``dilations`` (2),
    ``group``.
    """

    name = "cimq.conv"
    input = operand_def(TensorType)
    weight = operand_def(TensorType)
    output = result_def(TensorType)
    strides = attr_def(DenseArrayBase)
    pads = attr_def(DenseArrayBase)
    dilations = attr_def(DenseArrayBase)
    group = attr_def(IntegerAttr)
    layer = opt_attr_def(StringAttr)
    assembly_format = "$input `,` $weight attr-dict `:` functional-type(operands, results)"
    traits = traits_def(Pure())

    def __init__(self, x, w, result_type, *, strides, pads, dilations, group, layer=None):
        attrs: dict[str, Attribute] = {
            "strides": i64_array(strides),
            "pads": i64_array(pads),
            "dilations": i64_array(dilations),
            "group": IntegerAttr(group, i64),
        }
        if layer:
            attrs["layer"] = StringAttr(layer)
        super().__init__(operands=[x, w], result_types=[result_type], attributes=attrs)

    def verify_(self) -> None:
        x = quant_elem(self.input.type, "cimq.conv input")
        w = quant_elem(self.weight.type, "cimq.conv weight")
        _check_operand_bits(x, "the input", "cimq.conv")
        _check_operand_bits(w, "the weight", "cimq.conv")
        acc = _check_accumulator(self.output.type, x, w, "cimq.conv")
        xs, ws, ys = (
            tensor_type(v.type, "").get_shape() for v in (self.input, self.weight, self.output)
        )
        if len(xs) != 4 or len(ws) != 4 or len(ys) != 4:
            raise VerifyException("cimq.conv works on 4-D NCHW tensors with OIHW weights")
        if len(ints(self.strides)) != 2 or len(ints(self.dilations)) != 2:
            raise VerifyException("cimq.conv: strides and dilations need 2 values")
        if len(ints(self.pads)) != 4:
            raise VerifyException("cimq.conv: pads needs 4 values (top, left, bottom, right)")
        group = self.group.value.data
        if group < 1 or ws[0] % group or (xs[1] >= 0 and xs[1] != ws[1] * group):
            raise VerifyException(
                f"cimq.conv: input channels {xs[1]} != weight in-channels {ws[1]} * group {group}"
            )
        if ys[1] != ws[0]:
            raise VerifyException(f"cimq.conv: result channels {ys[1]} != weight out {ws[0]}")
        if w.per_channel and (w.channel_axis != 0 or len(w.scale_values) != ws[0]):
            raise VerifyException("cimq.conv: per-channel weight scales must be along axis 0")
        if acc.per_channel and acc.channel_axis != 1:
            raise VerifyException("cimq.conv: a per-channel accumulator is scaled along axis 1")


@irdl_op_definition
class MatMulOp(IRDLOperation):
    """Product with a static weight: ``acc[..., j] = sum_k in[..., k] * w[k, j]``.

    This is Gemm / Linear (with ``transB`` folded into the stored weight) and MatMul with a
    constant right operand. Shapes follow numpy's ``matmul``: a weight of rank > 2
    (``[..., K, N]``) is a batch of weights broadcast against the input's leading dims, a 1-D
    operand is a vector.
    """

    name = "cimq.matmul"
    input = operand_def(TensorType)
    weight = operand_def(TensorType)
    output = result_def(TensorType)
    layer = opt_attr_def(StringAttr)
    assembly_format = "$input `,` $weight attr-dict `:` functional-type(operands, results)"
    traits = traits_def(Pure())

    def __init__(self, x, w, result_type, *, layer=None):
        attrs = {"layer": StringAttr(layer)} if layer else {}
        super().__init__(operands=[x, w], result_types=[result_type], attributes=attrs)

    def verify_(self) -> None:
        x = quant_elem(self.input.type, "cimq.matmul input")
        w = quant_elem(self.weight.type, "cimq.matmul weight")
        _check_operand_bits(x, "the input", "cimq.matmul")
        _check_operand_bits(w, "the weight", "cimq.matmul")
        acc = _check_accumulator(self.output.type, x, w, "cimq.matmul")
        xs = tensor_type(self.input.type, "").get_shape()
        ws = tensor_type(self.weight.type, "").get_shape()
        ys = tensor_type(self.output.type, "").get_shape()
        if not xs or not ws:
            raise VerifyException("cimq.matmul operands must have rank >= 1")
        k = ws[-2] if len(ws) > 1 else ws[0]
        if not _dims_compatible(xs[-1], k):
            raise VerifyException(f"cimq.matmul: input inner dim {xs[-1:]} != weight rows {k}")
        rank = max(len(xs), len(ws), 2) - (len(xs) == 1) - (len(ws) == 1)
        if len(ys) != rank or (len(ws) > 1 and ys[-1] != ws[-1]):
            raise VerifyException(f"cimq.matmul: result shape {ys} does not match {xs} x {ws}")
        if w.per_channel and (w.channel_axis != len(ws) - 1 or len(w.scale_values) != ws[-1]):
            raise VerifyException("cimq.matmul: per-channel weight scales must be along the last axis")
        if acc.per_channel and acc.channel_axis != len(ys) - 1:
            raise VerifyException("cimq.matmul: a per-channel accumulator is scaled on the last axis")


@irdl_op_definition
class MatMulActOp(IRDLOperation):
    """Batched product of two activations (attention): ``acc = lhs @ rhs`` on the last two dims.

    On the crossbar ``rhs`` is written at run time (K^T for ``Q @ K^T``, V for ``A @ V``) and
    ``lhs`` is streamed.
    """

    name = "cimq.matmul_act"
    lhs = operand_def(TensorType)
    rhs = operand_def(TensorType)
    output = result_def(TensorType)
    layer = opt_attr_def(StringAttr)
    assembly_format = "$lhs `,` $rhs attr-dict `:` functional-type(operands, results)"
    traits = traits_def(Pure())

    def __init__(self, a, b, result_type, *, layer=None):
        attrs = {"layer": StringAttr(layer)} if layer else {}
        super().__init__(operands=[a, b], result_types=[result_type], attributes=attrs)

    def verify_(self) -> None:
        a = quant_elem(self.lhs.type, "cimq.matmul_act lhs")
        b = quant_elem(self.rhs.type, "cimq.matmul_act rhs")
        _check_operand_bits(a, "the streamed operand", "cimq.matmul_act")
        _check_operand_bits(b, "the written operand", "cimq.matmul_act")
        if b.per_channel:
            raise VerifyException("cimq.matmul_act: operands must have per-tensor scales")
        _check_accumulator(self.output.type, a, b, "cimq.matmul_act")
        ash = tensor_type(self.lhs.type, "").get_shape()
        bsh = tensor_type(self.rhs.type, "").get_shape()
        if len(ash) < 2 or len(bsh) < 2 or not _dims_compatible(ash[-1], bsh[-2]):
            raise VerifyException(f"cimq.matmul_act: shapes {ash} and {bsh} do not multiply")


# --------------------------------------------------------------------------------------------
# Host fallback: products cimc does not map to crossbars
# --------------------------------------------------------------------------------------------


class _HostProduct(IRDLOperation):
    """A Conv / Gemm / MatMul that runs on the host in float: its input or weight is not
    quantized. ``layer`` names the ONNX node, ``op`` its op type, ``reason`` why it is not on a
    crossbar; ``cimc report`` lists it as a host layer with zero crossbar cost."""

    layer = attr_def(StringAttr)
    op = attr_def(StringAttr)
    reason = attr_def(StringAttr)
    traits = traits_def(Pure())

    def _verify_floats(self, values: Sequence[Attribute]) -> None:
        for i, t in enumerate(values):
            float_elem(t, f"{self.name} operand {i}" if i < len(values) - 1 else f"{self.name} result")


@irdl_op_definition
class HostConvOp(_HostProduct):
    """2-D convolution of floats on the host (ONNX Conv: NCHW input, OIHW weight), products
    exact in float64 and rounded once to float32.

    ``%y = cimq.host_conv %x, %w {layer = "conv1", op = "Conv", reason = "input 'x' is not
    quantized", strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64:
    1, 1>, group = 1 : i64} : (tensor<1x3x8x8xf32>, tensor<4x3x3x3xf32>) -> tensor<1x4x6x6xf32>``
    """

    name = "cimq.host_conv"
    input = operand_def(TensorType)
    weight = operand_def(TensorType)
    output = result_def(TensorType)
    strides = attr_def(DenseArrayBase)
    pads = attr_def(DenseArrayBase)
    dilations = attr_def(DenseArrayBase)
    group = attr_def(IntegerAttr)
    assembly_format = "$input `,` $weight attr-dict `:` functional-type(operands, results)"

    def verify_(self) -> None:
        self._verify_floats([self.input.type, self.weight.type, self.output.type])
        xs, ws, ys = (tensor_type(v.type, "").get_shape() for v in (self.input, self.weight, self.output))
        if len(xs) != 4 or len(ws) != 4 or len(ys) != 4:
            raise VerifyException("cimq.host_conv works on 4-D NCHW tensors with OIHW weights")
        group = self.group.value.data
        if group < 1 or ws[0] % group or (xs[1] >= 0 and xs[1] != ws[1] * group) or ys[1] != ws[0]:
            raise VerifyException(f"cimq.host_conv: input {list(xs)}, weight {list(ws)} and group "
                                  f"{group} do not agree")


@irdl_op_definition
class HostMatMulOp(_HostProduct):
    """``lhs @ rhs`` of floats on the host (numpy's matmul rules), products exact in float64 and
    rounded once to float32. Gemm arrives here with its transposes and alpha applied.

    ``%y = cimq.host_matmul %x, %w {layer = "fc", op = "Gemm", reason = "..."} :
    (tensor<1x4xf32>, tensor<4x2xf32>) -> tensor<1x2xf32>``
    """

    name = "cimq.host_matmul"
    lhs = operand_def(TensorType)
    rhs = operand_def(TensorType)
    output = result_def(TensorType)
    assembly_format = "$lhs `,` $rhs attr-dict `:` functional-type(operands, results)"

    def verify_(self) -> None:
        self._verify_floats([self.lhs.type, self.rhs.type, self.output.type])
        a = tensor_type(self.lhs.type, "").get_shape()
        b = tensor_type(self.rhs.type, "").get_shape()
        k = b[-2] if len(b) > 1 else b[0] if b else -1
        if not a or not b or not _dims_compatible(a[-1], k):
            raise VerifyException(f"cimq.host_matmul: shapes {list(a)} and {list(b)} do not multiply")


#: Products that run on the host in float (the host fallback).
HOST_PRODUCTS = (HostConvOp, HostMatMulOp)


@irdl_op_definition
class BiasAddOp(IRDLOperation):
    """Add an int32 bias (same scale as the accumulator) along ``axis``: exact integer add."""

    name = "cimq.bias_add"
    input = operand_def(TensorType)
    bias = operand_def(TensorType)
    output = result_def(TensorType)
    axis = attr_def(IntegerAttr)
    assembly_format = "$input `,` $bias attr-dict `:` functional-type(operands, results)"
    traits = traits_def(Pure())

    def verify_(self) -> None:
        acc = quant_elem(self.input.type, "cimq.bias_add input")
        bias = quant_elem(self.bias.type, "cimq.bias_add bias")
        if acc.width != 32 or bias.width != 32:
            raise VerifyException("cimq.bias_add adds an s32 bias to an s32 accumulator")
        if len(tensor_type(self.bias.type, "").get_shape()) != 1:
            raise VerifyException("cimq.bias_add: the bias must be 1-D")
        if self.input.type != self.output.type:
            raise VerifyException("cimq.bias_add: result type must equal the input type")


@irdl_op_definition
class RequantizeOp(IRDLOperation):
    """Accumulator to a narrow quantized tensor: the fused host chain
    ``dequantize -> [* mul] -> [+ bias] -> [+ residual] -> [clamp] -> quantize``.

    ``y = float32(acc * acc_scale)``, then, in float32 and one rounding per step exactly as the
    unfused ops: ``y * mul`` (a constant per channel along ``mul_axis``, or a scalar),
    ``y + bias`` (per channel along ``bias_axis``, or a scalar), ``y + residual`` (a tensor of the
    result's shape), ``max(y, clamp_min)`` then ``min(y, clamp_max)`` when given (ReLU is
    ``clamp_min = 0``); the result is ``quantize(y)``. The optional second result ``value`` is
    ``y`` itself, for other users of the float (a residual branch).

    ``%q, %y = cimq.requantize %acc, %b residual %r {bias_axis = 1 : i64, clamp_min = 0.0 : f64}
    : (tensor<1x8x4x4x!cimq.q<s32:0.01>>, tensor<1x8x1x1xf32>, residual tensor<1x8x4x4xf32>)
    -> tensor<1x8x4x4x!cimq.q<u4:0.1>>, tensor<1x8x4x4xf32>``
    """

    name = "cimq.requantize"
    input = operand_def(TensorType)
    bias = opt_operand_def(TensorType)
    mul = opt_operand_def(TensorType)
    residual = opt_operand_def(TensorType)
    output = result_def(TensorType)
    value = opt_result_def(TensorType)
    bias_axis = opt_attr_def(IntegerAttr)
    mul_axis = opt_attr_def(IntegerAttr)
    clamp_min = opt_attr_def(FloatAttr)
    clamp_max = opt_attr_def(FloatAttr)
    irdl_options = (AttrSizedOperandSegments(as_property=True),)
    assembly_format = (
        "$input (`,` $bias^)? (`mul` $mul^)? (`residual` $residual^)? attr-dict `:` `(` type($input) "
        "(`,` type($bias)^)? (`,` `mul` type($mul)^)? (`,` `residual` type($residual)^)? `)` `->` "
        "type($output) (`,` type($value)^)?"
    )
    traits = traits_def(Pure())

    def verify_(self) -> None:
        acc = quant_elem(self.input.type, "cimq.requantize input")
        out = quant_elem(self.output.type, "cimq.requantize result")
        if acc.width != 32:
            raise VerifyException("cimq.requantize input must be an s32 accumulator")
        if out.width > 8:
            raise VerifyException("cimq.requantize produces 1..8-bit tensors")
        for what, operand in (("bias", self.bias), ("mul", self.mul), ("residual", self.residual)):
            if operand is not None:
                float_elem(operand.type, f"cimq.requantize {what}")
        if self.residual is not None:
            _check_same_shape(self.residual.type, self.output.type, "cimq.requantize residual")
        if self.value is not None:
            float_elem(self.value.type, "cimq.requantize value")
            _check_same_shape(self.input.type, self.value.type, "cimq.requantize value")
        _check_same_shape(self.input.type, self.output.type, "cimq.requantize")


# --------------------------------------------------------------------------------------------
# Host ops
# --------------------------------------------------------------------------------------------


def _check_same_shape(a: Attribute, b: Attribute, op: str) -> None:
    sa = tensor_type(a, f"{op} operand").get_shape()
    sb = tensor_type(b, f"{op} result").get_shape()
    if len(sa) != len(sb) or not all(_dims_compatible(x, y) for x, y in zip(sa, sb)):
        raise VerifyException(f"{op}: result shape {sb} differs from operand shape {sa}")


class _UnaryFloat(IRDLOperation):
    input = operand_def(TensorType)
    output = result_def(TensorType)
    assembly_format = "$input attr-dict `:` functional-type(operands, results)"
    traits = traits_def(Pure())

    def verify_(self) -> None:
        float_elem(self.input.type, f"{self.name} input")
        float_elem(self.output.type, f"{self.name} result")
        _check_same_shape(self.input.type, self.output.type, self.name)


@irdl_op_definition
class ReluOp(_UnaryFloat):
    """``max(x, 0)`` on floats."""

    name = "cimq.relu"


@irdl_op_definition
class ClipOp(_UnaryFloat):
    """``min(max(x, min), max)`` on floats."""

    name = "cimq.clip"
    min = opt_attr_def(FloatAttr)
    max = opt_attr_def(FloatAttr)


@irdl_op_definition
class GeluOp(_UnaryFloat):
    """GELU: the exact (erf) form, or the tanh approximation with ``approximate = "tanh"``."""

    name = "cimq.gelu"
    approximate = opt_attr_def(StringAttr)

    def verify_(self) -> None:
        super().verify_()
        if self.approximate is not None and self.approximate.data not in ("none", "tanh"):
            raise VerifyException(
                f"cimq.gelu: approximate must be \"none\" or \"tanh\", got "
                f"\"{self.approximate.data}\""
            )


@irdl_op_definition
class ErfOp(_UnaryFloat):
    """Elementwise erf."""

    name = "cimq.erf"


@irdl_op_definition
class SqrtOp(_UnaryFloat):
    """Elementwise square root."""

    name = "cimq.sqrt"


@irdl_op_definition
class SoftmaxOp(_UnaryFloat):
    """Softmax along ``axis``."""

    name = "cimq.softmax"
    axis = attr_def(IntegerAttr)


class _BinaryFloat(IRDLOperation):
    lhs = operand_def(TensorType)
    rhs = operand_def(TensorType)
    output = result_def(TensorType)
    assembly_format = "$lhs `,` $rhs attr-dict `:` functional-type(operands, results)"
    traits = traits_def(Pure())

    def verify_(self) -> None:
        for what, value in (("lhs", self.lhs), ("rhs", self.rhs), ("result", self.output)):
            float_elem(value.type, f"{self.name} {what}")


@irdl_op_definition
class AddOp(_BinaryFloat):
    """Elementwise add with numpy broadcasting (residual connections, float biases)."""

    name = "cimq.add"


@irdl_op_definition
class SubOp(_BinaryFloat):
    """Elementwise subtract with broadcasting."""

    name = "cimq.sub"


@irdl_op_definition
class MulOp(_BinaryFloat):
    """Elementwise multiply with broadcasting."""

    name = "cimq.mul"


@irdl_op_definition
class DivOp(_BinaryFloat):
    """Elementwise divide with broadcasting (attention's 1/sqrt(d) scaling)."""

    name = "cimq.div"


@irdl_op_definition
class LayerNormOp(IRDLOperation):
    """Layer normalisation over the trailing axes from ``axis``: ``(x-mean)/sqrt(var+eps)*g+b``."""

    name = "cimq.layernorm"
    input = operand_def(TensorType)
    scale = operand_def(TensorType)
    bias = opt_operand_def(TensorType)
    output = result_def(TensorType)
    axis = attr_def(IntegerAttr)
    epsilon = attr_def(FloatAttr)
    assembly_format = (
        "$input `,` $scale (`,` $bias^)? attr-dict `:` functional-type(operands, results)"
    )
    traits = traits_def(Pure())

    def verify_(self) -> None:
        float_elem(self.input.type, "cimq.layernorm input")
        float_elem(self.output.type, "cimq.layernorm result")


class _Pool(IRDLOperation):
    input = operand_def(TensorType)
    output = result_def(TensorType)
    kernel = attr_def(DenseArrayBase)
    strides = attr_def(DenseArrayBase)
    pads = attr_def(DenseArrayBase)
    assembly_format = "$input attr-dict `:` functional-type(operands, results)"
    traits = traits_def(Pure())

    def verify_(self) -> None:
        if len(ints(self.kernel)) != 2 or len(ints(self.strides)) != 2:
            raise VerifyException(f"{self.name}: kernel and strides need 2 values")
        if len(ints(self.pads)) != 4:
            raise VerifyException(f"{self.name}: pads needs 4 values (top, left, bottom, right)")
        if tensor_type(self.input.type, "").element_type != tensor_type(
            self.output.type, ""
        ).element_type:
            raise VerifyException(f"{self.name}: result element type must equal the input's")


@irdl_op_definition
class MaxPoolOp(_Pool):
    """2-D max pooling (floats, or quantized integers: exact since quantization is monotone)."""

    name = "cimq.maxpool"
    dilations = opt_attr_def(DenseArrayBase)
    ceil_mode = opt_attr_def(IntegerAttr)


@irdl_op_definition
class AvgPoolOp(_Pool):
    """2-D average pooling on floats."""

    name = "cimq.avgpool"
    dilations = opt_attr_def(DenseArrayBase)
    count_include_pad = opt_attr_def(IntegerAttr)
    ceil_mode = opt_attr_def(IntegerAttr)

    def verify_(self) -> None:
        super().verify_()
        float_elem(self.input.type, "cimq.avgpool input")


@irdl_op_definition
class GlobalAvgPoolOp(IRDLOperation):
    """Mean over the spatial axes (2, 3), keeping them as size 1; floats."""

    name = "cimq.global_avgpool"
    input = operand_def(TensorType)
    output = result_def(TensorType)
    assembly_format = "$input attr-dict `:` functional-type(operands, results)"
    traits = traits_def(Pure())

    def verify_(self) -> None:
        float_elem(self.input.type, "cimq.global_avgpool input")


@irdl_op_definition
class ReduceMeanOp(IRDLOperation):
    """Mean over ``axes`` (keepdims as given); floats."""

    name = "cimq.reduce_mean"
    input = operand_def(TensorType)
    output = result_def(TensorType)
    axes = attr_def(DenseArrayBase)
    keepdims = attr_def(IntegerAttr)
    assembly_format = "$input attr-dict `:` functional-type(operands, results)"
    traits = traits_def(Pure())


class _Layout(IRDLOperation):
    """Shape ops work on any element type and keep it."""

    input = operand_def(TensorType)
    output = result_def(TensorType)
    assembly_format = "$input attr-dict `:` functional-type(operands, results)"
    traits = traits_def(Pure())

    def verify_(self) -> None:
        a = tensor_type(self.input.type, f"{self.name} input").element_type
        b = tensor_type(self.output.type, f"{self.name} result").element_type
        if a != b:
            raise VerifyException(f"{self.name}: result element type must equal the input's")


@irdl_op_definition
class ReshapeOp(_Layout):
    """Reshape to ``shape`` (ONNX rules: 0 keeps the input's dim, -1 is inferred)."""

    name = "cimq.reshape"
    shape = attr_def(DenseArrayBase)


@irdl_op_definition
class FlattenOp(_Layout):
    """Flatten to 2-D at ``axis``."""

    name = "cimq.flatten"
    axis = attr_def(IntegerAttr)


@irdl_op_definition
class TransposeOp(_Layout):
    """Permute axes by ``perm``."""

    name = "cimq.transpose"
    perm = attr_def(DenseArrayBase)

    def verify_(self) -> None:
        super().verify_()
        perm = ints(self.perm)
        if sorted(perm) != list(range(len(perm))):
            raise VerifyException(f"cimq.transpose: {list(perm)} is not a permutation")
        rank = len(tensor_type(self.input.type, "").get_shape())
        if len(perm) != rank:
            raise VerifyException(f"cimq.transpose: perm has {len(perm)} axes, input has {rank}")
        q = tensor_type(self.input.type, "").element_type
        if isinstance(q, QuantType) and q.per_channel:
            raise VerifyException("cimq.transpose of a per-channel tensor is not supported")


@irdl_op_definition
class GatherOp(_Layout):
    """ONNX Gather with constant indices along ``axis``: either one ``index`` (the axis is
    dropped: ViT's class token) or an ``indices`` tensor (the axis is replaced by its shape)."""

    name = "cimq.gather"
    axis = attr_def(IntegerAttr)
    index = opt_attr_def(IntegerAttr)
    indices = opt_attr_def(DenseIntOrFPElementsAttr)

    def verify_(self) -> None:
        super().verify_()
        if (self.index is None) == (self.indices is None):
            raise VerifyException("cimq.gather needs exactly one of index and indices")


@irdl_op_definition
class PadOp(_Layout):
    """Constant padding: ``pads`` holds the ONNX begins of every axis, then the ends (negative
    values crop). ``value`` is the pad value; on a quantized tensor it is an integer of its type
    (the zero point pads a real zero)."""

    name = "cimq.pad"
    pads = attr_def(DenseArrayBase)
    value = opt_attr_def(FloatAttr)

    def verify_(self) -> None:
        super().verify_()
        rank = len(tensor_type(self.input.type, "").get_shape())
        if len(ints(self.pads)) != 2 * rank:
            raise VerifyException(f"cimq.pad: pads needs {2 * rank} values for rank {rank}")
        q = tensor_type(self.input.type, "").element_type
        v = 0.0 if self.value is None else float(self.value.value.data)
        if isinstance(q, QuantType) and (v != int(v) or not q.qmin <= v <= q.qmax):
            raise VerifyException(
                f"cimq.pad: pad value {v} is not an integer of {q.spec()} [{q.qmin}, {q.qmax}]"
            )


@irdl_op_definition
class SliceOp(_Layout):
    """Static slice: ``starts``, ``ends``, ``axes``, ``steps`` (ONNX Slice with constants)."""

    name = "cimq.slice"
    starts = attr_def(DenseArrayBase)
    ends = attr_def(DenseArrayBase)
    axes = attr_def(DenseArrayBase)
    steps = attr_def(DenseArrayBase)


@irdl_op_definition
class ConcatOp(IRDLOperation):
    """Concatenate along ``axis``; all inputs and the result share one element type."""

    name = "cimq.concat"
    inputs = var_operand_def(TensorType)
    output = result_def(TensorType)
    axis = attr_def(IntegerAttr)
    assembly_format = "$inputs attr-dict `:` functional-type(operands, results)"
    traits = traits_def(Pure())

    def verify_(self) -> None:
        if not self.inputs:
            raise VerifyException("cimq.concat needs at least one input")
        out = tensor_type(self.output.type, "cimq.concat result").element_type
        for v in self.inputs:
            if tensor_type(v.type, "cimq.concat input").element_type != out:
                raise VerifyException("cimq.concat: inputs must have the result's element type")


CIMQ = Dialect(
    "cimq",
    [
        QuantizeOp,
        DequantizeOp,
        ConstOp,
        ConvOp,
        MatMulOp,
        MatMulActOp,
        HostConvOp,
        HostMatMulOp,
        BiasAddOp,
        RequantizeOp,
        ReluOp,
        ClipOp,
        GeluOp,
        ErfOp,
        SqrtOp,
        SoftmaxOp,
        AddOp,
        SubOp,
        MulOp,
        DivOp,
        LayerNormOp,
        MaxPoolOp,
        AvgPoolOp,
        GlobalAvgPoolOp,
        ReduceMeanOp,
        ReshapeOp,
        FlattenOp,
        TransposeOp,
        GatherOp,
        SliceOp,
        PadOp,
        ConcatOp,
    ],
    [QuantType, BlobAttr],
)

#: Ops whose products run on crossbars after lowering (weights static or written at run time).
CROSSBAR_OPS = (ConvOp, MatMulOp, MatMulActOp)

__all__ = [name for name in dir() if name.endswith("Op")] + ["CIMQ", "QuantType", "BlobAttr", "f32"]
