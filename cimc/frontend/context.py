"""The import context: the value table and the block the ``cimq`` ops are emitted into.

:class:`ImportContext` maps ONNX tensor names to entries, knows the static shapes and the batch
sizes, and turns entries into SSA values on demand (a constant becomes a ``cimq.const`` when first
used as a float, a pending quantizer becomes a ``cimq.quantize`` when its integers are first
used). It is the only place of the front end that makes ``#cimq.blob`` constants; each holds its
array, so the weights belong to the module being built.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from xdsl.dialects.builtin import (
    DYNAMIC_INDEX,
    BytesAttr,
    DenseIntOrFPElementsAttr,
    StringAttr,
    TensorType,
    f32,
)
from xdsl.ir import Attribute, Block, Operation, SSAValue

from cimc.dialects import cimq
from cimc.dialects.cimq import QuantType
from cimc.frontend.load import BatchInfo
from cimc.frontend.result import LayerInfo
from cimc.frontend.types import xdsl_elem
from cimc.frontend.values import Const, Entry, NodeError, QConst, Tensor
from cimc.weights import INLINE_LIMIT


@dataclass
class ImportContext:
    """Everything the handlers share while one graph is imported."""

    batch: BatchInfo
    shapes: dict[str, tuple[int, ...]]
    used: set[str]
    block: Block
    values: dict[str, Entry] = field(default_factory=dict)
    layers: list[LayerInfo] = field(default_factory=list)

    # -- types -----------------------------------------------------------------------------
    def ttype(self, shape: Sequence[int], elem: Attribute, batched: bool) -> TensorType:
        """A tensor type; a batched tensor gets the module's batch on axis 0."""
        dims = list(shape)
        if batched and dims:
            dims[0] = self.batch.type
        return TensorType(elem, dims)

    def shown(self, shape: Sequence[int], batched: bool) -> tuple[int, ...]:
        """A shape as :class:`LayerInfo` reports it (``-1`` for a symbolic batch)."""
        dims = list(shape)
        if batched and dims:
            dims[0] = -1 if self.batch.type == DYNAMIC_INDEX else self.batch.type
        return tuple(dims)

    def shape_of(self, name: str, compute: Callable[[], Sequence[int]] | None = None
                 ) -> tuple[int, ...]:
        """The inferred static shape of tensor ``name`` (else ``compute()``, else an error)."""
        if name in self.shapes:
            return self.shapes[name]
        if compute is not None:
            try:
                return tuple(int(d) for d in compute())
            except (ValueError, IndexError):
                pass
        raise NodeError(f"cannot infer the static shape of '{name}'")

    # -- emission --------------------------------------------------------------------------
    def emit(self, op: Operation) -> Operation:
        self.block.add_op(op)
        return op

    def const_attr(self, arr: np.ndarray, origin: str) -> Attribute:
        """Inline ``dense<...>`` for small arrays, else a ``#cimq.blob`` of the module."""
        if arr.size <= INLINE_LIMIT:
            elem = xdsl_elem(arr.dtype)
            return DenseIntOrFPElementsAttr(
                TensorType(elem, list(arr.shape)), BytesAttr(np.array(arr, order="C").tobytes())
            )
        return cimq.BlobAttr(origin or "const", arr)

    def float_const(self, arr: np.ndarray, origin: str) -> SSAValue:
        op = cimq.ConstOp(self.const_attr(arr, origin), TensorType(f32, list(arr.shape)))
        return self.emit(op).results[0]

    def float_result(self, op_cls: type, operands: list[SSAValue], shape: Sequence[int],
                     batched: bool, attrs: dict[str, Attribute] | None = None) -> Tensor:
        """Emit a float op; its result as a ``float`` tensor."""
        op = op_cls.create(operands=operands, result_types=[self.ttype(shape, f32, batched)],
                           attributes=attrs or {})
        return Tensor("float", tuple(shape), batched, ssa=self.emit(op).results[0])

    def record(self, label: str, kind: str, w: QuantType, a: QuantType,
               shapes: dict[str, tuple[int, ...]]) -> None:
        """Append a crossbar layer to the summary."""
        self.layers.append(LayerInfo(
            label, kind, w.width, a.width, w.is_signed, a.is_signed, w.per_channel, shapes,
        ))

    # -- materialisation -------------------------------------------------------------------
    def as_float(self, entry: Entry | None) -> SSAValue:
        """The f32 SSA value of any entry (constants become f32 ``cimq.const``)."""
        assert entry is not None
        if isinstance(entry, Const):
            if entry.f32_ssa is None:
                if entry.arr.dtype.kind not in "fiub":
                    raise NodeError(f"constant of type {entry.arr.dtype} used as a float tensor")
                arr = np.array(entry.arr, dtype=np.float32, order="C")
                entry.f32_ssa = self.float_const(arr, entry.origin)
            return entry.f32_ssa
        if isinstance(entry, QConst):
            if entry.f32_ssa is None:
                entry.f32_ssa = self.float_const(entry.real(), entry.origin)
            return entry.f32_ssa
        if entry.kind == "float":
            assert entry.ssa is not None
            return entry.ssa
        if entry.kind == "q":
            raise NodeError(f"integer tensor '{entry.src or '?'}' is used by a float op "
                            "(expected a DequantizeLinear first)")
        if entry.f32_ssa is None:
            q = self.as_quant(entry.q if entry.kind == "dq" else entry)  # type: ignore[arg-type]
            out = self.ttype(entry.shape, f32, entry.batched)
            op = cimq.DequantizeOp.create(operands=[q], result_types=[out])
            entry.f32_ssa = self.emit(op).results[0]
        return entry.f32_ssa

    def as_quant(self, t: Tensor) -> SSAValue:
        """The quantized SSA value of a ``q`` / ``acc`` tensor (emitting a pending quantize)."""
        if t.too_wide is not None:
            raise t.too_wide
        if t.ssa is None and _same_grid(t):
            return self._alias(t)
        if t.ssa is None:
            assert t.kind == "q" and t.qtype is not None
            src = self.as_float(t.source)
            attrs = {"src": StringAttr(t.src)} if t.src else {}
            op = cimq.QuantizeOp.create(
                operands=[src], result_types=[self.ttype(t.shape, t.qtype, t.batched)],
                attributes=attrs,
            )
            t.ssa = self.emit(op).results[0]
        return t.ssa

    def _alias(self, t: Tensor) -> SSAValue:
        """``DQ -> value-preserving ops -> Q`` on the same grid: the quantizer's integers are
        the ones the ops moved (no float round trip); the op that made them is named after it."""
        assert isinstance(t.source, Tensor) and t.source.q is not None
        t.ssa = self.as_quant(t.source.q)
        owner = t.ssa.owner
        if t.src and isinstance(owner, Operation) and "src" not in owner.attributes:
            owner.attributes["src"] = StringAttr(t.src)
        return t.ssa

    def weight_ssa(self, w: QConst) -> SSAValue:
        """The integer ``cimq.const`` of a dequantized constant (emitted once)."""
        if w.ssa is None:
            arr = np.array(w.ints, order="C")
            op = cimq.ConstOp(self.const_attr(arr, w.origin), TensorType(w.qtype, list(arr.shape)))
            w.ssa = self.emit(op).results[0]
        return w.ssa

    def check_single_output(self, outputs: Sequence[str]) -> None:
        """Optional extra outputs (Dropout's mask, BatchNorm's statistics) must be unused."""
        for extra in outputs[1:]:
            if extra and extra in self.used:
                raise NodeError(f"the optional output '{extra}' is not supported")


def _same_grid(t: Tensor) -> bool:
    """``t`` quantizes a dequantized tensor with exactly its type (scale, zero point, range)."""
    src = t.source
    return (t.kind == "q" and isinstance(src, Tensor) and src.kind == "dq" and src.q is not None
            and src.q.too_wide is None and src.q.qtype == t.qtype)
