"""Static shapes and constant folding.

Shapes come from onnx shape inference run once at the inference batch size; subgraphs whose
inputs are all constants (shape computations, Constant nodes, constant arithmetic) are folded
with ``onnx.reference`` into :class:`~cimc.frontend.values.Const` entries.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from cimc.errors import CimcError, UnsupportedModelError
from cimc.frontend.load import graph_inputs, input_dims
from cimc.frontend.values import Const, Entry, Node, NodeError, QConst


def numel(dims: Sequence[int]) -> int:
    n = 1
    for d in dims:
        n *= int(d)
    return n


def dummy(shape: Sequence[int]) -> np.ndarray:
    """A zero-memory array of ``shape`` for computing shapes with numpy indexing rules."""
    return np.broadcast_to(np.zeros((), dtype=np.int8), tuple(shape))


def norm_axis(axis: int, rank: int) -> int:
    """``axis`` in ``[0, rank)``, or a node error."""
    if not -rank <= axis < rank:
        raise NodeError(f"axis {axis} is out of range for rank {rank}")
    return axis % rank


def pads_2d(node: Node, spatial: Sequence[int], kernel: Sequence[int],
            strides: Sequence[int], dil: Sequence[int]) -> list[int]:
    """ONNX pads ``[top, left, bottom, right]`` of a 2-D window op (auto_pad resolved)."""
    auto = node.attr_str("auto_pad", "NOTSET")
    if auto in ("NOTSET", ""):
        p = list(node.attrs.get("pads", [0, 0, 0, 0]))
        if len(p) != 4:
            raise NodeError(f"pads {p} must have 4 values")
        return p
    if auto == "VALID":
        return [0, 0, 0, 0]
    begin, end = [], []
    for size, k, s, d in zip(spatial, kernel, strides, dil):
        total = max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0)
        small = total // 2
        begin.append(small if auto == "SAME_UPPER" else total - small)
        end.append(total - begin[-1])
    return [begin[0], begin[1], end[0], end[1]]


def infer_shapes(model: onnx.ModelProto, path: Path, batch: int) -> dict[str, tuple[int, ...]]:
    """Static shapes of every tensor, from onnx shape inference at batch size ``batch``."""
    graph = model.graph
    light = onnx.ModelProto()
    # IR < 4 reads initializers only when they are also graph inputs: cimc passes them apart.
    light.ir_version = max(model.ir_version, 4)
    light.opset_import.extend(model.opset_import)
    g = light.graph
    g.node.extend(graph.node)
    g.output.extend(graph.output)
    for vi in graph_inputs(graph):
        new = g.input.add()
        new.CopyFrom(vi)
        for dim in new.type.tensor_type.shape.dim:  # the batch, the only symbolic dim
            if not dim.HasField("dim_value"):
                dim.Clear()
                dim.dim_value = batch
    for init in graph.initializer:
        # Large initializers only matter through their type: pass them as typed inputs.
        if init.data_type != onnx.TensorProto.INT64 and numel(init.dims) > 64:
            g.input.append(onnx.helper.make_tensor_value_info(
                init.name, init.data_type, list(init.dims)))
        else:
            g.initializer.append(init)
    try:
        inferred = onnx.shape_inference.infer_shapes(light, strict_mode=False, data_prop=True)
    except Exception as exc:  # noqa: BLE001 (inference errors of malformed graphs)
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UnsupportedModelError(f"{path}: shape inference failed ({msg})") from None
    shapes: dict[str, tuple[int, ...]] = {}
    for vi in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]:
        if not vi.type.HasField("tensor_type") or not vi.type.tensor_type.HasField("shape"):
            continue
        dims = input_dims(vi)
        if all(isinstance(d, int) for d in dims):
            shapes[vi.name] = tuple(int(d) for d in dims)  # type: ignore[arg-type]
    return shapes


def _constant_value(node: onnx.NodeProto) -> np.ndarray:
    attr = node.attribute[0]
    value = onnx.helper.get_attribute_value(attr)
    if attr.name == "value":
        return numpy_helper.to_array(value)
    if attr.name in ("value_float", "value_floats"):
        return np.array(value, dtype=np.float32)
    if attr.name in ("value_int", "value_ints"):
        return np.array(value, dtype=np.int64)
    raise ValueError(f"Constant with attribute {attr.name} is not supported")


def _reference_eval(node: onnx.NodeProto, arrays: list[np.ndarray | None], opset: int) -> list:
    from onnx.reference import ReferenceEvaluator

    feeds = {name: arr for name, arr in zip(node.input, arrays) if name}
    return list(ReferenceEvaluator(node, opsets={"": opset}).run(None, feeds))


def fold(node: Node) -> list[Entry | None]:
    """The outputs of a node whose inputs are all constants, computed now."""
    ins = node.ins
    if node.op_type == "Identity":
        return [ins[0]]  # keeps clip info and quantization
    arrays = [None if e is None else (e.arr if isinstance(e, Const) else e.real()) for e in ins]
    origin = next((e.origin for e in ins if isinstance(e, (Const, QConst)) and e.origin), "")
    try:
        if node.op_type == "Constant":
            outs = [_constant_value(node.proto)]
        elif node.op_type == "Transpose":
            perm = node.attrs.get("perm", list(range(arrays[0].ndim))[::-1])
            outs = [np.ascontiguousarray(np.transpose(arrays[0], perm))]
        else:
            outs = _reference_eval(node.proto, arrays, node.opset)
    except CimcError:
        raise
    except Exception as exc:  # noqa: BLE001 (onnx.reference raises many kinds)
        raise NodeError(f"constant folding failed ({type(exc).__name__}: {exc})") from None
    return [Const(np.asarray(arr), origin=origin) if name else None
            for name, arr in zip(node.outputs, outs)]
