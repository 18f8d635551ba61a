"""ONNX front end: :func:`import_onnx` reads a QDQ/QCDQ file into a ``cimq`` module."""

from cimc.frontend.onnx_import import ImportResult, LayerInfo, TensorInfo, import_onnx, policy_of

__all__ = ["ImportResult", "LayerInfo", "TensorInfo", "import_onnx", "policy_of"]
