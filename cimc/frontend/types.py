"""ONNX element types and constants to numpy and xDSL types."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper
from xdsl.dialects.builtin import IntegerType, Signedness, f32, i8, i32, i64
from xdsl.ir import Attribute

from cimc.errors import UnsupportedModelError
from cimc.frontend.values import Const

# ONNX element type -> (numpy dtype, bits, signed) for the integer types of quantized tensors.
INT_TYPES: dict[int, tuple[Any, int, bool]] = {
    onnx.TensorProto.INT8: (np.int8, 8, True),
    onnx.TensorProto.UINT8: (np.uint8, 8, False),
    onnx.TensorProto.INT16: (np.int16, 16, True),
    onnx.TensorProto.UINT16: (np.uint16, 16, False),
    onnx.TensorProto.INT32: (np.int32, 32, True),
}
INT4: dict[int, tuple[int, bool]] = {
    onnx.TensorProto.INT4: (4, True),
    onnx.TensorProto.UINT4: (4, False),
}


def np_bits(dtype: np.dtype) -> tuple[int, bool]:
    """(bits, signed) of a numpy integer dtype."""
    return np.dtype(dtype).itemsize * 8, np.dtype(dtype).kind == "i"


def np_int(bits: int, signed: bool) -> Any:
    """The smallest numpy integer dtype holding ``bits``."""
    if bits <= 8:
        return np.int8 if signed else np.uint8
    if bits <= 16:
        return np.int16 if signed else np.uint16
    return np.int32 if signed else np.uint32


def storage_from_enum(elem: int) -> tuple[int, bool] | str:
    """(bits, signed) of an ONNX integer element type, else its lower-case name."""
    if elem in INT_TYPES:
        _, bits, signed = INT_TYPES[elem]
        return bits, signed
    if elem in INT4:
        return INT4[elem]
    return onnx.TensorProto.DataType.Name(elem).lower()


def storage_of(zp: Const) -> tuple[int, bool] | str:
    """(bits, signed) of the storage type a zero point gives a Q / DQ node."""
    if zp.int_bits is not None:
        return zp.int_bits
    if np.issubdtype(zp.arr.dtype, np.integer):
        return np_bits(zp.arr.dtype)
    return str(zp.arr.dtype)


def xdsl_elem(dtype: np.dtype) -> Attribute:
    """The xDSL element type of an inline constant."""
    dtype = np.dtype(dtype)
    if dtype == np.float32:
        return f32
    if dtype == np.int8:
        return i8
    if dtype == np.uint8:
        return IntegerType(8, Signedness.UNSIGNED)
    if dtype == np.int32:
        return i32
    if dtype == np.int64:
        return i64
    raise UnsupportedModelError(f"constants of type {dtype} are not supported")


def init_const(init: onnx.TensorProto) -> Const:
    """An initializer as a :class:`Const` (4-bit storage types remember their width)."""
    if init.data_type in INT4:
        arr = numpy_helper.to_array(init)
        bits, signed = INT4[init.data_type]
        return Const(np.asarray(arr, dtype=np.int8 if signed else np.uint8), origin=init.name,
                     int_bits=(bits, signed))
    return Const(numpy_helper.to_array(init), origin=init.name)
