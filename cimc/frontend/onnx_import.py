"""ONNX QDQ / QCDQ importer: an ONNX file to a ``cimq`` module.

This is the only module of cimc that imports :mod:`onnx`. It reads Brevitas QCDQ exports
(``QuantizeLinear -> [Clip] -> DequantizeLinear`` on activations, ``int8 initializer -> [Clip] ->
DequantizeLinear`` on weights, int32 biases) and plain QDQ files with the same conventions, and
writes one ``func.func @main`` in a ``builtin.module``:

* a quantized activation becomes ``cimq.quantize`` (attribute ``src`` names the ONNX tensor that
  holds the integers: the Clip output, or the QuantizeLinear output when there is no Clip); its
  bit width comes from the Clip bounds (no Clip: the storage type, 8 bits);
* Conv / Gemm / MatMul on quantized operands become ``cimq.conv`` / ``cimq.matmul`` /
  ``cimq.matmul_act`` producing an s32 accumulator (scale ``s_x * s_w``), int32 biases become
  ``cimq.bias_add``, everything after runs in f32 (``cimq.dequantize`` first) until the next
  ``cimq.quantize``;
* shape computations (Shape, Gather, Concat, ... on constants) are folded with numpy;
* everything cimc cannot compile is rejected with a one-line :class:`~cimc.errors.CimcError`.

Use :func:`import_onnx`; :func:`policy_of` gives the ``(L, 2)`` ``[w_bits, a_bits]`` array of the
crossbar layers in graph order.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper
from xdsl.dialects import func
from xdsl.dialects.builtin import (
    DYNAMIC_INDEX,
    ArrayAttr,
    BytesAttr,
    DenseIntOrFPElementsAttr,
    DictionaryAttr,
    FloatAttr,
    IntegerAttr,
    IntegerType,
    ModuleOp,
    Signedness,
    StringAttr,
    TensorType,
    f32,
    f64,
    i8,
    i32,
    i64,
)
from xdsl.ir import Attribute, Block, Operation, Region, SSAValue

from cimc.dialects import cimq
from cimc.dialects.cimq import QuantType, i64_array
from cimc.errors import CimcError, InputFileError, UnsupportedModelError
from cimc.weights import INLINE_LIMIT

MIN_OPSET = 13
MAX_OPSET = 21

# ONNX element type -> (numpy dtype, bits, signed) for the integer types of quantized tensors.
_INT_TYPES: dict[int, tuple[Any, int, bool]] = {
    onnx.TensorProto.INT8: (np.int8, 8, True),
    onnx.TensorProto.UINT8: (np.uint8, 8, False),
    onnx.TensorProto.INT16: (np.int16, 16, True),
    onnx.TensorProto.UINT16: (np.uint16, 16, False),
    onnx.TensorProto.INT32: (np.int32, 32, True),
}
_INT4: dict[int, tuple[int, bool]] = {
    onnx.TensorProto.INT4: (4, True),
    onnx.TensorProto.UINT4: (4, False),
}


# --------------------------------------------------------------------------------------------
# Public result types
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Values of the ONNX graph while importing
# --------------------------------------------------------------------------------------------


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
        scales = np.asarray(self.qtype.scale_values, dtype=np.float32)
        ints = self.ints.astype(np.float32) - np.float32(self.qtype.zp)
        if not self.qtype.per_channel:
            return (ints * scales[0]).astype(np.float32)
        shape = [1] * ints.ndim
        shape[self.qtype.channel_axis] = -1
        return (ints * scales.reshape(shape)).astype(np.float32)


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


def _pow2(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


# --------------------------------------------------------------------------------------------
# Loading and checks
# --------------------------------------------------------------------------------------------


def _load(path: Path) -> onnx.ModelProto:
    if not path.exists():
        raise InputFileError(f"{path}: file not found")
    if not path.is_file():
        raise InputFileError(f"{path}: not a file")
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # DecodeError, RuntimeError, ValueError... from protobuf / onnx
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        detail = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
        raise InputFileError(f"{path}: not an ONNX model ({detail})") from None
    if model.ir_version == 0 or not model.opset_import or not model.graph.node:
        raise InputFileError(f"{path}: not an ONNX model (no graph, IR version or opset)")
    return model


def _opset(model: onnx.ModelProto, path: Path) -> int:
    version = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if version is None:
        raise UnsupportedModelError(f"{path}: the model imports no standard ONNX opset")
    if not MIN_OPSET <= version <= MAX_OPSET:
        raise UnsupportedModelError(
            f"{path}: opset {version} is not supported; cimc imports opsets {MIN_OPSET} to "
            f"{MAX_OPSET}"
        )
    return version


def _node_name(node: onnx.NodeProto, index: int) -> str:
    return node.name or f"{node.op_type}_{index}"


def _attrs(node: onnx.NodeProto) -> dict[str, Any]:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _input_dims(vi: onnx.ValueInfoProto) -> list[int | str | None]:
    dims: list[int | str | None] = []
    for d in vi.type.tensor_type.shape.dim:
        if d.HasField("dim_value"):
            dims.append(int(d.dim_value))
        elif d.HasField("dim_param"):
            dims.append(d.dim_param)
        else:
            dims.append(None)
    return dims


# --------------------------------------------------------------------------------------------
# The importer
# --------------------------------------------------------------------------------------------


class _Importer:
    def __init__(self, model: onnx.ModelProto, path: Path, batch: int | None):
        self.model = model
        self.graph = model.graph
        self.path = path
        self.opset = _opset(model, path)
        self.values: dict[str, Entry] = {}
        self.block: Block | None = None
        self.layers: list[LayerInfo] = []
        self.batch_arg = batch
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.used: set[str] = set()
        self.cur_ins: list[Entry | None] = []
        self.batch_lost: str | None = None  # first node whose result lost the batch axis
        self.force_static = False
        self.node = onnx.NodeProto()  # current node, for messages
        self.node_label = ""

    # -- errors ------------------------------------------------------------------------------
    def fail(self, message: str) -> CimcError:
        where = f"node '{self.node_label}' (op {self.node.op_type})"
        return UnsupportedModelError(f"{where}: {message}")

    def fail_short(self, message: str) -> CimcError:
        return UnsupportedModelError(f"node '{self.node_label}': {message}")

    # -- setup -------------------------------------------------------------------------------
    def check_qdq(self) -> None:
        ops = {n.op_type for n in self.graph.node if n.domain in ("", "ai.onnx")}
        if not ops & {"QuantizeLinear", "DequantizeLinear"}:
            raise UnsupportedModelError(
                f"{self.path}: model has no QDQ nodes: cimc compiles quantized models; export "
                "with brevitas.export.export_onnx_qcdq"
            )

    def graph_inputs(self) -> list[onnx.ValueInfoProto]:
        inits = {i.name for i in self.graph.initializer}
        return [vi for vi in self.graph.input if vi.name not in inits]

    def check_inputs(self) -> None:
        """Only float inputs, only the batch dimension symbolic; fixes the batch sizes."""
        self.file_batch: int | None = None
        self.symbolic_batch = False
        for vi in self.graph_inputs():
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
            dims = _input_dims(vi)
            for i, d in enumerate(dims):
                if i > 0 and not isinstance(d, int):
                    raise UnsupportedModelError(
                        f"input '{vi.name}' dim {i} is dynamic ('{d or '?'}'); only the batch "
                        "dimension may be symbolic"
                    )
            if dims and isinstance(dims[0], int):
                self.file_batch = dims[0] if self.file_batch is None else self.file_batch
            elif dims:
                self.symbolic_batch = True
        if self.batch_arg is not None and self.batch_arg < 1:
            raise UnsupportedModelError(f"batch size must be positive, got {self.batch_arg}")
        # Batch used for shape inference and constant folding (the file's when it has one).
        self.infer_batch = self.file_batch or self.batch_arg or 1
        if self.file_batch is not None and self.symbolic_batch:
            raise UnsupportedModelError(
                f"{self.path}: some inputs have a fixed batch size and others a symbolic one")
        if self.batch_arg is not None:
            self.type_batch = self.batch_arg
        elif self.symbolic_batch and not self.force_static:
            self.type_batch = DYNAMIC_INDEX
        else:
            self.type_batch = self.infer_batch

    def infer_shapes(self) -> None:
        """Static shapes of every tensor, from onnx shape inference at ``infer_batch``."""
        light = onnx.ModelProto()
        light.ir_version = self.model.ir_version
        light.opset_import.extend(self.model.opset_import)
        g = light.graph
        g.node.extend(self.graph.node)
        g.output.extend(self.graph.output)
        for vi in self.graph_inputs():
            new = g.input.add()
            new.CopyFrom(vi)
            dims = new.type.tensor_type.shape.dim
            if dims and not dims[0].HasField("dim_value"):
                dims[0].Clear()
                dims[0].dim_value = self.infer_batch
        for init in self.graph.initializer:
            # Large initializers only matter through their type: pass them as typed inputs.
            if init.data_type != onnx.TensorProto.INT64 and _numel(init.dims) > 64:
                g.input.append(onnx.helper.make_tensor_value_info(
                    init.name, init.data_type, list(init.dims)))
            else:
                g.initializer.append(init)
        try:
            inferred = onnx.shape_inference.infer_shapes(light, strict_mode=False, data_prop=True)
        except Exception as exc:  # inference errors come from malformed graphs
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UnsupportedModelError(f"{self.path}: shape inference failed ({msg})") from None
        for vi in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]:
            if not vi.type.HasField("tensor_type") or not vi.type.tensor_type.HasField("shape"):
                continue
            dims = _input_dims(vi)
            if all(isinstance(d, int) for d in dims):
                self.shapes[vi.name] = tuple(int(d) for d in dims)  # type: ignore[arg-type]

    # -- emission helpers --------------------------------------------------------------------
    def emit(self, op: Operation) -> Operation:
        assert self.block is not None
        self.block.add_op(op)
        return op

    def ttype(self, shape: Sequence[int], elem: Attribute, batched: bool) -> TensorType:
        dims = list(shape)
        if batched and dims:
            dims[0] = self.type_batch
        return TensorType(elem, dims)

    def const_attr(self, arr: np.ndarray, origin: str) -> Attribute:
        """Inline ``dense<...>`` for small arrays, else a blob in the weight store."""
        if arr.size <= INLINE_LIMIT:
            elem = _xdsl_elem(arr.dtype)
            return DenseIntOrFPElementsAttr(
                TensorType(elem, list(arr.shape)), BytesAttr(np.array(arr, order="C").tobytes())
            )
        return cimq.BlobAttr(origin or "const", arr)

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
        raise self.fail(f"cannot infer the static shape of '{name}'")

    # -- materialisation ---------------------------------------------------------------------
    def float_const(self, arr: np.ndarray, origin: str) -> SSAValue:
        op = cimq.ConstOp(self.const_attr(arr, origin), TensorType(f32, list(arr.shape)))
        return self.emit(op).results[0]

    def as_float(self, entry: Entry) -> SSAValue:
        """The f32 SSA value of any entry (constants become f32 ``cimq.const``)."""
        if isinstance(entry, Const):
            if entry.f32_ssa is None:
                if entry.arr.dtype.kind not in "fiub":
                    raise self.fail(f"constant of type {entry.arr.dtype} used as a float tensor")
                arr = np.array(entry.arr, dtype=np.float32, order="C")
                entry.f32_ssa = self.float_const(arr, entry.origin)
            return entry.f32_ssa
        if isinstance(entry, QConst):
            if entry.f32_ssa is None:
                arr = entry.real()
                entry.f32_ssa = self.float_const(arr, entry.origin)
            return entry.f32_ssa
        if entry.kind == "float":
            assert entry.ssa is not None
            return entry.ssa
        if entry.kind == "q":
            raise self.fail(f"integer tensor '{entry.src or '?'}' is used by a float op (expected "
                            "a DequantizeLinear first)")
        if entry.f32_ssa is None:
            q = self.as_quant(entry.q if entry.kind == "dq" else entry)
            out = self.ttype(entry.shape, f32, entry.batched)
            op = cimq.DequantizeOp.create(operands=[q], result_types=[out])
            entry.f32_ssa = self.emit(op).results[0]
        return entry.f32_ssa

    def as_quant(self, t: Tensor) -> SSAValue:
        """The quantized SSA value of a ``q`` / ``acc`` tensor (emitting a pending quantize)."""
        if t.too_wide is not None:
            raise t.too_wide
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

    def weight_ssa(self, w: QConst) -> SSAValue:
        if w.ssa is None:
            arr = np.array(w.ints, order="C")
            op = cimq.ConstOp(self.const_attr(arr, w.origin), TensorType(w.qtype, list(arr.shape)))
            w.ssa = self.emit(op).results[0]
        return w.ssa

    def float_result(self, op_cls: type, operands: list[SSAValue], shape: Sequence[int],
                     batched: bool, attrs: dict[str, Attribute] | None = None) -> Tensor:
        op = op_cls.create(operands=operands, result_types=[self.ttype(shape, f32, batched)],
                           attributes=attrs or {})
        return Tensor("float", tuple(shape), batched, ssa=self.emit(op).results[0])

    # -- main loop ---------------------------------------------------------------------------
    def run(self) -> ImportResult:
        self.check_qdq()
        self.check_inputs()
        self.infer_shapes()
        for init in self.graph.initializer:
            self.values[init.name] = _init_const(init)
        arg_types, inputs = [], []
        for vi in self.graph_inputs():
            dims = [d if isinstance(d, int) else self.infer_batch for d in _input_dims(vi)]
            self.shapes[vi.name] = tuple(dims)
            arg_types.append(self.ttype(dims, f32, bool(dims)))
            shown = [None if self.type_batch == DYNAMIC_INDEX and i == 0 else
                     (self.type_batch if i == 0 else d) for i, d in enumerate(dims)]
            inputs.append(TensorInfo(vi.name, tuple(shown), "float32"))
        self.block = Block(arg_types=arg_types)
        for vi, arg in zip(self.graph_inputs(), self.block.args):
            arg.name_hint = _ssa_name(vi.name)
            self.values[vi.name] = Tensor("float", self.shapes[vi.name], True, ssa=arg)

        live, self.used = _live_nodes(self.graph)
        for index, node in live:
            self.node, self.node_label = node, _node_name(node, index)
            self.visit(node)

        results, outputs = [], []
        for out in self.graph.output:
            if out.name not in self.values:
                raise UnsupportedModelError(f"graph output '{out.name}' is not computed")
            entry = self.values[out.name]
            if isinstance(entry, Tensor) and entry.kind == "q":
                value = self.as_quant(entry)
                dtype = "int8" if entry.qtype.is_signed else "uint8"
            else:
                value = self.as_float(entry)
                dtype = "float32"
            results.append(value)
            shape = value.type.get_shape()
            outputs.append(TensorInfo(out.name, tuple(None if d < 0 else d for d in shape), dtype))
        self.emit(func.ReturnOp(*results))

        arg_attrs = ArrayAttr([DictionaryAttr({"cimq.name": StringAttr(i.name)}) for i in inputs])
        res_attrs = ArrayAttr([DictionaryAttr({"cimq.name": StringAttr(o.name)}) for o in outputs])
        fn = func.FuncOp(
            "main", (arg_types, [r.type for r in results]), Region(self.block),
            arg_attrs=arg_attrs, res_attrs=res_attrs,
        )
        module = ModuleOp([fn])
        module.verify()
        return ImportResult(module, self.layers, inputs, outputs, self.batch_lost is None)

    def visit(self, node: onnx.NodeProto) -> None:
        if node.domain not in ("", "ai.onnx"):
            raise UnsupportedModelError(
                f"node '{self.node_label}' (op {node.domain}::{node.op_type}) is not supported"
            )
        ins = [self.values.get(name) if name else None for name in node.input]
        self.cur_ins = ins
        for name, entry in zip(node.input, ins):
            if name and entry is None:
                raise self.fail(f"input '{name}' is not defined before the node")
        handler = _HANDLERS.get(node.op_type)
        if handler is not None and handler[1]:  # handles constants itself
            handler[0](self, node, ins)
            return
        if all(e is None or isinstance(e, (Const, QConst)) for e in ins) and (
            ins or node.op_type == "Constant"
        ):
            self.fold(node, ins)  # shape computations, Constant nodes, constant arithmetic
            return
        if handler is None:
            raise UnsupportedModelError(
                f"node '{self.node_label}' (op {node.op_type}) is not supported"
            )
        handler[0](self, node, ins)

    def set_out(self, node: onnx.NodeProto, entry: Entry, index: int = 0) -> None:
        self.values[node.output[index]] = entry
        if self.batch_lost is None and isinstance(entry, Tensor) and not entry.batched and any(
            isinstance(e, Tensor) and e.batched for e in self.cur_ins
        ):
            self.batch_lost = self.node_label  # the batch no longer is dim 0 of the result

    def check_single_output(self, node: onnx.NodeProto) -> None:
        for extra in node.output[1:]:
            if extra and extra in self.used:
                raise self.fail(f"the optional output '{extra}' is not supported")

    # -- constant folding ----------------------------------------------------------------------
    def fold(self, node: onnx.NodeProto, ins: list[Entry | None]) -> None:
        arrays = [None if e is None else (e.arr if isinstance(e, Const) else e.real()) for e in ins]
        origin = next((e.origin for e in ins if isinstance(e, (Const, QConst)) and e.origin), "")
        op = node.op_type
        a = _attrs(node)
        try:
            if op == "Constant":
                outs = [_constant_value(node)]
            elif op == "Identity":
                self.set_out(node, ins[0])  # keeps clip info and quantization
                return
            elif op == "Transpose":
                perm = a.get("perm", list(range(arrays[0].ndim))[::-1])
                outs = [np.ascontiguousarray(np.transpose(arrays[0], perm))]
            else:
                outs = _reference_eval(node, arrays, self.opset)
        except CimcError:
            raise
        except Exception as exc:
            raise self.fail(f"constant folding failed ({type(exc).__name__}: {exc})") from None
        for name, arr in zip(node.output, outs):
            if name:
                self.values[name] = Const(np.asarray(arr), origin=origin)

    # -- quantization nodes --------------------------------------------------------------------
    def scale_zp(
        self, node: onnx.NodeProto, ins: list[Entry | None]
    ) -> tuple[np.ndarray, np.ndarray, Any, int]:
        """Scale (float64 array), zero point array, storage dtype info and axis of a Q/DQ node."""
        a = _attrs(node)
        if a.get("block_size", 0):
            raise self.fail(f"blocked quantization (block_size={a['block_size']}) is not supported")
        scale = ins[1] if len(ins) > 1 else None
        if not isinstance(scale, Const):
            raise self.fail("the scale must be a constant")
        zp_entry = ins[2] if len(ins) > 2 else None
        if zp_entry is not None and not isinstance(zp_entry, Const):
            raise self.fail("the zero point must be a constant")
        s = np.asarray(scale.arr, dtype=np.float64)
        if s.ndim > 1:
            raise self.fail(f"scale of shape {list(s.shape)} is not supported (scalar or 1-D)")
        if zp_entry is not None:
            zp = np.asarray(zp_entry.arr)
            storage = _storage_of(zp_entry)
        else:
            zp = np.zeros((), dtype=np.int64)
            storage = None
        return s, zp, storage, int(a.get("axis", 1))

    def q_storage(self, node: onnx.NodeProto, storage: Any) -> tuple[int, bool]:
        """(bits, signed) of a QuantizeLinear's output type."""
        if storage is None:
            out_dtype = _attrs(node).get("output_dtype", 0)
            storage = _storage_from_enum(out_dtype) if out_dtype else (8, False)
        if isinstance(storage, str):
            raise self.fail_short(f"quantized type {storage} is not supported; cimc supports "
                                  "int8/uint8 (1 to 8 bits)")
        return storage

    def h_quantize(self, node: onnx.NodeProto, ins: list[Entry | None]) -> None:
        s, zp, storage, axis = self.scale_zp(node, ins)
        bits, signed = self.q_storage(node, storage)
        x = ins[0]
        if isinstance(x, (Const, QConst)):  # export_weight_q_node: quantize the weights here
            arr = x.arr if isinstance(x, Const) else x.real()
            ints = _quantize_array(arr, s, zp, axis, bits, signed)
            self.set_out(node, Const(ints, origin=x.origin, int_bits=(bits, signed)))
            return
        if s.size != 1:
            raise self.fail_short("per-channel activation quantization is not supported")
        if np.any(zp != 0):
            raise self.fail_short(
                f"activation zero point {int(zp.reshape(-1)[0])} is not supported (cimc maps "
                "symmetric quantization, zero point 0)"
            )
        too_wide = None
        if bits > 8:  # a Clip may still narrow it; checked when the integers are used
            too_wide = self.fail_short(
                f"{'int' if signed else 'uint'}{bits} quantization of '{node.input[0]}' is "
                f"{bits} bits; cimc supports 1 to 8 bits"
            )
        scale = float(s.reshape(-1)[0])
        if not (scale > 0 and math.isfinite(scale)):
            raise self.fail_short(f"scale {scale} must be positive and finite")
        assert isinstance(x, Tensor)
        qtype = QuantType(min(bits, 8), signed, scale)  # too_wide raises before it is used
        t = Tensor("q", x.shape, x.batched, qtype=qtype, source=x, src=node.output[0],
                   storage=(bits, signed), too_wide=too_wide)
        self.set_out(node, t)

    def clip_bits(self, lo: int, hi: int, signed_storage: bool) -> tuple[int, bool, bool]:
        """(bits, signed, narrow) of an integer Clip range, or a one-line error."""
        span = hi + 1
        if lo == 0 and hi > 0 and _pow2(span):
            bits, signed, narrow = int(math.log2(span)), False, False
        elif lo < 0 and lo == -hi and _pow2(span):
            bits, signed, narrow = int(math.log2(span)) + 1, True, True
        elif lo < 0 and -lo == span and _pow2(span):
            bits, signed, narrow = int(math.log2(span)) + 1, True, False
        else:
            raise self.fail_short(
                f"Clip bounds [{lo}, {hi}] are not a power-of-two integer range (such as [0, 15], "
                "[-8, 7] or [-7, 7])"
            )
        if bits > 8:
            raise self.fail_short(
                f"Clip range [{lo}, {hi}] is {bits} bits; cimc supports 1 to 8 bits"
            )
        return bits, signed, narrow

    def clip_bounds(
        self, node: onnx.NodeProto, ins: list[Entry | None], dtype: Any
    ) -> tuple[Any, Any]:
        info = np.iinfo(dtype) if np.issubdtype(dtype, np.integer) else None
        bounds = []
        for k in (1, 2):
            e = ins[k] if len(ins) > k else None
            if e is None:
                bounds.append(None if info is None else (info.min if k == 1 else info.max))
                continue
            if not isinstance(e, Const):
                raise self.fail("Clip bounds must be constants")
            bounds.append(e.arr.reshape(-1)[0].item())
        a = _attrs(node)  # opset < 11 style attributes (not expected at opset >= 13)
        if "min" in a and bounds[0] is None:
            bounds[0] = a["min"]
        if "max" in a and bounds[1] is None:
            bounds[1] = a["max"]
        return bounds[0], bounds[1]

    def h_clip(self, node: onnx.NodeProto, ins: list[Entry | None]) -> None:
        x = ins[0]
        if isinstance(x, Const) and np.issubdtype(x.arr.dtype, np.integer):
            lo, hi = self.clip_bounds(node, ins, x.arr.dtype)
            self.clip_bits(int(lo), int(hi), x.arr.dtype.kind == "i")
            self.set_out(node, Const(np.clip(x.arr, lo, hi).astype(x.arr.dtype), origin=x.origin,
                                     clip=(int(lo), int(hi))))
            return
        if isinstance(x, Tensor) and x.kind == "q":
            if x.ssa is not None or x.source is None:
                raise self.fail("clipping a quantized tensor that is not a QuantizeLinear output "
                                "is not supported")
            bits, signed = x.storage or (8, x.qtype.is_signed)
            dtype = _np_int(bits, signed)
            lo, hi = self.clip_bounds(node, ins, dtype)
            cb, csigned, narrow = self.clip_bits(int(lo), int(hi), signed)
            qtype = QuantType(cb, csigned, x.qtype.scale_values[0], narrow=narrow)
            self.set_out(node, Tensor("q", x.shape, x.batched, qtype=qtype, source=x.source,
                                      src=node.output[0], storage=(bits, signed)))
            return
        if isinstance(x, (Const, QConst)):
            self.fold(node, ins)
            return
        lo, hi = self.clip_bounds(node, ins, np.float32)
        attrs: dict[str, Attribute] = {}
        if lo is not None:
            attrs["min"] = FloatAttr(float(lo), f64)
        if hi is not None:
            attrs["max"] = FloatAttr(float(hi), f64)
        out = self.float_result(cimq.ClipOp, [self.as_float(x)], x.shape, x.batched, attrs)
        self.set_out(node, out)

    def h_dequantize(self, node: onnx.NodeProto, ins: list[Entry | None]) -> None:
        s, zp, storage, axis = self.scale_zp(node, ins)
        x = ins[0]
        if isinstance(x, Tensor) and x.kind == "q":
            if x.too_wide is not None:
                raise x.too_wide
            q_scale = x.qtype.scale_values[0]
            if s.size != 1 or not math.isclose(float(s.reshape(-1)[0]), q_scale, rel_tol=1e-7):
                raise self.fail_short(
                    f"DequantizeLinear scale {s.reshape(-1).tolist()[:4]} differs from the "
                    f"QuantizeLinear scale {q_scale}"
                )
            if np.any(zp != 0):
                raise self.fail_short(
                    f"activation zero point {int(zp.reshape(-1)[0])} is not supported (cimc maps "
                    "symmetric quantization, zero point 0)"
                )
            self.set_out(node, Tensor("dq", x.shape, x.batched, q=x))
            return
        if not isinstance(x, Const) or not np.issubdtype(x.arr.dtype, np.integer):
            raise self.fail("the input is not an integer tensor (a QuantizeLinear, Clip or "
                            "integer initializer)")
        ints = x.arr
        bits, signed = x.int_bits or _np_bits(ints.dtype)
        narrow = False
        if x.clip is not None:
            bits, signed, narrow = self.clip_bits(*x.clip, signed)
        elif bits == 32:
            pass
        elif bits > 8:
            raise self.fail_short(
                f"{ints.dtype} weight '{node.input[0]}' is {bits} bits; cimc supports 1 to 8 bits"
            )
        if bits == 32 and x.clip is None and not signed:
            raise self.fail_short("uint32 constants are not supported")
        flat_zp = zp.reshape(-1)
        if np.any(flat_zp != 0):
            nz = int(flat_zp[np.flatnonzero(flat_zp)[0]])
            raise self.fail_short(
                f"weight zero point {nz} is not supported (cimc maps symmetric quantization, zero "
                "point 0)"
            )
        scales = [float(v) for v in s.reshape(-1)]
        if any(not (v > 0 and math.isfinite(v)) for v in scales):
            raise self.fail_short(f"scale {scales[:4]} must be positive and finite")
        if len(scales) > 1:
            ax = axis % max(ints.ndim, 1)
            if len(scales) != ints.shape[ax]:
                raise self.fail_short(
                    f"{len(scales)} scales do not match dim {ax} ({ints.shape[ax]}) of "
                    f"'{node.input[0]}'"
                )
            qtype = QuantType(bits, signed, scales, narrow=narrow, axis=ax)
        else:
            qtype = QuantType(bits, signed, scales[0], narrow=narrow)
        store = ints.astype(np.int32 if bits == 32 else (np.int8 if signed else np.uint8))
        self.set_out(node, QConst(store, qtype, origin=x.origin or node.input[0]))

    # -- crossbar nodes --------------------------------------------------------------------------
    def quant_input(self, node: onnx.NodeProto, ins: list[Entry | None], k: int) -> Tensor:
        e = ins[k]
        if isinstance(e, Tensor) and e.kind == "dq":
            return e.q  # type: ignore[return-value]
        raise self.fail(
            f"input '{node.input[k]}' is not quantized; cimc maps only Conv/Gemm/MatMul on "
            "DequantizeLinear outputs to crossbars"
        )

    def quant_weight(self, node: onnx.NodeProto, ins: list[Entry | None], k: int) -> QConst:
        e = ins[k]
        if isinstance(e, QConst) and e.qtype.width <= 8:
            return e
        raise self.fail(
            f"input '{node.input[k]}' is not a quantized weight; cimc maps only Conv/Gemm/MatMul "
            "on DequantizeLinear outputs to crossbars"
        )

    def acc_type(self, x: QuantType, w: QuantType, axis: int) -> QuantType:
        sx = x.scale_values[0]
        scales = [sx * sw for sw in w.scale_values]
        return QuantType(32, True, scales if w.per_channel else scales[0],
                         axis=axis if w.per_channel else -1)

    def record(self, node_label: str, kind: str, w: QuantType, a: QuantType, shapes: dict) -> None:
        self.layers.append(LayerInfo(
            node_label, kind, w.width, a.width, w.is_signed, a.is_signed, w.per_channel, shapes,
        ))

    def add_bias(self, node: onnx.NodeProto, acc: Tensor, bias: Entry | None, axis: int,
                 float_shape: Callable[[np.ndarray], np.ndarray]) -> Tensor:
        """Int32 bias with the accumulator's scale -> ``cimq.bias_add``; else float add."""
        if bias is None:
            return acc
        if self.bias_matches(acc, bias, axis):
            assert isinstance(bias, QConst)
            b = self.weight_ssa(bias)
            op = cimq.BiasAddOp.create(
                operands=[acc.ssa, b], result_types=[acc.ssa.type],
                attributes={"axis": IntegerAttr(axis, i64)},
            )
            return Tensor("acc", acc.shape, acc.batched, ssa=self.emit(op).results[0],
                          qtype=acc.qtype)
        if isinstance(bias, Tensor):
            raise self.fail("the bias must be a constant")
        arr = bias.arr if isinstance(bias, Const) else bias.real()
        const = Const(float_shape(np.asarray(arr, dtype=np.float32)),
                      origin=getattr(bias, "origin", ""))
        return self.float_result(cimq.AddOp, [self.as_float(acc), self.as_float(const)],
                                 acc.shape, acc.batched)

    def bias_matches(self, acc: Tensor, bias: Entry | None, axis: int) -> bool:
        if not isinstance(bias, QConst) or bias.qtype.width != 32 or bias.ints.ndim != 1:
            return False
        if bias.ints.shape[0] != acc.shape[axis] or bias.qtype.zp != 0:
            return False
        acc_s = list(acc.qtype.scale_values)
        b_s = list(bias.qtype.scale_values)
        if len(b_s) == 1 and len(acc_s) > 1:
            b_s = b_s * len(acc_s)
        if len(acc_s) == 1 and len(b_s) > 1:
            acc_s = acc_s * len(b_s)
        return len(acc_s) == len(b_s) and all(
            math.isclose(x, y, rel_tol=1e-5) for x, y in zip(acc_s, b_s)
        )

    def h_conv(self, node: onnx.NodeProto, ins: list[Entry | None]) -> None:
        xq = self.quant_input(node, ins, 0)
        w = self.quant_weight(node, ins, 1)
        if w.ints.ndim != 4 or len(xq.shape) != 4:
            raise self.fail("only 2-D convolutions (NCHW input, OIHW weight) are supported")
        if w.qtype.per_channel and w.qtype.channel_axis != 0:
            raise self.fail("per-channel weight scales must be along the output channels (axis 0)")
        a = _attrs(node)
        kernel = list(w.ints.shape[2:])
        if "kernel_shape" in a and list(a["kernel_shape"]) != kernel:
            raise self.fail(f"kernel_shape {a['kernel_shape']} differs from the weight {kernel}")
        strides = list(a.get("strides", [1, 1]))
        dil = list(a.get("dilations", [1, 1]))
        pads = self.pads(a, xq.shape[2:], kernel, strides, dil)
        out_shape = self.shape_of(node.output[0])
        acc_q = self.acc_type(xq.qtype, w.qtype, 1)
        op = cimq.ConvOp(
            self.as_quant(xq), self.weight_ssa(w), self.ttype(out_shape, acc_q, xq.batched),
            strides=strides, pads=[pads[0], pads[1], pads[2], pads[3]], dilations=dil,
            group=int(a.get("group", 1)), layer=self.node_label,
        )
        acc = Tensor("acc", out_shape, xq.batched, ssa=self.emit(op).results[0], qtype=acc_q)
        self.record(self.node_label, "conv", w.qtype, xq.qtype, {
            "input": self.shown(xq.shape, xq.batched), "weight": tuple(w.ints.shape),
            "output": self.shown(out_shape, xq.batched)})
        bias = ins[2] if len(ins) > 2 else None
        self.set_out(node, self.add_bias(node, acc, bias, 1, lambda b: b.reshape(-1, 1, 1)))

    def shown(self, shape: Sequence[int], batched: bool) -> tuple[int, ...]:
        dims = list(shape)
        if batched and dims:
            dims[0] = -1 if self.type_batch == DYNAMIC_INDEX else self.type_batch
        return tuple(dims)

    def pads(self, a: dict, spatial: Sequence[int], kernel: Sequence[int],
             strides: Sequence[int], dil: Sequence[int]) -> list[int]:
        """ONNX pads ``[top, left, bottom, right]`` (auto_pad resolved)."""
        auto = a.get("auto_pad", b"NOTSET")
        auto = auto.decode() if isinstance(auto, bytes) else auto
        if auto in ("NOTSET", ""):
            p = list(a.get("pads", [0, 0, 0, 0]))
            if len(p) != 4:
                raise self.fail(f"pads {p} must have 4 values")
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

    def linear(self, node: onnx.NodeProto, xq: Tensor, w: QConst, bias: Entry | None) -> None:
        if len(xq.shape) < 1 or w.ints.shape[0] != xq.shape[-1]:
            raise self.fail(
                f"input {list(xq.shape)} and weight {list(w.ints.shape)} do not multiply")
        out_shape = self.shape_of(node.output[0], lambda: (*xq.shape[:-1], w.ints.shape[1]))
        axis = len(out_shape) - 1
        acc_q = self.acc_type(xq.qtype, w.qtype, axis)
        op = cimq.MatMulOp(self.as_quant(xq), self.weight_ssa(w),
                           self.ttype(out_shape, acc_q, xq.batched), layer=self.node_label)
        acc = Tensor("acc", out_shape, xq.batched, ssa=self.emit(op).results[0], qtype=acc_q)
        self.record(self.node_label, "linear", w.qtype, xq.qtype, {
            "input": self.shown(xq.shape, xq.batched), "weight": tuple(w.ints.shape),
            "output": self.shown(out_shape, xq.batched)})
        self.set_out(node, self.add_bias(node, acc, bias, axis, lambda b: b))

    def h_gemm(self, node: onnx.NodeProto, ins: list[Entry | None]) -> None:
        a = _attrs(node)
        for key in ("alpha", "beta"):
            if float(a.get(key, 1.0)) != 1.0:
                raise self.fail(f"{key}={a[key]} is not supported (only alpha = beta = 1)")
        if a.get("transA", 0):
            raise self.fail("transA=1 is not supported")
        xq = self.quant_input(node, ins, 0)
        w = self.quant_weight(node, ins, 1)
        if w.ints.ndim != 2:
            raise self.fail("the weight must be 2-D")
        if a.get("transB", 0):
            w = _transpose_qconst(w, [1, 0])
        if w.qtype.per_channel and w.qtype.channel_axis != 1:
            raise self.fail("per-channel weight scales must be along the output features")
        self.linear(node, xq, w, ins[2] if len(ins) > 2 else None)

    def h_matmul(self, node: onnx.NodeProto, ins: list[Entry | None]) -> None:
        rhs = ins[1]
        if isinstance(rhs, QConst) and rhs.qtype.width <= 8:
            xq = self.quant_input(node, ins, 0)
            if rhs.ints.ndim != 2:
                raise self.fail("a constant MatMul weight must be 2-D")
            if rhs.qtype.per_channel and rhs.qtype.channel_axis != 1:
                raise self.fail("per-channel weight scales must be along the output features")
            self.linear(node, xq, rhs, None)
            return
        lhs_q = self.quant_input(node, ins, 0)
        rhs_q = self.quant_input(node, ins, 1)
        out_shape = self.shape_of(node.output[0], lambda: (
            *np.broadcast_shapes(lhs_q.shape[:-2], rhs_q.shape[:-2]), lhs_q.shape[-2],
            rhs_q.shape[-1]))
        acc_q = self.acc_type(lhs_q.qtype, rhs_q.qtype, -1)
        batched = lhs_q.batched or rhs_q.batched
        op = cimq.MatMulActOp(self.as_quant(lhs_q), self.as_quant(rhs_q),
                              self.ttype(out_shape, acc_q, batched), layer=self.node_label)
        acc = Tensor("acc", out_shape, batched, ssa=self.emit(op).results[0], qtype=acc_q)
        self.record(self.node_label, "matmul_act", rhs_q.qtype, lhs_q.qtype, {
            "input": self.shown(lhs_q.shape, lhs_q.batched),
            "weight": self.shown(rhs_q.shape, rhs_q.batched),
            "output": self.shown(out_shape, batched)})
        self.set_out(node, acc)

    # -- host ops --------------------------------------------------------------------------------
    def runtime(self, node: onnx.NodeProto, ins: list[Entry | None], k: int = 0) -> Tensor:
        e = ins[k]
        if not isinstance(e, Tensor):
            raise self.fail(f"input '{node.input[k]}' must be a run-time tensor")
        return e

    def rank_of(self, e: Entry) -> int:
        if isinstance(e, Const):
            return e.arr.ndim
        if isinstance(e, QConst):
            return e.ints.ndim
        return len(e.shape)

    def h_binary(self, node: onnx.NodeProto, ins: list[Entry | None]) -> None:
        lhs, rhs = ins[0], ins[1]
        if node.op_type == "Add":
            for acc, bias in ((lhs, rhs), (rhs, lhs)):
                if isinstance(acc, Tensor) and acc.kind == "acc" and \
                        self.bias_matches(acc, bias, len(acc.shape) - 1):
                    self.set_out(node, self.add_bias(node, acc, bias, len(acc.shape) - 1,
                                                     lambda b: b))
                    return
        out_shape = self.shape_of(node.output[0], lambda: np.broadcast_shapes(
            *(_shape_of_entry(e) for e in (lhs, rhs))))
        batched = any(isinstance(e, Tensor) and e.batched and len(e.shape) == len(out_shape)
                      for e in (lhs, rhs))
        op_cls = {"Add": cimq.AddOp, "Sub": cimq.SubOp, "Mul": cimq.MulOp, "Div": cimq.DivOp}
        self.set_out(node, self.float_result(op_cls[node.op_type],
                                             [self.as_float(lhs), self.as_float(rhs)],
                                             out_shape, batched))

    def h_unary(self, node: onnx.NodeProto, ins: list[Entry | None]) -> None:
        x = self.runtime(node, ins)
        if node.op_type == "Gelu":
            approx = _attrs(node).get("approximate", b"none")
            approx = approx.decode() if isinstance(approx, bytes) else approx
            if approx != "none":
                raise self.fail(f"approximate='{approx}' is not supported (only the erf form)")
        op_cls = {"Relu": cimq.ReluOp, "Erf": cimq.ErfOp, "Sqrt": cimq.SqrtOp,
                  "Gelu": cimq.GeluOp}[node.op_type]
        self.set_out(node, self.float_result(op_cls, [self.as_float(x)], x.shape, x.batched))

    def norm_axis(self, axis: int, rank: int) -> int:
        if not -rank <= axis < rank:
            raise self.fail(f"axis {axis} is out of range for rank {rank}")
        return axis % rank

    def h_softmax(self, node: onnx.NodeProto, ins: list[Entry | None]) -> None:
        x = self.runtime(node, ins)
        axis = self.norm_axis(int(_attrs(node).get("axis", -1)), len(x.shape))
        self.set_out(node, self.float_result(cimq.SoftmaxOp, [self.as_float(x)], x.shape,
                                             x.batched, {"axis": IntegerAttr(axis, i64)}))

    def h_layernorm(self, node: onnx.NodeProto, ins: list[Entry | None]) -> None:
        self.check_single_output(node)
        x = self.runtime(node, ins)
        a = _attrs(node)
        axis = self.norm_axis(int(a.get("axis", -1)), len(x.shape))
        operands = [self.as_float(x), self.as_float(ins[1])]
        if len(ins) > 2 and ins[2] is not None:
            operands.append(self.as_float(ins[2]))
        attrs = {"axis": IntegerAttr(axis, i64),
                 "epsilon": FloatAttr(float(a.get("epsilon", 1e-5)), f64)}
        self.set_out(node, self.float_result(cimq.LayerNormOp, operands, x.shape, x.batched, attrs))

    def h_batchnorm(self, node: onnx.NodeProto, ins: list[Entry | None]) -> None:
        """Inference BatchNormalization as ``x * a + b`` with per-channel constants."""
        self.check_single_output(node)
        a = _attrs(node)
        if a.get("training_mode", 0):
            raise self.fail("training_mode=1 is not supported")
        x = self.runtime(node, ins)
        params = []
        for k in range(1, 5):
            e = ins[k]
            if not isinstance(e, (Const, QConst)):
                raise self.fail(f"input '{node.input[k]}' must be a constant")
            params.append(np.asarray(e.arr if isinstance(e, Const) else e.real(), np.float32))
        gamma, beta, mean, var = params
        eps = np.float32(a.get("epsilon", 1e-5))
        inv_std = np.float32(1.0) / np.sqrt(var + eps)
        mul = (inv_std * gamma).astype(np.float32)
        add = (beta - mean * mul).astype(np.float32)
        shape = (-1,) + (1,) * (len(x.shape) - 2)
        origin = node.input[1]
        scaled = self.float_result(cimq.MulOp, [self.as_float(x),
                                                self.as_float(Const(mul.reshape(shape), origin))],
                                   x.shape, x.batched)
        self.set_out(node, self.float_result(cimq.AddOp, [
            scaled.ssa, self.as_float(Const(add.reshape(shape), node.input[2]))],
            x.shape, x.batched))

    def h_pool(self, node: onnx.NodeProto, ins: list[Entry | None]) -> None:
        self.check_single_output(node)
        x = self.runtime(node, ins)
        a = _attrs(node)
        kernel = list(a.get("kernel_shape", []))
        if len(kernel) != 2 or len(x.shape) != 4:
            raise self.fail("only 2-D pooling on NCHW tensors is supported")
        strides = list(a.get("strides", [1, 1]))
        dil = list(a.get("dilations", [1, 1]))
        pads = self.pads(a, x.shape[2:], kernel, strides, dil)
        attrs: dict[str, Attribute] = {
            "kernel": i64_array(kernel), "strides": i64_array(strides), "pads": i64_array(pads),
            "ceil_mode": IntegerAttr(int(a.get("ceil_mode", 0)), i64),
        }
        if node.op_type == "MaxPool":
            attrs["dilations"] = i64_array(dil)
            op_cls: type = cimq.MaxPoolOp
        else:
            if dil != [1, 1]:
                raise self.fail(f"dilations {dil} are not supported for AveragePool")
            attrs["count_include_pad"] = IntegerAttr(int(a.get("count_include_pad", 0)), i64)
            op_cls = cimq.AvgPoolOp
        out_shape = self.shape_of(node.output[0])
        out = self.float_result(op_cls, [self.as_float(x)], out_shape, x.batched, attrs)
        self.set_out(node, out)

    def h_global_avgpool(self, node: onnx.NodeProto, ins: list[Entry | None]) -> None:
        x = self.runtime(node, ins)
        if len(x.shape) != 4:
            raise self.fail("only NCHW inputs are supported")
        out_shape = (*x.shape[:2], 1, 1)
        self.set_out(node, self.float_result(cimq.GlobalAvgPoolOp, [self.as_float(x)], out_shape,
                                             x.batched))

    def h_reduce_mean(self, node: onnx.NodeProto, ins: list[Entry | None]) -> None:
        x = self.runtime(node, ins)
        a = _attrs(node)
        if len(ins) > 1 and ins[1] is not None:
            if not isinstance(ins[1], Const):
                raise self.fail("axes must be a constant")
            axes = [int(v) for v in ins[1].arr.reshape(-1)]
        else:
            axes = list(a.get("axes", []))
        rank = len(x.shape)
        if not axes:
            if a.get("noop_with_empty_axes", 0):
                self.set_out(node, x)
                return
            axes = list(range(rank))
        axes = sorted(self.norm_axis(v, rank) for v in axes)
        keep = int(a.get("keepdims", 1))
        out_shape = tuple(
            1 if i in axes else d for i, d in enumerate(x.shape) if keep or i not in axes)
        attrs = {"axes": i64_array(axes), "keepdims": IntegerAttr(keep, i64)}
        self.set_out(node, self.float_result(cimq.ReduceMeanOp, [self.as_float(x)], out_shape,
                                             x.batched and 0 not in axes, attrs))

    def layout(self, node: onnx.NodeProto, x: Tensor, op_cls: type, out_shape: Sequence[int],
               batched: bool, attrs: dict[str, Attribute]) -> None:
        """A layout op: on the integers when the input is a dequantized tensor, else on floats."""
        out_shape = tuple(int(d) for d in out_shape)
        if x.kind == "q":  # ONNX moves the integers themselves
            op = op_cls.create(operands=[self.as_quant(x)],
                               result_types=[self.ttype(out_shape, x.qtype, batched)],
                               attributes=attrs)
            self.set_out(node, Tensor("q", out_shape, batched, ssa=self.emit(op).results[0],
                                      qtype=x.qtype))
            return
        if x.kind == "dq":
            q = x.q
            assert q is not None and q.qtype is not None
            op = op_cls.create(operands=[self.as_quant(q)],
                               result_types=[self.ttype(out_shape, q.qtype, batched)],
                               attributes=attrs)
            nq = Tensor("q", out_shape, batched, ssa=self.emit(op).results[0], qtype=q.qtype)
            self.set_out(node, Tensor("dq", out_shape, batched, q=nq))
            return
        self.set_out(node, self.float_result(op_cls, [self.as_float(x)], out_shape, batched, attrs))

    def h_transpose(self, node: onnx.NodeProto, ins: list[Entry | None]) -> None:
        x = ins[0]
        rank = self.rank_of(x)
        perm = [int(p) for p in _attrs(node).get("perm", list(range(rank))[::-1])]
        if isinstance(x, QConst):
            self.set_out(node, _transpose_qconst(x, perm))
            return
        if isinstance(x, Const):
            self.fold(node, ins)
            return
        shape = tuple(x.shape[p] for p in perm)
        self.layout(node, x, cimq.TransposeOp, shape, x.batched and perm[0] == 0,
                    {"perm": i64_array(perm)})

    def h_reshape(self, node: onnx.NodeProto, ins: list[Entry | None]) -> None:
        x = self.runtime(node, ins)
        if not isinstance(ins[1], Const):
            raise self.fail(f"the target shape '{node.input[1]}' does not fold to a constant")
        target = [int(v) for v in ins[1].arr.reshape(-1)]
        allowzero = int(_attrs(node).get("allowzero", 0))
        if allowzero and 0 in target:
            raise self.fail("allowzero=1 with a zero in the shape is not supported")
        resolved = [x.shape[i] if v == 0 else v for i, v in enumerate(target)]
        try:
            out_shape = _dummy(x.shape).reshape(resolved).shape
        except ValueError:
            raise self.fail(f"cannot reshape {list(x.shape)} to {target}") from None
        batched = False
        if x.batched and target and target[0] in (0, self.infer_batch) and x.shape:
            target[0] = 0
            batched = True
        elif x.batched and target and target[0] == -1 and x.shape and \
                _numel(out_shape[1:]) == _numel(x.shape[1:]):
            batched = True  # -1 absorbs exactly the batch
        self.layout(node, x, cimq.ReshapeOp, out_shape, batched, {"shape": i64_array(target)})

    def h_squeeze(self, node: onnx.NodeProto, ins: list[Entry | None]) -> None:
        """Squeeze / Unsqueeze of a run-time tensor: a static ``cimq.reshape``."""
        x = self.runtime(node, ins)
        if len(ins) > 1 and ins[1] is not None:
            if not isinstance(ins[1], Const):
                raise self.fail("axes must be a constant")
            axes = [int(v) for v in ins[1].arr.reshape(-1)]
        else:
            axes = list(_attrs(node).get("axes", []))
        shape = list(x.shape)
        if node.op_type == "Unsqueeze":
            rank = len(shape) + len(axes)
            for ax in sorted(self.norm_axis(a, rank) for a in axes):
                shape.insert(ax, 1)
            keeps_batch = 0 not in [a % rank for a in axes]
        else:
            rank = len(shape)
            drop = {self.norm_axis(a, rank) for a in axes} if axes else {
                i for i, d in enumerate(shape) if d == 1}
            if any(shape[i] != 1 for i in drop):
                raise self.fail(f"cannot squeeze axes {sorted(drop)} of {shape}")
            shape = [d for i, d in enumerate(shape) if i not in drop]
            keeps_batch = 0 not in drop
        batched = x.batched and keeps_batch
        target = list(shape)
        if batched and target:
            target[0] = 0
        self.layout(node, x, cimq.ReshapeOp, shape, batched, {"shape": i64_array(target)})

    def h_flatten(self, node: onnx.NodeProto, ins: list[Entry | None]) -> None:
        x = self.runtime(node, ins)
        rank = len(x.shape)
        axis = int(_attrs(node).get("axis", 1))
        axis = axis % rank if axis != rank else rank
        out_shape = (int(np.prod(x.shape[:axis], dtype=np.int64)),
                     int(np.prod(x.shape[axis:], dtype=np.int64)))
        self.layout(node, x, cimq.FlattenOp, out_shape, x.batched and axis >= 1,
                    {"axis": IntegerAttr(axis, i64)})

    def h_gather(self, node: onnx.NodeProto, ins: list[Entry | None]) -> None:
        x = self.runtime(node, ins)
        idx = ins[1]
        if not isinstance(idx, Const):
            raise self.fail("only constant indices are supported")
        axis = self.norm_axis(int(_attrs(node).get("axis", 0)), len(x.shape))
        values = idx.arr.reshape(-1)
        if idx.arr.ndim > 1 or values.size != 1:
            raise self.fail(f"only a single constant index is supported, got {idx.arr.tolist()}")
        index = int(values[0])
        dim = x.shape[axis]
        if not -dim <= index < dim:
            raise self.fail(f"index {index} is out of range for dim {axis} of size {dim}")
        index %= dim
        if idx.arr.ndim == 1:  # keeps the axis: a slice
            shape = list(x.shape)
            shape[axis] = 1
            attrs = {"starts": i64_array([index]), "ends": i64_array([index + 1]),
                     "axes": i64_array([axis]), "steps": i64_array([1])}
            self.layout(node, x, cimq.SliceOp, shape, x.batched and axis != 0, attrs)
            return
        shape = [d for i, d in enumerate(x.shape) if i != axis]
        attrs = {"axis": IntegerAttr(axis, i64), "index": IntegerAttr(index, i64)}
        self.layout(node, x, cimq.GatherOp, shape, x.batched and axis != 0, attrs)

    def h_slice(self, node: onnx.NodeProto, ins: list[Entry | None]) -> None:
        x = self.runtime(node, ins)
        arrays = []
        for k in range(1, 5):
            e = ins[k] if len(ins) > k else None
            if e is not None and not isinstance(e, Const):
                raise self.fail(f"input '{node.input[k]}' must be a constant")
            arrays.append(None if e is None else [int(v) for v in e.arr.reshape(-1)])
        starts, ends, axes, steps = arrays
        rank = len(x.shape)
        axes = list(range(len(starts))) if axes is None else [self.norm_axis(v, rank) for v in axes]
        steps = [1] * len(starts) if steps is None else steps
        n_starts, n_ends, slices = [], [], [slice(None)] * rank
        for s, e, ax, st in zip(starts, ends, axes, steps):
            if st <= 0:
                raise self.fail(f"step {st} is not supported (positive steps only)")
            lo, hi, _ = slice(s, e, st).indices(x.shape[ax])
            hi = max(hi, lo)
            n_starts.append(lo)
            n_ends.append(hi)
            slices[ax] = slice(lo, hi, st)
        out_shape = _dummy(x.shape)[tuple(slices)].shape
        attrs = {"starts": i64_array(n_starts), "ends": i64_array(n_ends),
                 "axes": i64_array(axes), "steps": i64_array(steps)}
        self.layout(node, x, cimq.SliceOp, out_shape, x.batched and 0 not in axes, attrs)

    def h_concat(self, node: onnx.NodeProto, ins: list[Entry | None]) -> None:
        shapes = [_shape_of_entry(e) for e in ins if e is not None]
        axis = self.norm_axis(int(_attrs(node)["axis"]), len(shapes[0]))
        out_shape = self.shape_of(node.output[0], lambda: np.concatenate(
            [_dummy(sh) for sh in shapes], axis=axis).shape)
        batched = axis != 0 and any(isinstance(e, Tensor) and e.batched for e in ins)
        operands = [self.as_float(e) for e in ins if e is not None]
        self.set_out(node, self.float_result(cimq.ConcatOp, operands, out_shape, batched,
                                             {"axis": IntegerAttr(axis, i64)}))

    def h_identity(self, node: onnx.NodeProto, ins: list[Entry | None]) -> None:
        self.set_out(node, ins[0])

    def h_dropout(self, node: onnx.NodeProto, ins: list[Entry | None]) -> None:
        """Inference Dropout is the identity (training_mode must be absent or false)."""
        self.check_single_output(node)
        mode = ins[2] if len(ins) > 2 else None
        if mode is not None and (not isinstance(mode, Const) or bool(mode.arr.reshape(-1)[0])):
            raise self.fail("training_mode must be a constant false")
        self.set_out(node, ins[0])

    def h_shape(self, node: onnx.NodeProto, ins: list[Entry | None]) -> None:
        x = ins[0]
        shape = x.shape if isinstance(x, Tensor) else np.shape(
            x.arr if isinstance(x, Const) else x.ints)
        a = _attrs(node)
        start, end = a.get("start", 0), a.get("end", None)
        dims = list(shape)[start:end]
        self.set_out(node, Const(np.array(dims, dtype=np.int64)))

    def h_size(self, node: onnx.NodeProto, ins: list[Entry | None]) -> None:
        x = ins[0]
        shape = x.shape if isinstance(x, Tensor) else np.shape(
            x.arr if isinstance(x, Const) else x.ints)
        self.set_out(node, Const(np.array(int(np.prod(shape, dtype=np.int64)), dtype=np.int64)))


