"""The cimc model zoo: Brevitas mixed-precision models built from a bit-width policy.

A policy is an ``(L, 2)`` int array of ``[w_bits, a_bits]`` per crossbar layer (Conv, Linear and
attention's activation-activation matmuls), in forward-execution order, which is also the order of
the crossbar nodes in the ONNX export. ``w_bits`` is the weight quantizer of the layer (for
attention ``Q @ K^T`` / ``A @ V``: the quantizer of K / V); ``a_bits`` is the layer's own input
quantizer (Q / the softmax output). See :mod:`cimc.models.cnn` and :mod:`cimc.models.vit` for the
layer order of each model.

Quantizers: weights signed symmetric narrow range, per-tensor scale (``per_channel=True``: per
output channel); activations zero point 0, unsigned after a ReLU, signed elsewhere; bias int32
(``Int32Bias``, scale ``s_in * s_w``). 1-bit widths are rejected (Brevitas cannot export them as
QCDQ). A layer at 8-bit activations has no Clip in the export.
"""

from cimc.models.export import export_onnx, zoo_onnx
from cimc.models.policy import (
    apply_constraints,
    load_policy,
    save_policy,
    validate_policy,
)
from cimc.models.zoo import (
    MODEL_NAMES,
    build,
    input_shape,
    layer_names,
    num_classes,
    num_layers,
    resolve_model,
)

__all__ = [
    "MODEL_NAMES",
    "apply_constraints",
    "build",
    "export_onnx",
    "input_shape",
    "layer_names",
    "load_policy",
    "num_classes",
    "num_layers",
    "resolve_model",
    "save_policy",
    "validate_policy",
    "zoo_onnx",
]
