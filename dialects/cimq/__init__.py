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

The dialect is a package laid out like xDSL's larger dialects: :mod:`.attrs` (types and
attributes), :mod:`.helpers` (verifier helpers), and the ops by group in :mod:`.ops_quant`,
:mod:`.ops_crossbar`, :mod:`.ops_float` and :mod:`.ops_layout`. This module defines the
:class:`~xdsl.ir.Dialect` and re-exports every op and attribute, so ``cimq.ConvOp`` keeps working.
"""

from __future__ import annotations

from xdsl.ir import Dialect

from cimc.dialects.cimq.attrs import (
    BlobAttr,
    BlobData,
    QuantType,
    constant_array,
    dense_to_numpy,
    format_scale,
)
from cimc.dialects.cimq.helpers import (
    float_elem,
    i64_array,
    ints,
    quant_elem,
    tensor_type,
)
from cimc.dialects.cimq.ops_crossbar import (
    CROSSBAR_OPS,
    HOST_PRODUCTS,
    ConvOp,
    HostConvOp,
    HostMatMulOp,
    MatMulActOp,
    MatMulOp,
)
from cimc.dialects.cimq.ops_float import (
    AddOp,
    AvgPoolOp,
    ClipOp,
    DivOp,
    ErfOp,
    GeluOp,
    GlobalAvgPoolOp,
    LayerNormOp,
    MaxPoolOp,
    MulOp,
    ReduceMeanOp,
    ReluOp,
    SoftmaxOp,
    SqrtOp,
    SubOp,
)
from cimc.dialects.cimq.ops_layout import (
    ConcatOp,
    FlattenOp,
    GatherOp,
    PadOp,
    ReshapeOp,
    SliceOp,
    TransposeOp,
)
from cimc.dialects.cimq.ops_quant import (
    BiasAddOp,
    ConstOp,
    DequantizeOp,
    QuantizeOp,
    RequantizeOp,
)

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

__all__ = [
    "AddOp",
    "AvgPoolOp",
    "BiasAddOp",
    "BlobAttr",
    "BlobData",
    "CIMQ",
    "CROSSBAR_OPS",
    "ClipOp",
    "ConcatOp",
    "ConstOp",
    "ConvOp",
    "DequantizeOp",
    "DivOp",
    "ErfOp",
    "FlattenOp",
    "GatherOp",
    "GeluOp",
    "GlobalAvgPoolOp",
    "HOST_PRODUCTS",
    "HostConvOp",
    "HostMatMulOp",
    "LayerNormOp",
    "MatMulActOp",
    "MatMulOp",
    "MaxPoolOp",
    "MulOp",
    "PadOp",
    "QuantType",
    "QuantizeOp",
    "ReduceMeanOp",
    "ReluOp",
    "RequantizeOp",
    "ReshapeOp",
    "SliceOp",
    "SoftmaxOp",
    "SqrtOp",
    "SubOp",
    "TransposeOp",
    "constant_array",
    "dense_to_numpy",
    "float_elem",
    "format_scale",
    "i64_array",
    "ints",
    "quant_elem",
    "tensor_type",
]