#: op type -> (handler, handles all-constant inputs itself)
_HANDLERS: dict[str, tuple[Callable[..., None], bool]] = {
    "QuantizeLinear": (_Importer.h_quantize, True),
    "DequantizeLinear": (_Importer.h_dequantize, True),
    "Clip": (_Importer.h_clip, True),
    "Conv": (_Importer.h_conv, False),
    "Gemm": (_Importer.h_gemm, False),
    "MatMul": (_Importer.h_matmul, False),
    "Add": (_Importer.h_binary, False),
    "Sub": (_Importer.h_binary, False),
    "Mul": (_Importer.h_binary, False),
    "Div": (_Importer.h_binary, False),
    "Relu": (_Importer.h_unary, False),
    "Erf": (_Importer.h_unary, False),
    "Sqrt": (_Importer.h_unary, False),
    "Gelu": (_Importer.h_unary, False),
    "Softmax": (_Importer.h_softmax, False),
    "LayerNormalization": (_Importer.h_layernorm, False),
    "BatchNormalization": (_Importer.h_batchnorm, False),
    "MaxPool": (_Importer.h_pool, False),
    "AveragePool": (_Importer.h_pool, False),
    "GlobalAveragePool": (_Importer.h_global_avgpool, False),
    "ReduceMean": (_Importer.h_reduce_mean, False),
    "Reshape": (_Importer.h_reshape, False),
    "Flatten": (_Importer.h_flatten, False),
    "Squeeze": (_Importer.h_squeeze, False),
    "Unsqueeze": (_Importer.h_squeeze, False),
    "Transpose": (_Importer.h_transpose, True),
    "Concat": (_Importer.h_concat, False),
    "Gather": (_Importer.h_gather, False),
    "Slice": (_Importer.h_slice, False),
    "Identity": (_Importer.h_identity, True),
    "Dropout": (_Importer.h_dropout, False),
    "Shape": (_Importer.h_shape, True),
    "Size": (_Importer.h_size, True),
}




