"""What :func:`cimc.frontend.import_onnx` returns: the module and a summary of the model."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from xdsl.dialects.builtin import ModuleOp


@dataclass(frozen=True)
class TensorInfo:
    """A graph input or output: ONNX name, shape (``None`` for a symbolic batch), dtype."""

    name: str
    shape: tuple[int | None, ...]
    dtype: str


@dataclass(frozen=True)
class LayerInfo:
    """One crossbar op (``cimq.conv`` / ``cimq.matmul`` / ``cimq.matmul_act``) in graph order.

    ``w_*`` describe the stored operand (weights, or K^T / V for attention), ``a_*`` the
    streamed input. ``shapes`` has the keys ``input``, ``weight`` (as stored: OIHW for conv,
    ``[K, N]`` for linear) and ``output``, batch dims as in the module (``-1`` when symbolic).
    """

    name: str
    kind: str
    w_bits: int
    a_bits: int
    w_signed: bool
    a_signed: bool
    per_channel: bool
    shapes: dict[str, tuple[int, ...]]


@dataclass
class ImportResult:
    """What :func:`import_onnx` returns: the verified module and a summary of the model."""

    module: ModuleOp
    layers: list[LayerInfo]
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    #: True when every batch-carrying tensor keeps the batch on axis 0 (reshapes write 0 for
    #: it), so the module runs at any batch size; False for models (such as Brevitas'
    #: ``QuantMultiheadAttention``) that move the batch elsewhere: these run at the typed batch.
    batch_polymorphic: bool = True


def policy_of(result: ImportResult) -> np.ndarray:
    """``(L, 2)`` int64 array of ``[w_bits, a_bits]`` per crossbar layer, in graph order."""
    rows = [(layer.w_bits, layer.a_bits) for layer in result.layers]
    return np.array(rows, dtype=np.int64).reshape(-1, 2)
