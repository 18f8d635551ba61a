"""The op table and the visit of a node: one handler per ONNX op type.

A handler is ``handler(ctx, node) -> entry`` (or a list of entries, one per output): it receives
its :class:`~cimc.frontend.values.Node` explicitly and raises
:class:`~cimc.frontend.values.NodeError` for what it cannot import; :func:`visit_node` turns that
into the one-line error naming the node and op. Nodes whose inputs are all constants are folded
unless the handler takes constants itself (quantizers of weights, Transpose of weights, ...).
Adding an op is one handler, one line in :data:`HANDLERS` and one test.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import onnx

from cimc.errors import UnsupportedModelError
from cimc.frontend import ops_crossbar as xb
from cimc.frontend import ops_float as fl
from cimc.frontend import ops_layout as lay
from cimc.frontend import quantizers as qz
from cimc.frontend.context import ImportContext
from cimc.frontend.load import attributes
from cimc.frontend.shapes import fold
from cimc.frontend.values import Const, Entry, Node, NodeError, QConst, Tensor

Handler = Callable[[ImportContext, Node], "Entry | list[Entry | None] | None"]


@dataclass(frozen=True)
class OpSpec:
    """How an op is imported: its handler, and whether it handles all-constant inputs itself."""

    handler: Handler
    takes_constants: bool = False


HANDLERS: dict[str, OpSpec] = {
    # quantizers
    "QuantizeLinear": OpSpec(qz.quantize_linear, takes_constants=True),
    "DequantizeLinear": OpSpec(qz.dequantize_linear, takes_constants=True),
    "Clip": OpSpec(qz.clip, takes_constants=True),
    # crossbar ops
    "Conv": OpSpec(xb.conv),
    "Gemm": OpSpec(xb.gemm),
    "MatMul": OpSpec(xb.matmul),
    # host float ops
    "Add": OpSpec(fl.binary),
    "Sub": OpSpec(fl.binary),
    "Mul": OpSpec(fl.binary),
    "Div": OpSpec(fl.binary),
    "Sum": OpSpec(fl.sum_),
    "Relu": OpSpec(fl.unary),
    "Erf": OpSpec(fl.unary),
    "Sqrt": OpSpec(fl.unary),
    "Gelu": OpSpec(fl.unary),
    "Softmax": OpSpec(fl.softmax),
    "LayerNormalization": OpSpec(fl.layernorm),
    "BatchNormalization": OpSpec(fl.batchnorm),
    "MaxPool": OpSpec(fl.pool),
    "AveragePool": OpSpec(fl.pool),
    "GlobalAveragePool": OpSpec(fl.global_avgpool),
    "ReduceMean": OpSpec(fl.reduce_mean),
    # layout ops and identities
    "Reshape": OpSpec(lay.reshape),
    "Flatten": OpSpec(lay.flatten),
    "Squeeze": OpSpec(lay.squeeze),
    "Unsqueeze": OpSpec(lay.squeeze),
    "Transpose": OpSpec(lay.transpose, takes_constants=True),
    "Concat": OpSpec(lay.concat),
    "Gather": OpSpec(lay.gather),
    "Slice": OpSpec(lay.slice_),
    "Split": OpSpec(lay.split),
    "Pad": OpSpec(lay.pad),
    "DepthToSpace": OpSpec(lay.depth_to_space),
    "Resize": OpSpec(lay.resize),
    "Identity": OpSpec(lay.identity, takes_constants=True),
    "Dropout": OpSpec(lay.dropout),
    "Shape": OpSpec(lay.shape, takes_constants=True),
    "Size": OpSpec(lay.size, takes_constants=True),
}


def _dispatch(ctx: ImportContext, node: Node) -> Entry | list[Entry | None] | None:
    spec = HANDLERS.get(node.op_type)
    if spec is not None and spec.takes_constants:
        return spec.handler(ctx, node)
    if all(e is None or isinstance(e, (Const, QConst)) for e in node.ins) and (
        node.ins or node.op_type == "Constant"
    ):
        return fold(node)  # shape computations, Constant nodes, constant arithmetic
    if spec is None:
        raise UnsupportedModelError(f"node '{node.label}' (op {node.op_type}) is not supported")
    return spec.handler(ctx, node)


def visit_node(ctx: ImportContext, proto: onnx.NodeProto, label: str, opset: int) -> bool:
    """Import one node into ``ctx``; returns whether a result lost the batch axis here."""
    if proto.domain not in ("", "ai.onnx"):
        raise UnsupportedModelError(
            f"node '{label}' (op {proto.domain}::{proto.op_type}) is not supported")
    ins = tuple(ctx.values.get(name) if name else None for name in proto.input)
    node = Node(proto, label, ins, attributes(proto), opset)
    for name, entry in zip(proto.input, ins):
        if name and entry is None:
            raise node.error(f"input '{name}' is not defined before the node")
    try:
        result = _dispatch(ctx, node)
    except NodeError as exc:
        raise node.error(exc.message, with_op=exc.with_op) from None
    outs = result if isinstance(result, list) else [result]
    batched_in = any(isinstance(e, Tensor) and e.batched for e in ins)
    lost = False
    for name, entry in zip(proto.output, outs):
        if not name or entry is None:
            continue
        ctx.values[name] = entry
        lost = lost or (batched_in and isinstance(entry, Tensor) and not entry.batched)
    return lost
