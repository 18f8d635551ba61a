"""The same ONNX model at another batch size (test helper of :mod:`corpus`), for producers that
start from a file fixed at batch 1 (onnxruntime's quantizer applied to shipped float models,
qonnx's pretrained networks).

:func:`rebatch` writes the batch into the graph's inputs and outputs (dim 0) and, for a float
model, into the ``Reshape`` targets that bake it in (their leading 1: the MNIST CNN's flatten,
ShuffleNet's channel shuffles); the intermediate shapes are dropped and onnx shape inference
must derive every one again (strict mode, outputs at the new batch), else the model is not
rebatched (an error, not a guess).
"""

from __future__ import annotations

import copy

import onnx
from onnx import numpy_helper


def _reshape_targets(model: onnx.ModelProto, batch: int) -> None:
    """Leading 1 of every constant Reshape target -> ``batch``."""
    inits = {i.name: i for i in model.graph.initializer}
    consts = {n.output[0]: n for n in model.graph.node if n.op_type == "Constant"}
    for node in model.graph.node:
        if node.op_type != "Reshape":
            continue
        name = node.input[1]
        if name in inits:
            arr = numpy_helper.to_array(inits[name]).copy()
            if arr.ndim == 1 and arr.size > 1 and arr[0] == 1:
                arr[0] = batch
                inits[name].CopyFrom(numpy_helper.from_array(arr, name))
        elif name in consts:
            attr = consts[name].attribute[0]
            arr = numpy_helper.to_array(attr.t).copy()
            if arr.ndim == 1 and arr.size > 1 and arr[0] == 1:
                arr[0] = batch
                attr.t.CopyFrom(numpy_helper.from_array(arr, attr.t.name))


def rebatch(model: onnx.ModelProto, batch: int, *, float_model: bool = True,
            check: bool = True) -> onnx.ModelProto:
    """``model`` with batch ``batch`` (a copy); ``check``: onnx shape inference re-derives every
    intermediate shape (needs standard ops only: a QONNX file is checked after its conversion)."""
    model = copy.deepcopy(model)
    graph = model.graph
    inits = {i.name for i in graph.initializer}
    for vi in [*graph.input, *graph.output]:
        dims = vi.type.tensor_type.shape.dim
        if vi.name not in inits and dims:
            dims[0].Clear()
            dims[0].dim_value = batch
    if float_model and batch != 1:
        _reshape_targets(model, batch)
    del graph.value_info[:]
    if check:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)
        known = {vi.name for vi in inferred.graph.value_info}
        missing = [o for n in graph.node for o in n.output if o and o not in known
                   and o not in {v.name for v in graph.output}]
        if missing:
            raise ValueError(f"shape inference cannot re-derive {missing[:3]} at batch {batch}")
        for out in inferred.graph.output:
            dims = out.type.tensor_type.shape.dim
            if dims and dims[0].dim_value != batch:
                raise ValueError(f"output '{out.name}' has batch {dims[0]} after rebatching")
    return model
