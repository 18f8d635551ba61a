"""QONNX input: ``Quant`` nodes (FINN's native format) converted to QuantizeLinear / Clip /
DequantizeLinear with the ``qonnx`` package's own transformations (``cleanup_model``,
``InferShapes``, ``QuantToQCDQ``), then imported like any QCDQ file.

What the conversion leaves (BipolarQuant, Trunc, Quant nodes it cannot express) is refused with
one line naming the node and the reason.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from cimc.errors import UnsupportedModelError
from cimc.frontend.load import attributes, node_name

QONNX_DOMAINS = ("qonnx.custom_op.general", "onnx.brevitas", "finn.custom_op.general")


def is_qonnx(model: onnx.ModelProto) -> bool:
    """The graph has nodes of a QONNX custom-op domain."""
    return any(n.domain in QONNX_DOMAINS for n in model.graph.node)


def to_qcdq(model: onnx.ModelProto, path: Path) -> onnx.ModelProto:
    """The model with its QONNX quantizers rewritten as QCDQ by ``qonnx`` itself."""
    _check_quantizers(model)  # before qonnx touches it: the nodes still have the file's names
    try:
        passes = _qonnx_passes()
    except ImportError:
        raise UnsupportedModelError(
            f"{path}: a QONNX model (Quant nodes); converting it needs the qonnx package: "
            "pip install 'cimc[qonnx]'"
        ) from None
    import warnings

    from qonnx.core.modelwrapper import ModelWrapper

    wrapper = ModelWrapper(model)
    for node in wrapper.graph.node:  # qonnx's cleanup_model does the same
        if node.domain in QONNX_DOMAINS and node.op_type in ("Quant", "Trunc", "BipolarQuant"):
            node.domain = "qonnx.custom_op.general"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for transformation in passes:
                wrapper = wrapper.transform(transformation)
    except Exception as exc:  # noqa: BLE001 (qonnx raises many kinds on malformed graphs)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UnsupportedModelError(f"{path}: QONNX conversion failed ({first})") from None
    converted = wrapper.model
    _check_quantizers(converted)
    return converted


def _qonnx_passes() -> list:
    """qonnx's ``cleanup_model`` steps without its renaming of nodes and tensors (messages and
    inputs keep the file's names), then ``QuantToQCDQ``."""
    from qonnx.transformation.fold_constants import FoldConstants
    from qonnx.transformation.general import (
        GiveUniqueParameterTensors,
        RemoveStaticGraphInputs,
        RemoveUnusedTensors,
    )
    from qonnx.transformation.infer_shapes import InferShapes
    from qonnx.transformation.qonnx_to_qcdq import QuantToQCDQ
    from qonnx.transformation.quant_constant_folding import FoldTransposeIntoQuantInit

    keep = ["Quant", "BipolarQuant", "QuantizeLinear", "DequantizeLinear"]
    return [InferShapes(), GiveUniqueParameterTensors(), FoldConstants(exclude_op_types=keep),
            FoldTransposeIntoQuantInit(), RemoveUnusedTensors(), RemoveStaticGraphInputs(),
            InferShapes(), QuantToQCDQ()]


def _const(graph: onnx.GraphProto, name: str):
    for init in graph.initializer:
        if init.name == name:
            return numpy_helper.to_array(init)
    return None


def _quant_reason(graph: onnx.GraphProto, node: onnx.NodeProto) -> str | None:
    """Why ``QuantToQCDQ`` left a Quant node."""
    scale, zero, bits = (_const(graph, node.input[k]) for k in (1, 2, 3))
    rounding = attributes(node).get("rounding_mode", b"ROUND")
    rounding = rounding.decode() if isinstance(rounding, bytes) else rounding
    if scale is None or zero is None or bits is None:
        return "its scale, zero point or bit width is computed at run time"
    if bits.size != 1 or not 2 <= float(bits.reshape(-1)[0]) <= 8:
        return f"bit width {bits.reshape(-1).tolist()[:4]} is outside 2..8"
    if (zero != 0).any():
        return f"zero point {zero.reshape(-1).tolist()[:4]} is not 0"
    if rounding != "ROUND":
        return f"rounding mode {rounding} is not ROUND"
    if np.squeeze(scale).ndim > 1:
        return "its scale is not a scalar or a vector"
    return None


def _check_quantizers(model: onnx.ModelProto) -> None:
    """Refuse the QONNX nodes ``QuantToQCDQ`` cannot rewrite (or did not)."""
    for index, node in enumerate(model.graph.node):
        if node.domain not in QONNX_DOMAINS:
            continue
        where = f"node '{node_name(node, index)}' (op {node.op_type})"
        if node.op_type == "Quant":
            reason = _quant_reason(model.graph, node)
            if reason is None:
                continue  # QuantToQCDQ rewrites it
            raise UnsupportedModelError(
                f"{where}: {reason}, so QONNX's QuantToQCDQ cannot turn it into "
                "QuantizeLinear/Clip/DequantizeLinear"
            )
        if node.op_type == "BipolarQuant":
            raise UnsupportedModelError(
                f"{where}: binary (bipolar, +-1) quantization has no QuantizeLinear form; cimc "
                "maps 2..8-bit integer quantizers"
            )
        if node.op_type == "Trunc":
            raise UnsupportedModelError(
                f"{where}: truncation of a quantized tensor's low bits has no QuantizeLinear "
                "form"
            )
        if node.op_type == "FloatQuant":
            raise UnsupportedModelError(f"{where}: float (minifloat) quantization is not supported")
        raise UnsupportedModelError(f"{where}: this QONNX op is not supported")
