"""Types and attributes of ``cimq``: ``!cimq.q`` (:class:`QuantType`), ``#cimq.blob``
(:class:`BlobAttr`) and the arrays constants hold.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from xdsl.dialects.builtin import (
    ArrayAttr,
    DenseIntOrFPElementsAttr,
    Float32Type,
    Float64Type,
    FloatData,
    IntAttr,
    IntegerType,
    StringAttr,
)
from xdsl.ir import Attribute, Data, ParametrizedAttribute, TypeAttribute
from xdsl.irdl import (
    irdl_attr_definition,
)
from xdsl.parser import AttrParser
from xdsl.printer import Printer
from xdsl.utils.exceptions import VerifyException

from cimc.weights import Blob


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
