"""The graph visit and the module build: an ONNX file to a verified ``cimq`` module.

:func:`import_onnx` loads and checks the file, infers static shapes, makes ``@main``'s block
arguments from the graph inputs, visits the live nodes in topological order and returns the
graph outputs. When a node moves the batch off axis 0 (Brevitas' ``QuantMultiheadAttention``
folds it into the heads) a symbolic batch cannot stay symbolic: the module is then typed at the
batch size its shapes were folded with.
"""

from __future__ import annotations

import re
from pathlib import Path

import onnx
from xdsl.dialects import func
from xdsl.dialects.builtin import (
    DYNAMIC_INDEX,
    ArrayAttr,
    DenseArrayBase,
    DictionaryAttr,
    ModuleOp,
    StringAttr,
    TensorType,
    UnitAttr,
    f32,
    i64,
)
from xdsl.ir import Block, Region, SSAValue
from xdsl.rewriter import Rewriter

from cimc.errors import UnsupportedModelError
from cimc.frontend.context import ImportContext
from cimc.frontend.load import (
    BatchAxis,
    BatchInfo,
    check_inputs,
    check_qdq,
    graph_inputs,
    input_dims,
    live_nodes,
    load_model,
    node_name,
    opset_of,
)
from cimc.frontend.qonnx_in import is_qonnx, to_qcdq
from cimc.frontend.result import ImportResult, LayerInfo, TensorInfo
from cimc.frontend.shapes import infer_shapes
from cimc.frontend.types import init_const
from cimc.frontend.values import Tensor
from cimc.frontend.visit import visit_node


def _ssa_name(name: str) -> str:
    clean = re.sub(r"[^A-Za-z0-9_$.\-]", "_", name)
    if not clean or clean[0].isdigit() or clean[0] in "$.-":
        clean = "v" + clean
    return clean


def _static_batch(block: Block, batch: int) -> None:
    """Replace the symbolic batch (the only dynamic dim cimc allows) by ``batch`` everywhere."""
    def fix(value: SSAValue) -> None:
        t = value.type
        if isinstance(t, TensorType) and DYNAMIC_INDEX in t.get_shape():
            dims = [batch if d == DYNAMIC_INDEX else d for d in t.get_shape()]
            Rewriter.replace_value_with_new_type(value, TensorType(t.element_type, dims))

    for arg in list(block.args):
        fix(arg)
    for op in block.ops:
        for res in list(op.results):
            fix(res)


def _static_layer(layer: LayerInfo, batch: int) -> LayerInfo:
    shapes = {k: tuple(batch if d == -1 else d for d in v) for k, v in layer.shapes.items()}
    return LayerInfo(layer.name, layer.kind, layer.w_bits, layer.a_bits, layer.w_signed,
                     layer.a_signed, layer.per_channel, shapes)


def _outputs(ctx: ImportContext, graph: onnx.GraphProto) -> tuple[list[SSAValue], list[TensorInfo]]:
    results, outputs = [], []
    for out in graph.output:
        if out.name not in ctx.values:
            raise UnsupportedModelError(f"graph output '{out.name}' is not computed")
        entry = ctx.values[out.name]
        if isinstance(entry, Tensor) and entry.kind == "q":
            value = ctx.as_quant(entry)
            assert entry.qtype is not None
            dtype = "int8" if entry.qtype.is_signed else "uint8"
        else:
            value = ctx.as_float(entry)
            dtype = "float32"
        results.append(value)
        outputs.append(TensorInfo(out.name, (), dtype))
    return results, outputs


def _shown(t: TensorType) -> tuple[int | None, ...]:
    return tuple(None if d < 0 else d for d in t.get_shape())


def _visit_graph(ctx: ImportContext, live: list[tuple[int, onnx.NodeProto]], opset: int
                 ) -> str | None:
    """Import the live nodes in order; returns the first node whose result lost the batch axis."""
    batch_lost = None
    for index, proto in live:
        label = node_name(proto, index)
        if visit_node(ctx, proto, label, opset) and batch_lost is None:
            batch_lost = label
    return batch_lost


