"""Helpers of the ``xbar`` verifiers: operand shapes, element types, bit widths.
"""

from __future__ import annotations

from xdsl.dialects.builtin import (
    IntegerAttr,
    IntegerType,
    TensorType,
    i64,
)
from xdsl.ir import Attribute
from xdsl.utils.exceptions import VerifyException

from cimc.dialects.cimq.attrs import QuantType


def tensor_shape(value_type: Attribute, what: str) -> tuple[int, ...]:
    if not isinstance(value_type, TensorType):
        raise VerifyException(f"{what} must be a tensor, got {value_type}")
    return tuple(value_type.get_shape())


def element_type(value_type: Attribute) -> Attribute:
    assert isinstance(value_type, TensorType)
    return value_type.element_type


def quant_element(value_type: Attribute, what: str) -> QuantType:
    tensor_shape(value_type, what)
    elem = element_type(value_type)
    if not isinstance(elem, QuantType):
        raise VerifyException(f"{what} must be a quantized tensor (!cimq.q), got {value_type}")
    return elem


def int_tensor_shape(value_type: Attribute, what: str) -> tuple[int, ...]:
    shape = tensor_shape(value_type, what)
    if not isinstance(element_type(value_type), IntegerType):
        raise VerifyException(f"{what} must be an integer tensor, got {value_type}")
    return shape


def int_value(attr: IntegerAttr | None, default: int = 0) -> int:
    return default if attr is None else int(attr.value.data)




def dims_match(a: int, b: int) -> bool:
    return a == b or a < 0 or b < 0


def check_bits(w_bits: int, a_bits: int, what: str) -> None:
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


def check_fits(q: QuantType, bits: int, what: str, op: str, *, as_signed: bool) -> None:
    """The operand's integers must fit the ``bits`` the crossbar streams / stores."""
    need = operand_bits(q) if as_signed else q.width
    if bits < need:
        raise VerifyException(
            f"{op}: {what} is {q.spec()} and needs {need} bits but the layer uses {bits}; "
            "bits can only grow"
        )


def i64_attr(value: int) -> IntegerAttr:
    """An ``i64`` integer attribute (properties of xbar ops)."""
    return IntegerAttr(int(value), i64)
