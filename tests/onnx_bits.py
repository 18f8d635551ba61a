"""Recover per-layer bit widths from a Brevitas QCDQ ONNX file (a test helper, not the importer).

For every crossbar node (Conv, Gemm, MatMul, in node order) it returns ``(w_bits, a_bits)``: the
weight operand is input 1 (for attention MatMuls the K^T / V activation), the streamed operand is
input 0. Each operand is followed back through Transpose/Reshape to its DequantizeLinear; the
Clip feeding that DQ gives the bits (no Clip: 8 bits). Narrow signed ranges (lo == -hi) give
``log2(hi - lo + 2)``, others ``log2(hi - lo + 1)``.
"""

from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import numpy_helper

CROSSBAR_OPS = ("Conv", "Gemm", "MatMul")
PASS_THROUGH = ("Transpose", "Reshape")


def _bits_of(name: str, prod: dict, vals: dict) -> int | None:
    node = prod.get(name)
    while node is not None and node.op_type in PASS_THROUGH:
        node = prod.get(node.input[0])
    if node is None or node.op_type != "DequantizeLinear":
        return None
    src = prod.get(node.input[0])
    if src is None or src.op_type != "Clip":
        return 8
    lo, hi = int(vals[src.input[1]]), int(vals[src.input[2]])
    return int(math.log2(hi - lo + (2 if lo == -hi else 1)))


def recover_bits(path: str) -> tuple[list[str], np.ndarray]:
    """Op types and an ``(L, 2)`` array of ``[w_bits, a_bits]`` per crossbar node."""
    graph = onnx.load(str(path)).graph
    vals = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            vals[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    prod = {o: n for n in graph.node for o in n.output}
    ops, rows = [], []
    for node in graph.node:
        if node.op_type not in CROSSBAR_OPS:
            continue
        w, a = _bits_of(node.input[1], prod, vals), _bits_of(node.input[0], prod, vals)
        if w is None or a is None:
            raise AssertionError(f"{node.op_type} {node.name}: operand not quantised")
        ops.append(node.op_type)
        rows.append((w, a))
    return ops, np.array(rows, dtype=np.int64).reshape(-1, 2)


def op_types(path: str) -> set[str]:
    """The set of op types in the graph."""
    return {n.op_type for n in onnx.load(str(path)).graph.node}
