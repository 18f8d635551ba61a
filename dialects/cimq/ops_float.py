"""``cimq`` host ops on float tensors: activations, elementwise arithmetic, layernorm, pooling
and reductions.
"""

from __future__ import annotations

from xdsl.dialects.builtin import (
    DenseArrayBase,
    FloatAttr,
    IntegerAttr,
    StringAttr,
    TensorType,
)
from xdsl.irdl import (
    IRDLOperation,
    attr_def,
    irdl_op_definition,
    operand_def,
    opt_attr_def,
    opt_operand_def,
    result_def,
    traits_def,
)
from xdsl.traits import Pure
from xdsl.utils.exceptions import VerifyException

from cimc.dialects.cimq.helpers import (
    check_same_shape,
    float_elem,
    ints,
    tensor_type,
)


class _UnaryFloat(IRDLOperation):
    input = operand_def(TensorType)
    output = result_def(TensorType)
    assembly_format = "$input attr-dict `:` functional-type(operands, results)"
    traits = traits_def(Pure())

    def verify_(self) -> None:
        float_elem(self.input.type, f"{self.name} input")
        float_elem(self.output.type, f"{self.name} result")
        check_same_shape(self.input.type, self.output.type, self.name)


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
