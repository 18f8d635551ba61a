"""The values of an ONNX graph while it is imported, and the node a handler receives.

Every ONNX tensor name maps to one :data:`Entry`: a compile-time constant (:class:`Const`), a
dequantized integer constant (:class:`QConst`: weights and int32 biases) or a run-time tensor
(:class:`Tensor`). A handler gets its :class:`Node` (the ONNX node, its name for messages, its
attributes and its input entries) and returns the entries of its outputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from xdsl.ir import SSAValue

from cimc import semantics as sem
from cimc.dialects.cimq import QuantType
from cimc.errors import CimcError, UnsupportedModelError


@dataclass(eq=False)
class Const:
    """A compile-time constant (initializer, Constant node, folded subgraph).

    ``clip`` records the bounds of an integer Clip folded into it (the bit width of weights);
    ``origin`` is the initializer it came from (names blobs).
    """

    arr: np.ndarray
    origin: str = ""
    clip: tuple[int, int] | None = None
    int_bits: tuple[int, bool] | None = None  # (bits, signed) of a 4-bit ONNX storage type
    f32_ssa: SSAValue | None = None
    wide: int | None = None  # bits of dequantized integers wider than a crossbar takes (9..16)


@dataclass(eq=False)
class QConst:
    """``DequantizeLinear`` of integer constants: weights (1..8 bits) or an int32 bias."""

    ints: np.ndarray
    qtype: QuantType
    origin: str
    ssa: SSAValue | None = None
    f32_ssa: SSAValue | None = None

    def real(self) -> np.ndarray:
        """The float32 values ``(q - zp) * scale`` as ONNX DequantizeLinear computes them."""
        return sem.dequantize_linear(self.ints, self.qtype)

    def transposed(self, perm: list[int]) -> QConst:
        """The integers transposed (per-channel scales follow their axis)."""
        ints = np.ascontiguousarray(np.transpose(self.ints, perm))
        q = self.qtype
        if q.per_channel:
            q = q.with_scales(q.scale_values, axis=perm.index(q.channel_axis))
        return QConst(ints, q, self.origin)


@dataclass(eq=False)
class Tensor:
    """A run-time tensor: ``kind`` is ``float``, ``q`` (quantized), ``dq`` (the float view of a
    quantized tensor) or ``acc`` (a crossbar accumulator, float in ONNX)."""

    kind: str
    shape: tuple[int, ...]
    batched: bool
    ssa: SSAValue | None = None  # the value itself (q / acc / float); for dq: None
    qtype: QuantType | None = None
    q: Tensor | None = None  # dq: the quantized tensor it views
    source: Any = None  # q not yet emitted: the float value to quantize
    src: str = ""  # q: ONNX tensor holding the integers
    f32_ssa: SSAValue | None = None  # float materialisation cache
    storage: tuple[int, bool] | None = None  # q: (bits, signed) of the ONNX integer type
    too_wide: CimcError | None = None  # q: raised when integers wider than 8 bits are used


Entry = Const | QConst | Tensor


def shape_of_entry(e: Entry | None) -> tuple[int, ...]:
    if isinstance(e, Const):
        return tuple(e.arr.shape)
    if isinstance(e, QConst):
        return tuple(e.ints.shape)
    assert e is not None
    return tuple(e.shape)


def rank_of(e: Entry) -> int:
    return len(shape_of_entry(e))


class NodeError(Exception):
    """What is wrong with the node being imported; the graph visit names the node.

    ``with_op`` adds the op type to the message (``node 'n' (op Conv): ...``).
    """

    def __init__(self, message: str, *, with_op: bool = True):
        super().__init__(message)
        self.message = message
        self.with_op = with_op


@dataclass(frozen=True, eq=False)
class Node:
    """An ONNX node as a handler sees it: the proto, its name, attributes and input entries."""

    proto: onnx.NodeProto
    label: str
    ins: tuple[Entry | None, ...]
    attrs: dict[str, Any]
    opset: int

    @property
    def op_type(self) -> str:
        return self.proto.op_type

    @property
    def inputs(self) -> list[str]:
        return list(self.proto.input)

    @property
    def outputs(self) -> list[str]:
        return list(self.proto.output)

    def input(self, k: int) -> Entry | None:
        """Input ``k`` (``None`` when absent or omitted)."""
        return self.ins[k] if len(self.ins) > k else None

    def tensor(self, k: int = 0) -> Tensor:
        """Input ``k`` as a run-time tensor, or a node error."""
        e = self.input(k)
        if not isinstance(e, Tensor):
            raise NodeError(f"input '{self.inputs[k]}' must be a run-time tensor")
        return e

    def const_ints(self, k: int, what: str) -> list[int] | None:
        """Constant integer input ``k`` as a list (``None`` when absent), or a node error."""
        e = self.input(k)
        if e is None:
            return None
        if not isinstance(e, Const):
            raise NodeError(f"{what} must be a constant")
        return [int(v) for v in e.arr.reshape(-1)]

    def attr_str(self, key: str, default: str) -> str:
        value = self.attrs.get(key, default)
        return value.decode() if isinstance(value, bytes) else value

    def error(self, message: str, *, with_op: bool = True) -> CimcError:
        """The one-line error for this node."""
        where = f"node '{self.label}' (op {self.op_type})" if with_op else f"node '{self.label}'"
        return UnsupportedModelError(f"{where}: {message}")
