"""The ONNX project's backend node tests, wrapped in Q/DQ so that cimc can import them.

``cases()`` yields every single-node test of ``onnx.backend.test.loader.load_model_tests(kind=
"node")`` whose op cimc's importer has a handler for. ``wrap(case)`` rewrites it into a QDQ model:

* data inputs (float graph inputs) get ``QuantizeLinear -> DequantizeLinear`` (int8, symmetric,
  scale ``max|x| / 127`` of the test's own input);
* crossbar weights (Conv ``W``, Gemm ``B``, the right operand of MatMul) become int8
  initializers (the test's values quantized the same way) behind a ``DequantizeLinear``;
* every other input (shapes, axes, indices, pads, biases, norm parameters, Clip bounds, ratios,
  training flags) becomes an initializer holding the test's value;
* every float output gets a ``QuantizeLinear`` (int8, scale ``max|y| / 127`` of the test's
  expected output): the compared result is that integer tensor.

``run_case`` runs the wrapped model in onnxruntime (graph optimizations off) and through cimc
(:func:`cimc.frontend.import_onnx` + the cimq executor) and classifies it: ``equal``, ``lsb`` (the
integers differ by at most one), ``refused`` (cimc raised a one-line :class:`CimcError`, with its
reason), ``reference`` (onnxruntime itself cannot run the wrapped model) or ``mismatch``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

#: Inputs that hold crossbar weights (quantized int8 constants), by op.
WEIGHTS = {"Conv": {1}, "Gemm": {1}, "MatMul": {1}}
#: Inputs that carry data (quantized graph inputs) besides input 0, by op.
DATA = {"Add": {1}, "Sub": {1}, "Mul": {1}, "Div": {1}, "Concat": {1, 2, 3, 4}}
#: Ops that are quantizers themselves: not wrapped.
QUANTIZERS = {"QuantizeLinear", "DequantizeLinear"}


@dataclass
class Outcome:
    name: str
    op: str
    kind: str  # equal | lsb | refused | reference | mismatch
    detail: str = ""


def cases(ops: set[str]) -> list:
    """Single-node backend tests whose op is in ``ops``."""
    import warnings

    from onnx.backend.test.loader import load_model_tests

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tests = load_model_tests(kind="node")
    return [t for t in tests if len(t.model.graph.node) == 1
            and t.model.graph.node[0].op_type in ops and t.data_sets]


def _scale(arr: np.ndarray) -> float:
    m = float(np.nanmax(np.abs(arr))) if arr.size else 0.0
    return m / 127.0 if m > 0 and np.isfinite(m) else 1.0


def _q(arr: np.ndarray, scale: float) -> np.ndarray:
    return np.clip(np.rint(arr.astype(np.float32) / np.float32(scale)), -128, 127).astype(np.int8)


def _array(x) -> np.ndarray:
    return numpy_helper.to_array(x) if isinstance(x, onnx.TensorProto) else np.asarray(x)


def _is_float(vi: onnx.ValueInfoProto) -> bool:
    return vi.type.HasField("tensor_type") and vi.type.tensor_type.elem_type == TensorProto.FLOAT


def wrap(case) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """The Q/DQ-wrapped model and the feeds of its graph inputs."""
    model = onnx.ModelProto()
    model.CopyFrom(case.model)
    graph = model.graph
    node = graph.node[0]
    inputs, expected = case.data_sets[0]
    inputs = [_array(x) for x in inputs]
    expected = [_array(y) for y in expected]
    op = node.op_type
    _redeclare(model)
    feeds: dict[str, np.ndarray] = {}
    new_inputs, inits, nodes = [], [], []
    for k, (vi, x) in enumerate(zip(list(graph.input), inputs)):
        if k == 0 or k in DATA.get(op, set()):
            if _is_float(vi) and op not in QUANTIZERS:
                s = _scale(x)
                inits.append(numpy_helper.from_array(np.array(s, np.float32), f"{vi.name}_s"))
                inits.append(numpy_helper.from_array(np.array(0, np.int8), f"{vi.name}_z"))
                nodes.append(helper.make_node("QuantizeLinear", [vi.name, f"{vi.name}_s",
                                              f"{vi.name}_z"], [f"{vi.name}_q"]))
                nodes.append(helper.make_node("DequantizeLinear", [f"{vi.name}_q", f"{vi.name}_s",
                                              f"{vi.name}_z"], [f"{vi.name}_dq"]))
                _rename_input(node, vi.name, f"{vi.name}_dq")
            new_inputs.append(vi)
            feeds[vi.name] = x
        elif k in WEIGHTS.get(op, set()) and x.dtype == np.float32:
            s = _scale(x)
            inits += [numpy_helper.from_array(_q(x, s), f"{vi.name}_int"),
                      numpy_helper.from_array(np.array(s, np.float32), f"{vi.name}_s")]
            nodes.append(helper.make_node("DequantizeLinear", [f"{vi.name}_int", f"{vi.name}_s"],
                                          [f"{vi.name}_dq"]))
            _rename_input(node, vi.name, f"{vi.name}_dq")
        else:
            inits.append(numpy_helper.from_array(x, vi.name))
    outs = []
    for vi, y in zip(list(graph.output), expected):
        if not _is_float(vi) or op in QUANTIZERS:
            outs.append(vi)
            continue
        s = _scale(np.asarray(y))
        inits.append(numpy_helper.from_array(np.array(s, np.float32), f"{vi.name}_ys"))
        inits.append(numpy_helper.from_array(np.array(0, np.int8), f"{vi.name}_yz"))
        nodes.append(helper.make_node("QuantizeLinear", [vi.name, f"{vi.name}_ys",
                                      f"{vi.name}_yz"], [f"{vi.name}_yq"]))
        outs.append(helper.make_tensor_value_info(f"{vi.name}_yq", TensorProto.INT8, None))
    del graph.input[:]
    graph.input.extend(new_inputs)
    graph.initializer.extend(inits)
    graph.node.extend(nodes)
    del graph.output[:]
    graph.output.extend(outs)
    sorted_nodes = [n for n in graph.node if n.op_type == "DequantizeLinear" or
                    (n.op_type == "QuantizeLinear" and not n.output[0].endswith("_yq"))]
    rest = [n for n in graph.node if n not in sorted_nodes]
    del graph.node[:]
    graph.node.extend([*sorted_nodes, *rest])
    return model, feeds


def _signature(op: str, version: int) -> tuple:
    s = onnx.defs.get_schema(op, version)
    return (sorted((a.name, a.type) for a in s.attributes.values()),
            [(i.name, i.option) for i in s.inputs], [(o.name, o.option) for o in s.outputs])


def _redeclare(model: onnx.ModelProto) -> None:
    """Some tests are written at opsets newer than onnxruntime 1.32 runs (26..28) although the
    op's attributes and inputs have not changed since an older opset (only its element types
    have): such a test is declared at the oldest opset with the same signature, down to 21."""
    std = [o for o in model.opset_import if o.domain in ("", "ai.onnx")]
    if not std or std[0].version <= 25:
        return
    op = model.graph.node[0].op_type
    sig = _signature(op, std[0].version)
    version = std[0].version
    while version > 21 and _signature(op, version - 1) == sig:
        version -= 1
    if version <= 25:
        std[0].version = version


def _rename_input(node: onnx.NodeProto, old: str, new: str) -> None:
    for i, name in enumerate(node.input):
        if name == old:
            node.input[i] = new


def ort_run(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.log_severity_level = 4
    sess = ort.InferenceSession(model.SerializeToString(), so,
                                providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def cimc_run(path: Path, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    from cimc.exec.cimq_exec import run_cimq
    from cimc.frontend import import_onnx

    result = import_onnx(path)
    xs = [feeds[i.name] for i in result.inputs]
    outs, _ = run_cimq(result.module, xs)
    return outs


def _compare(ours: list[np.ndarray], theirs: list[np.ndarray]) -> tuple[str, str]:
    worst = 0
    for a, b in zip(ours, theirs):
        a, b = np.asarray(a), np.asarray(b)
        if a.shape != b.shape:
            return "mismatch", f"shape {list(a.shape)} vs onnxruntime {list(b.shape)}"
        if b.dtype.kind in "iub":
            d = np.abs(a.astype(np.int64) - b.astype(np.int64))
            worst = max(worst, int(d.max(initial=0)))
        elif not np.allclose(a.astype(np.float64), b.astype(np.float64), rtol=1e-6,
                             atol=1e-6, equal_nan=True):
            return "mismatch", "float outputs differ"
    if worst == 0:
        return "equal", ""
    if worst == 1:
        return "lsb", ""
    return "mismatch", f"max |diff| {worst} LSB"


def run_case(case, tmp: Path) -> Outcome:
    from cimc.errors import CimcError

    op = case.model.graph.node[0].op_type
    model, feeds = wrap(case)
    path = tmp / f"{case.name}.onnx"
    onnx.save(model, str(path))
    try:
        ours = cimc_run(path, feeds)
    except CimcError as exc:
        return Outcome(case.name, op, "refused", str(exc).replace(str(path), "FILE"))
    try:
        theirs = ort_run(model, feeds)
    except Exception as exc:  # noqa: BLE001 (any onnxruntime failure: the reference is absent)
        return Outcome(case.name, op, "reference", str(exc).splitlines()[0][:120])
    kind, detail = _compare(ours, theirs)
    return Outcome(case.name, op, kind, detail)


def reason_of(message: str, patterns: dict[str, str]) -> str | None:
    """The name of the first documented refusal reason whose pattern matches ``message``."""
    for name, pattern in patterns.items():
        if re.search(pattern, message):
            return name
    return None