# --------------------------------------------------------------------------------------------
# Small pure helpers
# --------------------------------------------------------------------------------------------


def _numel(dims: Sequence[int]) -> int:
    n = 1
    for d in dims:
        n *= int(d)
    return n


def _shape_of_entry(e: Entry | None) -> tuple[int, ...]:
    if isinstance(e, Const):
        return tuple(e.arr.shape)
    if isinstance(e, QConst):
        return tuple(e.ints.shape)
    assert e is not None
    return tuple(e.shape)


def _dummy(shape: Sequence[int]) -> np.ndarray:
    """A zero-memory array of ``shape`` for computing shapes with numpy indexing rules."""
    return np.broadcast_to(np.zeros((), dtype=np.int8), tuple(shape))


def _ssa_name(name: str) -> str:
    clean = re.sub(r"[^A-Za-z0-9_$.\-]", "_", name)
    if not clean or clean[0].isdigit() or clean[0] in "$.-":
        clean = "v" + clean
    return clean


def _np_bits(dtype: np.dtype) -> tuple[int, bool]:
    return np.dtype(dtype).itemsize * 8, np.dtype(dtype).kind == "i"


def _np_int(bits: int, signed: bool) -> Any:
    if bits <= 8:
        return np.int8 if signed else np.uint8
    if bits <= 16:
        return np.int16 if signed else np.uint16
    return np.int32 if signed else np.uint32


