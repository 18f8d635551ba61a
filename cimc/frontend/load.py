"""Loading an ONNX file and the checks made before any node is imported.

The file must exist and parse, import a supported standard opset, contain QDQ nodes, and take
float32 inputs whose only symbolic dimension is the batch. :class:`BatchInfo` records the batch
sizes the import works with and each input's batch axis; :func:`live_nodes` orders the nodes
that reach an output.

The batch axis of an input (:func:`batch_axes`) is the one the caller names (``batch_axis``:
``--batch-axis``), else its symbolic dimension (the file says it), else axis 0 (a file with fixed
shapes does not say which axis is the batch; ``cimc report`` warns when axis 0 does not split a
layer into inferences). Every input's batch axis must have the same size.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from collections.abc import Mapping
from typing import Any, Union

import onnx
from xdsl.dialects.builtin import DYNAMIC_INDEX

from cimc.errors import InputFileError, UnsupportedModelError

MIN_OPSET = 11
MAX_OPSET = 25

#: The caller's batch axes: one axis for every input, or ``{input name: axis}`` (the key ``None``:
#: every input not named); ``None``: from the file.
BatchAxis = Union[int, Mapping[Union[str, None], int], None]


def load_model(path: Path) -> onnx.ModelProto:
    """The parsed file, or a one-line :class:`InputFileError`."""
    if not path.exists():
        raise InputFileError(f"{path}: file not found")
    if not path.is_file():
        raise InputFileError(f"{path}: not a file")
    from cimc.safe_read import LIMITS, check_regular

    check_regular(path, "ONNX model", LIMITS["onnx"])
    try:
        model = onnx.load(str(path), load_external_data=False)
        _check_external(model, path)
        onnx.external_data_helper.load_external_data_for_model(model, str(path.parent))
    except InputFileError:
        raise
    except Exception as exc:  # noqa: BLE001 (protobuf / onnx raise many kinds)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        detail = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
        raise InputFileError(f"{path}: not an ONNX model ({detail})") from None
    if model.ir_version == 0 or not model.opset_import or not model.graph.node:
        raise InputFileError(f"{path}: not an ONNX model (no graph, IR version or opset)")
    return model


def _check_external(model: onnx.ModelProto, path: Path) -> None:
    """The external-data files of the model, each a regular file inside the model's folder
    (no absolute path, no ``..``, no symlink out of it), or a one-line error naming the tensor."""
    from cimc.safe_read import LIMITS, check_regular

    folder = path.parent.resolve()
    for tensor in onnx.external_data_helper._get_all_tensors(model):
        if not onnx.external_data_helper.uses_external_data(tensor):
            continue
        location = next((e.value for e in tensor.external_data if e.key == "location"), "")
        target = (folder / location).resolve()
        if not location or Path(location).is_absolute() or not target.is_relative_to(folder):
            raise InputFileError(
                f"{path}: tensor '{tensor.name}' keeps its data at '{location}', outside the model's "
                "folder; cimc reads external data only from beside the model"
            )
        check_regular(target, f"external data of tensor '{tensor.name}'", LIMITS["onnx"])


def opset_of(model: onnx.ModelProto, path: Path) -> int:
    """The standard opset the model imports, checked against the supported range."""
    version = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if version is None:
        raise UnsupportedModelError(f"{path}: the model imports no standard ONNX opset")
    if not MIN_OPSET <= version <= MAX_OPSET:
        raise UnsupportedModelError(
            f"{path}: opset {version} is not supported; cimc imports opsets {MIN_OPSET} to "
            f"{MAX_OPSET}"
        )
    return version


def check_qdq(graph: onnx.GraphProto, path: Path) -> None:
    """A model without QuantizeLinear / DequantizeLinear is a float model: refused."""
    ops = {n.op_type for n in graph.node if n.domain in ("", "ai.onnx")}
    if not ops & {"QuantizeLinear", "DequantizeLinear"}:
        raise UnsupportedModelError(
            f"{path}: model has no QDQ nodes: cimc compiles quantized models; export "
            "with brevitas.export.export_onnx_qcdq"
        )


def node_name(node: onnx.NodeProto, index: int) -> str:
    return node.name or f"{node.op_type}_{index}"


def attributes(node: onnx.NodeProto) -> dict[str, Any]:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def input_dims(vi: onnx.ValueInfoProto) -> list[int | str | None]:
    """Dims of a value info: ints, symbolic names, or ``None`` when unknown."""
    dims: list[int | str | None] = []
    for d in vi.type.tensor_type.shape.dim:
        if d.HasField("dim_value"):
            dims.append(int(d.dim_value))
        elif d.HasField("dim_param"):
            dims.append(d.dim_param)
        else:
            dims.append(None)
    return dims


def graph_inputs(graph: onnx.GraphProto) -> list[onnx.ValueInfoProto]:
    """The real inputs (initializers listed as inputs are not)."""
    inits = {i.name for i in graph.initializer}
    return [vi for vi in graph.input if vi.name not in inits]


@dataclass(frozen=True)
class BatchInfo:
    """Batch sizes of an import.

    ``infer``: the batch shapes are inferred and folded with (the file's when it has one);
    ``type``: the batch written into the module's types (``DYNAMIC_INDEX`` for ``?``);
    ``symbolic``: the file's batch is symbolic; ``requested``: the caller's ``batch``;
    ``axes``: each graph input's batch axis (the module is typed at ``infer`` when one is not 0).
    """

    infer: int
    type: int
    symbolic: bool
    requested: int | None
    axes: tuple[int, ...] = ()

    @property
    def moved(self) -> bool:
        """Whether some input carries the batch on another axis than 0."""
        return any(self.axes)


def _spec(batch_axis: BatchAxis) -> tuple[dict[str, int], int | None]:
    if batch_axis is None:
        return {}, None
    if isinstance(batch_axis, int):
        return {}, batch_axis
    named = {k: v for k, v in batch_axis.items() if k is not None}
    return named, batch_axis.get(None)


def batch_axes(inputs: list[onnx.ValueInfoProto], batch_axis: BatchAxis) -> list[int]:
    """Each input's batch axis: the caller's, else its symbolic dim, else 0 (one-line errors
    for an unknown input name, an axis out of range, a symbolic dim on another axis)."""
    named, default = _spec(batch_axis)
    names = [vi.name for vi in inputs]
    for name in named:
        if name not in names:
            raise UnsupportedModelError(
                f"--batch-axis {name}=...: the model has no input '{name}' (its inputs: "
                f"{', '.join(names) or 'none'})")
    axes = []
    for vi in inputs:
        dims = input_dims(vi)
        symbolic = [i for i, d in enumerate(dims) if not isinstance(d, int)]
        given = named.get(vi.name, default)
        if given is None:
            axis = symbolic[0] if symbolic else 0
        elif not -len(dims) <= given < len(dims):
            raise UnsupportedModelError(
                f"--batch-axis: axis {given} is out of range for input '{vi.name}' of shape "
                f"{['?' if d is None else d for d in dims]}")
        else:
            axis = given % len(dims)
        for i in symbolic:
            if i != axis:
                raise UnsupportedModelError(
                    f"input '{vi.name}' dim {i} is dynamic ('{dims[i] or '?'}'); only the batch "
                    f"dimension (axis {axis}; see --batch-axis) may be symbolic")
        axes.append(axis)
    return axes


def _check_tensor(vi: onnx.ValueInfoProto) -> list[int | str | None]:
    """The dims of a float32 tensor input with a shape and no zero dim, or a one-line error."""
    tt = vi.type.tensor_type
    if not vi.type.HasField("tensor_type"):
        raise UnsupportedModelError(f"input '{vi.name}' is not a tensor")
    if tt.elem_type != onnx.TensorProto.FLOAT:
        dtype = onnx.TensorProto.DataType.Name(tt.elem_type).lower()
        raise UnsupportedModelError(
            f"input '{vi.name}' has element type {dtype}; cimc takes float32 inputs"
        )
    if not tt.HasField("shape"):
        raise UnsupportedModelError(f"input '{vi.name}' has no shape")
    dims = input_dims(vi)
    for i, d in enumerate(dims):
        if d == 0:
            raise UnsupportedModelError(
                f"input '{vi.name}' dim {i} has size 0; cimc takes non-empty inputs")
    return dims


def check_inputs(graph: onnx.GraphProto, path: Path, batch: int | None,
                 batch_axis: BatchAxis = None) -> BatchInfo:
    """Only float inputs, only the batch dimension symbolic, one batch size on every input's
    batch axis; fixes the batch sizes."""
    inputs = graph_inputs(graph)
    dims_of = [_check_tensor(vi) for vi in inputs]
    axes = batch_axes(inputs, batch_axis)
    file_batch: int | None = None
    first = ""
    symbolic = False
    for vi, dims, axis in zip(inputs, dims_of, axes):
        if not dims:
            continue
        d = dims[axis]
        if not isinstance(d, int):
            symbolic = True
        elif file_batch is None:
            file_batch, first = d, f"input '{vi.name}' axis {axis}"
        elif d != file_batch and (batch_axis is not None or any(axes)):
            raise UnsupportedModelError(
                f"--batch-axis: input '{vi.name}' axis {axis} has size {d} but {first} has size "
                f"{file_batch}; the batch axis must have one size on every input")
    if batch is not None and batch < 1:
        raise UnsupportedModelError(f"batch size must be positive, got {batch}")
    infer = file_batch or batch or 1
    if file_batch is not None and symbolic:
        raise UnsupportedModelError(
            f"{path}: some inputs have a fixed batch size and others a symbolic one")
    if batch is not None:
        typed = batch
    elif symbolic and not any(axes):
        typed = DYNAMIC_INDEX
    else:
        typed = infer
    if any(axes) and file_batch is not None and batch is not None and batch != file_batch:
        raise UnsupportedModelError(
            f"{path}: {first} fixes the batch at {file_batch}; it cannot be imported with "
            f"batch {batch}")
    return BatchInfo(infer=infer, type=typed, symbolic=symbolic, requested=batch, axes=tuple(axes))


def _toposort(graph: onnx.GraphProto) -> list[tuple[int, onnx.NodeProto]]:
    """Nodes in a topological order that keeps the file order when it already is one."""
    nodes = list(enumerate(graph.node))
    known = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    producers = {o for _, n in nodes for o in n.output}
    pending, done, order = nodes, set(known), []
    while pending:
        rest = []
        for idx, n in pending:
            if all(i in done or i not in producers for i in n.input):
                order.append((idx, n))
                done.update(n.output)
            else:
                rest.append((idx, n))
        if len(rest) == len(pending):
            idx, n = rest[0]
            raise UnsupportedModelError(f"node '{node_name(n, idx)}' is part of a cycle")
        pending = rest
    return order


def live_nodes(graph: onnx.GraphProto) -> tuple[list[tuple[int, onnx.NodeProto]], set[str]]:
    """Nodes that contribute to a graph output (topologically ordered) and the tensors used."""
    order = _toposort(graph)
    producer = {o: (idx, n) for idx, n in order for o in n.output if o}
    needed = {o.name for o in graph.output}
    live: set[int] = set()
    stack = list(needed)
    while stack:
        name = stack.pop()
        if name not in producer:
            continue
        idx, n = producer[name]
        if idx in live:
            continue
        live.add(idx)
        for i in n.input:
            if i:
                needed.add(i)
                stack.append(i)
    return [(idx, n) for idx, n in order if idx in live], needed
