"""``cimq`` ops at the float boundary (quantize, dequantize), constants and the integer ops
around a product (bias_add, requantize).
"""

from __future__ import annotations

from xdsl.dialects.builtin import (
    DenseIntOrFPElementsAttr,
    FloatAttr,
    IntegerAttr,
    StringAttr,
    TensorType,
)
from xdsl.ir import Attribute
from xdsl.irdl import (
    AttrSizedOperandSegments,
    IRDLOperation,
    attr_def,
    irdl_op_definition,
    operand_def,
    opt_attr_def,
    opt_operand_def,
    opt_result_def,
    result_def,
    traits_def,
)
from xdsl.traits import Pure
from xdsl.utils.exceptions import VerifyException

from cimc.dialects.cimq.attrs import BlobAttr
from cimc.dialects.cimq.helpers import (
    check_same_shape,
    float_elem,
    quant_elem,
    tensor_type,
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
        check_same_shape(self.input.type, self.output.type, "cimq.quantize")


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
        check_same_shape(self.input.type, self.output.type, "cimq.dequantize")


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
# Around a product: bias and requantize
# --------------------------------------------------------------------------------------------


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
            check_same_shape(self.residual.type, self.output.type, "cimq.requantize residual")
        if self.value is not None:
            float_elem(self.value.type, "cimq.requantize value")
            check_same_shape(self.input.type, self.value.type, "cimq.requantize value")
        check_same_shape(self.input.type, self.output.type, "cimq.requantize")