def _storage_from_enum(elem: int) -> tuple[int, bool] | str:
    if elem in _INT_TYPES:
        _, bits, signed = _INT_TYPES[elem]
        return bits, signed
    if elem in _INT4:
        return _INT4[elem]
    return onnx.TensorProto.DataType.Name(elem).lower()


def _storage_of(zp: Const) -> tuple[int, bool] | str:
    if zp.int_bits is not None:
        return zp.int_bits
    if np.issubdtype(zp.arr.dtype, np.integer):
        return _np_bits(zp.arr.dtype)
    return str(zp.arr.dtype)


def _xdsl_elem(dtype: np.dtype) -> Attribute:
    dtype = np.dtype(dtype)
    if dtype == np.float32:
        return f32
    if dtype == np.int8:
        return i8
    if dtype == np.uint8:
        return IntegerType(8, Signedness.UNSIGNED)
    if dtype == np.int32:
        return i32
    if dtype == np.int64:
        return i64
    raise UnsupportedModelError(f"constants of type {dtype} are not supported")


def _init_const(init: onnx.TensorProto) -> Const:
    if init.data_type in _INT4:
        arr = numpy_helper.to_array(init)
        bits, signed = _INT4[init.data_type]
        return Const(np.asarray(arr, dtype=np.int8 if signed else np.uint8), origin=init.name,
                     int_bits=(bits, signed))
    return Const(numpy_helper.to_array(init), origin=init.name)


