"""onnxruntime as the outside reference for cimc's integer results (test helper).

``quantized_tensors(path, x)`` runs the ONNX file in onnxruntime with graph optimizations OFF
(with them on, ORT fuses QDQ into integer kernels that round differently) and returns every
integer tensor a QuantizeLinear or Clip produces, by ONNX tensor name. ``compare(...)`` matches
them against the values cimc's executor recorded for ops that carry the same ``src`` name, and
counts the 1-LSB differences that come from rounding ties in ORT's float accumulation.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
import onnxruntime as ort


def quantized_tensors(path, inputs: list[np.ndarray]) -> tuple[dict[str, np.ndarray], list[np.ndarray]]:
    model = onnx.load(str(path))
    graph = model.graph
    existing = {o.name for o in graph.output}
    names = []
    for node in graph.node:
        if node.op_type in ("QuantizeLinear", "Clip"):
            for out in node.output:
                if out and out not in existing:
                    names.append(out)
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {vi.name: vi.type for vi in list(inferred.graph.value_info) + list(inferred.graph.output)}
    elem = _integer_types(graph)
    for name in names:
        vi = onnx.ValueInfoProto()
        vi.name = name
        if name in types and types[name].tensor_type.elem_type:
            vi.type.CopyFrom(types[name])
        else:
            vi.type.tensor_type.elem_type = elem.get(name, onnx.TensorProto.UINT8)
        graph.output.append(vi)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    feed = {i.name: x for i, x in zip(sess.get_inputs(), inputs)}
    outs = sess.run(None, feed)
    out_names = [o.name for o in sess.get_outputs()]
    values = dict(zip(out_names, outs))
    n_final = len(graph.output) - len(names)
    return {n: values[n] for n in names}, outs[:n_final]


def _integer_types(graph) -> dict[str, int]:
    """Element type of every QuantizeLinear / Clip output (from the zero point's type) for files
    whose shape inference leaves them untyped."""
    init_types = {i.name: i.data_type for i in graph.initializer}
    out: dict[str, int] = {}
    for node in graph.node:
        if node.op_type == "QuantizeLinear":
            zp = node.input[2] if len(node.input) > 2 else ""
            out[node.output[0]] = init_types.get(zp, onnx.TensorProto.UINT8)
        elif node.op_type == "Clip" and node.input[0] in out:
            out[node.output[0]] = out[node.input[0]]
    return out


@dataclass
class Comparison:
    tensors: int = 0
    elements: int = 0
    ties: int = 0
    max_diff: int = 0
    unmatched: list[str] = field(default_factory=list)

    def line(self) -> str:
        return (
            f"{self.tensors} quantized tensors, {self.elements} integers, {self.ties} rounding "
            f"ties (1 LSB), max |diff| {self.max_diff}"
        )


def compare(recorded: dict[str, np.ndarray], reference: dict[str, np.ndarray]) -> Comparison:
    """Compare cimc's integers (by src name) with ORT's; counts ties, tracks max difference."""
    c = Comparison()
    for name, ref in reference.items():
        if name not in recorded:
            c.unmatched.append(name)
            continue
        ours = np.asarray(recorded[name]).astype(np.int64)
        theirs = np.asarray(ref).astype(np.int64)
        assert ours.shape == theirs.shape, (name, ours.shape, theirs.shape)
        diff = np.abs(ours - theirs)
        c.tensors += 1
        c.elements += diff.size
        c.ties += int((diff == 1).sum())
        c.max_diff = max(c.max_diff, int(diff.max(initial=0)))
    return c


def forced_comparison(module, inputs, reference: dict[str, np.ndarray], *, tol: float = 1e-3):
    """Run cimc with every quantized tensor checked against ORT's and then replaced by it.

    Replacing isolates each op: a tie flipped upstream cannot spread into later comparisons.
    Returns the :class:`Comparison` and the list of differences that are *not* at a rounding
    tie (the exact pre-rounding value farther than ``tol`` from k + 0.5), which must be empty.
    """
    from xdsl.interpreter import impl, register_impls

    from cimc import semantics as sem
    from cimc.dialects import cimq
    from cimc.exec.cimq_exec import CimqFunctions, _qtype, run_cimq

    c = Comparison()
    not_ties: list[tuple[str, float]] = []

    def check(op, pre_round: np.ndarray, ours: np.ndarray) -> np.ndarray:
        name = op.attributes["src"].data if "src" in op.attributes else None
        if name is None or name not in reference:
            return ours
        theirs = np.asarray(reference[name]).astype(np.int64)
        diff = np.abs(ours - theirs)
        c.tensors += 1
        c.elements += diff.size
        c.ties += int((diff == 1).sum())
        c.max_diff = max(c.max_diff, int(diff.max(initial=0)))
        if diff.any():
            t = np.broadcast_to(pre_round, diff.shape)[diff > 0]
            dist = np.abs(np.abs(t - np.floor(t)) - 0.5)
            for v, d in zip(t, dist):
                if d > tol:
                    not_ties.append((name, float(v)))
        return theirs

    def pre(y: np.ndarray, qt) -> np.ndarray:
        scale = sem.scale_array(qt, np.ndim(y)).astype(np.float32)
        return np.asarray(y, np.float32) / scale

    @register_impls
    class Forced(CimqFunctions):
        @impl(cimq.QuantizeOp)
        def run_quantize(self, interp, op, args):
            qt = _qtype(op.output.type)
            return (check(op, pre(args[0], qt), sem.quantize(args[0], qt)),)

        @impl(cimq.RequantizeOp)
        def run_requantize(self, interp, op, args):
            (ours,) = super().run_requantize(interp, op, args)
            y = sem.dequantize(args[0], _qtype(op.input.type))
            return (check(op, pre(y, _qtype(op.output.type)), ours),)

    def other_named(op) -> bool:  # integer ops that reuse a quantizer's integers (DQ -> op -> Q)
        return "src" in op.attributes and not isinstance(op, (cimq.QuantizeOp, cimq.RequantizeOp))

    _, named = run_cimq(module, inputs, functions=Forced(), record=other_named)
    for op, ours in named.items():
        name = op.attributes["src"].data
        if name not in reference:
            continue
        diff = np.abs(np.asarray(ours).astype(np.int64) - np.asarray(reference[name]).astype(np.int64))
        c.tensors += 1
        c.elements += diff.size
        c.max_diff = max(c.max_diff, int(diff.max(initial=0)))
        if diff.any():  # computed from forced integers by value-preserving ops: exact, no ties
            not_ties.append((name, float("nan")))
    return c, not_ties
