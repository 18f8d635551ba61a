"""Helpers of the ``cimq`` verifiers and of integer-array properties.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from xdsl.dialects.builtin import (
    DenseArrayBase,
    Float32Type,
    TensorType,
    i64,
)
from xdsl.ir import Attribute
from xdsl.utils.exceptions import VerifyException

from cimc.dialects.cimq.attrs import QuantType


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


def dims_compatible(a: int, b: int) -> bool:
    return a == b or a < 0 or b < 0


def check_accumulator(result_type: Attribute, x: QuantType, w: QuantType, op: str) -> QuantType:
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


def check_operand_bits(t: QuantType, what: str, op: str) -> None:
    if t.width > 8:
        raise VerifyException(
            f"{op}: {what} has {t.width} bits; crossbar operands must have 1..8 bits"
        )



def check_same_shape(a: Attribute, b: Attribute, op: str) -> None:
    sa = tensor_type(a, f"{op} operand").get_shape()
    sb = tensor_type(b, f"{op} result").get_shape()
    if len(sa) != len(sb) or not all(dims_compatible(x, y) for x, y in zip(sa, sb)):
        raise VerifyException(f"{op}: result shape {sb} differs from operand shape {sa}")