def _constant_value(node: onnx.NodeProto) -> np.ndarray:
    attr = node.attribute[0]
    value = onnx.helper.get_attribute_value(attr)
    if attr.name == "value":
        return numpy_helper.to_array(value)
    if attr.name == "value_float":
        return np.array(value, dtype=np.float32)
    if attr.name == "value_floats":
        return np.array(value, dtype=np.float32)
    if attr.name == "value_int":
        return np.array(value, dtype=np.int64)
    if attr.name == "value_ints":
        return np.array(value, dtype=np.int64)
    raise ValueError(f"Constant with attribute {attr.name} is not supported")


def _reference_eval(node: onnx.NodeProto, arrays: list[np.ndarray | None], opset: int) -> list:
    from onnx.reference import ReferenceEvaluator

    feeds = {name: arr for name, arr in zip(node.input, arrays) if name}
    return list(ReferenceEvaluator(node, opsets={"": opset}).run(None, feeds))


def _quantize_array(arr: np.ndarray, scale: np.ndarray, zp: np.ndarray, axis: int, bits: int,
                    signed: bool) -> np.ndarray:
    """QuantizeLinear on a constant: round half to even, add zero point, saturate."""
    x = np.asarray(arr, dtype=np.float32)
    s = np.asarray(scale, dtype=np.float32)
    z = np.asarray(zp, dtype=np.int64)
    if s.ndim == 1 and s.size > 1:
        shape = [1] * x.ndim
        shape[axis % x.ndim] = -1
        s, z = s.reshape(shape), z.reshape(shape) if z.ndim == 1 else z
    q = np.rint(x / s).astype(np.int64) + z
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    return np.clip(q, lo, hi).astype(_np_int(bits, signed))