def _check_batch(batch: BatchInfo, batch_lost: str | None) -> bool:
    """Whether the module must be typed at the folded batch; refuses a batch it cannot take."""
    if batch_lost is None or batch.type == batch.infer:
        return False
    if batch.symbolic and batch.requested is None:
        return True
    raise UnsupportedModelError(
        f"node '{batch_lost}': the batch dimension does not stay on axis 0 here, so the "
        f"model exported with batch {batch.infer} cannot be imported with batch "
        f"{batch.requested}; export it with that batch size (or a symbolic batch)"
    )


def import_onnx(path: str | Path, *, batch: int | None = None,
                batch_axis: BatchAxis = None) -> ImportResult:
    """Import an ONNX QDQ/QCDQ file as a verified ``cimq`` module.

    ``batch`` fixes the batch dimension of the module's types (default: the file's, ``?`` when
    the file's batch is symbolic). ``batch_axis`` names the inputs' batch axis (one axis for
    all, or ``{name: axis}`` with ``None`` for the others; default: a symbolic dim, else 0); a
    batch off axis 0 types the module at one batch and marks ``@main`` with
    ``cimq.batch_axes`` (layer descriptors are then per inference along those axes). Raises :class:`~cimc.errors.CimcError` for every problem of
    the file (missing, not ONNX, not quantized, unsupported op, bit width, zero point, shape).
    """
    p = Path(path)
    model = load_model(p)
    if is_qonnx(model):
        model = to_qcdq(model, p)
    opset = opset_of(model, p)
    info = check_inputs(model.graph, p, batch, batch_axis)
    check_qdq(model.graph, p)
    shapes = infer_shapes(model, p, info.infer)
    inputs_vi = graph_inputs(model.graph)
    dims_of = [[d if isinstance(d, int) else info.infer for d in input_dims(vi)]
               for vi in inputs_vi]
    live, used = live_nodes(model.graph)
    block = Block()
    ctx = ImportContext(info, shapes, used, block)
    for init in model.graph.initializer:
        ctx.values[init.name] = init_const(init)
    for vi, dims, axis in zip(inputs_vi, dims_of, info.axes):
        shapes[vi.name] = tuple(dims)
        batched = axis == 0  # a batch on another axis: typed as it is (the module at one batch)
        arg = block.insert_arg(ctx.ttype(dims, f32, batched and bool(dims)), len(block.args))
        arg.name_hint = _ssa_name(vi.name)
        ctx.values[vi.name] = Tensor("float", tuple(dims), batched, ssa=arg)

    batch_lost = _visit_graph(ctx, live, opset)
    results, outputs = _outputs(ctx, model.graph)
    block.add_op(func.ReturnOp(*results))
    layers = ctx.layers
    if _check_batch(info, batch_lost):
        _static_batch(block, info.infer)
        layers = [_static_layer(layer, info.infer) for layer in layers]

    arg_types = [a.type for a in block.args]
    res_types = [r.type for r in block.last_op.operands]  # type: ignore[union-attr]
    inputs = [TensorInfo(vi.name, _shown(t), "float32") for vi, t in zip(inputs_vi, arg_types)]
    outputs = [TensorInfo(o.name, _shown(t), o.dtype) for o, t in zip(outputs, res_types)]
    arg_attrs = ArrayAttr([DictionaryAttr({"cimq.name": StringAttr(i.name)}) for i in inputs])
    res_attrs = ArrayAttr([DictionaryAttr({"cimq.name": StringAttr(o.name)}) for o in outputs])
    fn = func.FuncOp("main", (arg_types, res_types), Region(block),
                     arg_attrs=arg_attrs, res_attrs=res_attrs)
    if batch_lost is not None or info.moved:  # the batch is off axis 0: one typed batch only
        fn.attributes["cimq.fixed_batch"] = UnitAttr()
    if info.moved:
        fn.attributes["cimq.batch_axes"] = DenseArrayBase.from_list(i64, info.axes)
    module = ModuleOp([fn])
    module.verify()
    return ImportResult(module, layers, inputs, outputs, batch_lost is None and not info.moved)
