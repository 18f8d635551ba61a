"""``cimq`` layout ops: reshape, flatten, transpose, gather, pad, slice and concat (any element
type, kept).
"""

from __future__ import annotations

from xdsl.dialects.builtin import (
    DenseArrayBase,
    DenseIntOrFPElementsAttr,
    FloatAttr,
    IntegerAttr,
    TensorType,
)
from xdsl.irdl import (
    IRDLOperation,
    attr_def,
    irdl_op_definition,
    operand_def,
    opt_attr_def,
    result_def,
    traits_def,
    var_operand_def,
)
from xdsl.traits import Pure
from xdsl.utils.exceptions import VerifyException

from cimc.dialects.cimq.attrs import QuantType
from cimc.dialects.cimq.helpers import (
    ints,
    tensor_type,
)


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