def _transpose_qconst(w: QConst, perm: list[int]) -> QConst:
    ints = np.ascontiguousarray(np.transpose(w.ints, perm))
    q = w.qtype
    if q.per_channel:
        q = q.with_scales(q.scale_values, axis=perm.index(q.channel_axis))
    return QConst(ints, q, w.origin)


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
            raise UnsupportedModelError(f"node '{_node_name(n, idx)}' is part of a cycle")
        pending = rest
    return order


def _live_nodes(graph: onnx.GraphProto) -> tuple[list[tuple[int, onnx.NodeProto]], set[str]]:
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


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------


def import_onnx(path: str | Path, *, batch: int | None = None) -> ImportResult:
    """Import an ONNX QDQ/QCDQ file as a verified ``cimq`` module.

    ``batch`` fixes the batch dimension of the module's types (default: the file's, ``?`` when
    the file's batch is symbolic). Raises :class:`~cimc.errors.CimcError` for every problem of
    the file (missing, not ONNX, not quantized, unsupported op, bit width, zero point, shape).
    """
    p = Path(path)
    model = _load(p)
    importer = _Importer(model, p, batch)
    result = importer.run()
    if importer.batch_lost is None or importer.type_batch == importer.infer_batch:
        return result
    # The batch leaves dim 0 somewhere (a Transpose / Reshape moves it): the module can only be
    # typed at one batch size, the one the shapes were folded with.
    if importer.symbolic_batch and batch is None:
        importer = _Importer(model, p, None)
        importer.force_static = True
        result = importer.run()
        result.batch_polymorphic = False
        return result
    raise UnsupportedModelError(
        f"node '{importer.batch_lost}': the batch dimension does not stay on axis 0 here, so the "
        f"model exported with batch {importer.infer_batch} cannot be imported with batch "
        f"{batch}; export it with that batch size (or a symbolic batch)"
    )
