"""``xbar-mm`` level ops: layer-level crossbar products (``xbar.matmul``, ``xbar.matmul_dyn``)
and the host reshapes around them (im2col, col2im, unpack).
"""

from __future__ import annotations

from xdsl.dialects.builtin import (
    I64,
    DenseArrayBase,
    IntegerAttr,
    StringAttr,
    TensorType,
    UnitAttr,
)
from xdsl.irdl import (
    IRDLOperation,
    ParsePropInAttrDict,
    irdl_op_definition,
    operand_def,
    opt_prop_def,
    prop_def,
    result_def,
    traits_def,
)
from xdsl.traits import Pure
from xdsl.utils.exceptions import VerifyException

from cimc.dialects.cimq.helpers import ints
from cimc.dialects.xbar.helpers import (
    check_bits,
    check_fits,
    dims_match,
    element_type,
    int_tensor_shape,
    int_value,
    quant_element,
    tensor_shape,
)
from cimc.target.geometry import KINDS


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
        q = quant_element(self.input.type, "xbar.im2col input")
        if element_type(self.output.type) != q:
            raise VerifyException("xbar.im2col: patches keep the input's element type")
        xs = tensor_shape(self.input.type, "xbar.im2col input")
        ys = tensor_shape(self.output.type, "xbar.im2col result")
        if len(xs) != 4 or len(ys) != 4:
            raise VerifyException("xbar.im2col maps NCHW to [B, G, P, n] patches")
        k, s, p, d = (ints(a) for a in (self.kernel, self.strides, self.pads, self.dilations))
        if len(k) != 2 or len(s) != 2 or len(d) != 2 or len(p) != 4:
            raise VerifyException("xbar.im2col: kernel/strides/dilations need 2 values, pads 4")
        g = int_value(self.groups)
        if g < 1 or xs[1] % g:
            raise VerifyException(f"xbar.im2col: {xs[1]} channels do not split in {g} groups")
        ho = (xs[2] + p[0] + p[2] - d[0] * (k[0] - 1) - 1) // s[0] + 1
        wo = (xs[3] + p[1] + p[3] - d[1] * (k[1] - 1) - 1) // s[1] + 1
        want = (xs[0], g, ho * wo, xs[1] // g * k[0] * k[1])
        if not all(dims_match(a, b) for a, b in zip(ys, want)):
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
        xs = int_tensor_shape(self.input.type, "xbar.col2im input")
        acc = quant_element(self.output.type, "xbar.col2im result")
        ys = tensor_shape(self.output.type, "xbar.col2im result")
        if acc.width != 32 or len(xs) != 4 or len(ys) != 4:
            raise VerifyException("xbar.col2im maps [B, G, P, m] to an NCHW s32 accumulator")
        if ys[1] != xs[1] * xs[3] or ys[2] * ys[3] != xs[2] or not dims_match(xs[0], ys[0]):
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
        xs = int_tensor_shape(self.input.type, "xbar.unpack input")
        acc = quant_element(self.output.type, "xbar.unpack result")
        ys = tensor_shape(self.output.type, "xbar.unpack result")
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
        x = quant_element(self.lhs.type, f"{op} lhs")
        w = quant_element(self.rhs.type, f"{op} rhs")
        xs = tensor_shape(self.lhs.type, f"{op} lhs")
        ws = tensor_shape(self.rhs.type, f"{op} rhs")
        ys = int_tensor_shape(self.output.type, f"{op} result")
        if self.kind.data not in KINDS:
            raise VerifyException(f"{op}: kind '{self.kind.data}' is not one of {', '.join(KINDS)}")
        wb, ab = int_value(self.w_bits), int_value(self.a_bits)
        check_bits(wb, ab, op)
        check_fits(w, wb, "the weight", op, as_signed=False)  # unsigned at its width: unsigned cells
        check_fits(x, ab, "the input", op, as_signed=False)
        if len(xs) != 4 or len(ws) != rhs_rank or len(ys) != 4:
            raise VerifyException(
                f"{op}: expected lhs [B, H, P, n], rhs of rank {rhs_rank}, result [B, H, P, m]"
            )
        b, h, p, n = xs
        m = ws[-1]
        if not dims_match(ws[-2], n) or ws[-3] != h:
            raise VerifyException(f"{op}: lhs {list(xs)} and rhs {list(ws)} do not multiply")
        if tuple(ys[1:]) != (h, p, m) or not dims_match(ys[0], b):
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
