"""``cimq`` products: the crossbar candidates (conv, matmul, matmul_act) and the host fallback
(host_conv, host_matmul).
"""

from __future__ import annotations

from collections.abc import Sequence

from xdsl.dialects.builtin import (
    DenseArrayBase,
    IntegerAttr,
    StringAttr,
    TensorType,
    i64,
)
from xdsl.ir import Attribute
from xdsl.irdl import (
    IRDLOperation,
    attr_def,
    irdl_op_definition,
    operand_def,
    opt_attr_def,
    result_def,
    traits_def,
)
from xdsl.traits import Pure
from xdsl.utils.exceptions import VerifyException

from cimc.dialects.cimq.helpers import (
    check_accumulator,
    check_operand_bits,
    dims_compatible,
    float_elem,
    i64_array,
    ints,
    quant_elem,
    tensor_type,
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
        check_operand_bits(x, "the input", "cimq.conv")
        check_operand_bits(w, "the weight", "cimq.conv")
        acc = check_accumulator(self.output.type, x, w, "cimq.conv")
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
        check_operand_bits(x, "the input", "cimq.matmul")
        check_operand_bits(w, "the weight", "cimq.matmul")
        acc = check_accumulator(self.output.type, x, w, "cimq.matmul")
        xs = tensor_type(self.input.type, "").get_shape()
        ws = tensor_type(self.weight.type, "").get_shape()
        ys = tensor_type(self.output.type, "").get_shape()
        if not xs or not ws:
            raise VerifyException("cimq.matmul operands must have rank >= 1")
        k = ws[-2] if len(ws) > 1 else ws[0]
        if not dims_compatible(xs[-1], k):
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
        check_operand_bits(a, "the streamed operand", "cimq.matmul_act")
        check_operand_bits(b, "the written operand", "cimq.matmul_act")
        if b.per_channel:
            raise VerifyException("cimq.matmul_act: operands must have per-tensor scales")
        check_accumulator(self.output.type, a, b, "cimq.matmul_act")
        ash = tensor_type(self.lhs.type, "").get_shape()
        bsh = tensor_type(self.rhs.type, "").get_shape()
        if len(ash) < 2 or len(bsh) < 2 or not dims_compatible(ash[-1], bsh[-2]):
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
        if not a or not b or not dims_compatible(a[-1], k):
            raise VerifyException(f"cimq.host_matmul: shapes {list(a)} and {list(b)} do not multiply")


#: Products that run on the host in float (the host fallback).
HOST_PRODUCTS = (HostConvOp, HostMatMulOp)


#: Ops whose products run on crossbars after lowering (weights static or written at run time).
CROSSBAR_OPS = (ConvOp, MatMulOp, MatMulActOp)
