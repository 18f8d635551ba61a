"""Issue 11 item 2: the host fallback.

A Conv / Gemm / MatMul whose input or weight is not quantized (or whose weight has more bits than
a crossbar takes) runs on the host in float: it is marked in the IR (``cimq.host_conv`` /
``cimq.host_matmul`` with the node, the op and the reason), equals onnxruntime, appears in
``cimc report`` (table and JSON) as a host layer with zero crossbar cost and one warning line,
and ``--strict`` refuses it with one line (lower, run, report). The rest of the model still goes
to crossbars and computes the same integers at every level.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnx_node_cases as nc
from cimc.analysis import host_layers, host_warnings
from cimc.dialects import cimq
from cimc.errors import UnsupportedModelError
from cimc.frontend import import_onnx
from cli_helpers import assert_one_line_error

BIN = Path(sys.executable).parent
RNG = np.random.default_rng(0)


def _t(name: str, arr, dtype=np.float32) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(arr, dtype=dtype), name)


def _n(op: str, ins: list[str], outs: list[str], name: str, **kw) -> onnx.NodeProto:
    return helper.make_node(op, ins, outs, name=name, **kw)


def _qdq(x: str, out: str, scale: float, tag: str) -> tuple[list, list]:
    """``x -> Q (int8) -> DQ -> out``."""
    inits = [_t(f"{tag}_s", scale), _t(f"{tag}_z", 0, np.int8)]
    return inits, [_n("QuantizeLinear", [x, f"{tag}_s", f"{tag}_z"], [f"{tag}_q"], f"{tag}_q"),
                   _n("DequantizeLinear", [f"{tag}_q", f"{tag}_s", f"{tag}_z"], [out], f"{tag}_dq")]


def _qweight(name: str, shape, bits_dtype=np.int8, lo: int = -7, hi: int = 7) -> tuple[list, list]:
    w = RNG.integers(lo, hi + 1, size=shape)
    inits = [_t(f"{name}_i", w, bits_dtype), _t(f"{name}_s", 0.02), _t(f"{name}_z", 0, bits_dtype)]
    return inits, [_n("DequantizeLinear", [f"{name}_i", f"{name}_s", f"{name}_z"], [name], f"{name}_dq")]


def _model(nodes: list, inits: list, x_shape, out: str = "yq") -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
                              [helper.make_tensor_value_info(out, TensorProto.INT8, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])  # int16 DQ: 21
    model.ir_version = 9
    return model


def first_layer_float(tmp_path: Path) -> Path:
    """The first conv takes the float image (as resnet18_4w4a / mobilenet do); the second conv
    and the classifier are quantized: ``x -> Conv(float x, DQ w) -> Relu -> QDQ -> Conv ->
    Relu -> QDQ -> Flatten -> Gemm -> Q``."""
    w1i, w1n = _qweight("w1", (4, 3, 3, 3))
    w2i, w2n = _qweight("w2", (6, 4, 3, 3))
    w3i, w3n = _qweight("w3", (10, 6 * 6 * 6))
    a1i, a1n = _qdq("r1", "a1", 0.05, "a1")
    a2i, a2n = _qdq("r2", "a2", 0.05, "a2")
    nodes = [*w1n, *w2n, *w3n,
             _n("Conv", ["x", "w1", "b1"], ["c1"], "conv1", pads=[1, 1, 1, 1]),
             _n("Relu", ["c1"], ["r1"], "relu1"), *a1n,
             _n("Conv", ["a1", "w2"], ["c2"], "conv2", pads=[1, 1, 1, 1]),
             _n("Relu", ["c2"], ["r2"], "relu2"), *a2n,
             _n("Flatten", ["a2"], ["f"], "flat"),
             _n("Gemm", ["f", "w3"], ["y"], "fc", transB=1),
             _n("QuantizeLinear", ["y", "ys", "yz"], ["yq"], "qy")]
    inits = [*w1i, *w2i, *w3i, *a1i, *a2i, _t("b1", RNG.standard_normal(4) * 0.1),
             _t("ys", 0.1), _t("yz", 0, np.int8)]
    path = tmp_path / "first_float.onnx"
    onnx.save(_model(nodes, inits, [1, 3, 6, 6]), str(path))
    return path


def _compare_with_ort(path: Path, x: np.ndarray) -> None:
    ours = nc.cimc_run(path, {"x": x})
    theirs = nc.ort_run(onnx.load(str(path)), {"x": x})
    for a, b in zip(ours, theirs):
        assert a.shape == b.shape
        assert np.abs(a.astype(np.int64) - b.astype(np.int64)).max(initial=0) <= 1


def test_float_first_layer_runs_on_the_host(tmp_path: Path) -> None:
    path = first_layer_float(tmp_path)
    result = import_onnx(path)
    (host,) = [op for op in result.module.walk() if isinstance(op, cimq.HostConvOp)]
    assert (host.layer.data, host.op.data, host.reason.data) == ("conv1", "Conv", "input 'x' is not quantized")
    assert [layer.name for layer in result.layers] == ["conv2", "fc"]  # the policy: crossbar layers only
    assert [h.line() for h in host_layers(result.module)] == ["node 'conv1' (op Conv): input 'x' is not quantized"]
    x = RNG.standard_normal((1, 3, 6, 6)).astype(np.float32)
    _compare_with_ort(path, x)


def test_host_layer_at_every_level(tmp_path: Path) -> None:
    """The rest goes to crossbars: xbar bit-serial and fast equal cimq, integer for integer."""
    from cimc.exec import run_at_level
    from cimc.target.hw import Hardware

    module = import_onnx(first_layer_float(tmp_path)).module
    x = RNG.standard_normal((2, 3, 6, 6)).astype(np.float32)
    ref = run_at_level(module, "cimq", [x]).outputs
    hw = Hardware(rows=16, cols=16)
    for fast in (True, False):
        res = run_at_level(module, "xbar", [x], hw=hw, fast=fast)
        np.testing.assert_array_equal(res.outputs[0], ref[0])
        assert [r["name"] for r in res.report["layers"]] == ["conv2", "fc"]
        assert res.report["host_layers"] == [{"name": "conv1", "op": "Conv", "reason": "input 'x' is not quantized"}]


def test_report_lists_the_host_layer(tmp_path: Path) -> None:
    from cimc.report import report_table, xbar_report

    module = import_onnx(first_layer_float(tmp_path)).module
    rep = xbar_report(module)
    host = rep["layers"][0]
    assert host["kind"] == "host" and host["name"] == "conv1" and host["reason"] == "input 'x' is not quantized"
    assert host["writes"] == host["executes"] == 0 and host["latency_us"] == 0.0
    assert [r["kind"] for r in rep["layers"][1:]] == ["conv", "linear"]
    assert rep["total"]["latency_us"] == sum(r["latency_us"] for r in rep["layers"][1:])
    assert rep["warnings"] == ["warning: node 'conv1' (op Conv): input 'x' is not quantized; it runs on the "
                               "host, not on crossbars"]
    assert [s["name"] for s in rep["host_layers"]] == ["conv1"]
    from rich.console import Console

    console = Console(width=200, record=True)
    console.print(report_table(rep))
    assert "Conv on the host: input 'x' is not quantized" in console.export_text()
    with pytest.raises(UnsupportedModelError) as info:
        xbar_report(module, strict=True)
    assert str(info.value) == ("node 'conv1' (op Conv): input 'x' is not quantized; it would run on the host, "
                               "not on crossbars (--strict)")


def _cimc(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "cimc"), *args], capture_output=True, text=True, timeout=300)


def test_cli_warns_and_strict_refuses(tmp_path: Path) -> None:
    """`cimc report` (table + JSON), `lower` and `run`: one warning line; `--strict`: one error
    line naming node, op and reason, non-zero exit, nothing written."""
    path = first_layer_float(tmp_path)
    out = tmp_path / "r.json"
    proc = _cimc("report", str(path), "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    warn = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
    assert warn == ["warning: node 'conv1' (op Conv): input 'x' is not quantized; it runs on the host, not on "
                    "crossbars"]
    assert "Conv on the host" in proc.stdout
    data = json.loads(out.read_text())
    assert data["layers"][0]["kind"] == "host" and data["layers"][0]["latency_us"] == 0.0
    out.unlink()
    for cmd in (["report", str(path), "--json", str(out)], ["lower", str(path), "--to", "xbar"],
                ["run", str(path), "--level", "xbar", "--no-progress"]):
        proc = _cimc(*cmd, "--strict")
        assert_one_line_error(proc, "node 'conv1' (op Conv)", "input 'x' is not quantized", "--strict")
    assert not out.exists()
    proc = _cimc("run", str(path), "--level", "cimq", "--no-progress")
    assert proc.returncode == 0 and "warning: node 'conv1'" in proc.stderr


# --------------------------------------------------------------------------------------------
# The other kinds: a float weight, a weight of more than 8 bits, Gemm's attributes, MatMul of
# a quantized and a float activation
# --------------------------------------------------------------------------------------------


def _body_model(body: list, inits: list, x_shape) -> onnx.ModelProto:
    """``x -> QDQ ("a") -> body -> "y" -> Q (int8)``."""
    ai, an = _qdq("x", "a", 0.05, "ax")
    return _model([*an, *body, _n("QuantizeLinear", ["y", "ys", "yz"], ["yq"], "qy")],
                  [*ai, *inits, _t("ys", 0.1), _t("yz", 0, np.int8)], x_shape)


CASES = {
    "float_weight": ([_n("Conv", ["a", "wf"], ["y"], "conv", pads=[1, 1, 1, 1])],
                     [_t("wf", RNG.standard_normal((3, 2, 3, 3)) * 0.2)], [1, 2, 5, 5],
                     "node 'conv' (op Conv): weight 'wf' is not quantized"),
    "wide_weight": ([*_qweight("w16", (4, 5), np.int16, -300, 300)[1], _n("MatMul", ["a", "w16"], ["y"], "mm")],
                    _qweight("w16", (4, 5), np.int16, -300, 300)[0], [2, 3, 4],
                    "node 'mm' (op MatMul): weight 'w16' has 16 bits (crossbars take 1 to 8)"),
    "gemm_float": ([_n("Gemm", ["a", "wg", "c"], ["y"], "gemm", transA=1, transB=1, alpha=0.5, beta=2.0)],
                   [_t("wg", RNG.standard_normal((5, 4))), _t("c", RNG.standard_normal(5))], [4, 3],
                   "node 'gemm' (op Gemm): weight 'wg' is not quantized"),
    "matmul_float_rhs": ([_n("Relu", ["x"], ["fx"], "relu"), _n("Transpose", ["fx"], ["ft"], "tr", perm=[0, 2, 1]),
                          _n("MatMul", ["a", "ft"], ["y"], "mm")], [], [2, 3, 3],
                         "node 'mm' (op MatMul): input 'ft' is not quantized"),
}


@pytest.mark.parametrize("kind", sorted(CASES))
def test_host_kinds(kind: str, tmp_path: Path) -> None:
    body, inits, shape, line = CASES[kind]
    path = tmp_path / "m.onnx"
    onnx.save(_body_model(body, inits, shape), str(path))
    module = import_onnx(path).module
    (host,) = host_layers(module)
    assert host.line() == line
    _compare_with_ort(path, RNG.standard_normal(shape).astype(np.float32))
    with pytest.raises(UnsupportedModelError) as info:
        host_warnings(module, strict=True)
    assert str(info.value).startswith(line) and "\n" not in str(info.value)


#: Multiply-adds per output element of each case's host product (its reduction length).
REDUCTION = {"float_weight": 2 * 3 * 3, "wide_weight": 4, "gemm_float": 4, "matmul_float_rhs": 3}


@pytest.mark.parametrize("kind", sorted(CASES))
def test_host_product_macs(kind: str, tmp_path: Path) -> None:
    """A product on the host is priced by its multiply-adds (outputs x reduction length), read
    off the program by ``cimc report`` and counted in a run, not by its outputs alone."""
    from cimc.analysis import host_macs
    from cimc.exec import lowered_copy
    from cimc.exec.xbar_exec import run_xbar
    from cimc.target.hw import Hardware

    body, inits, shape, _ = CASES[kind]
    path = tmp_path / "m.onnx"
    onnx.save(_body_model(body, inits, shape), str(path))
    module = import_onnx(path).module
    hw = Hardware(rows=16, cols=16)
    prog = lowered_copy(module, "xbar", hw=hw)
    res = run_xbar(prog, [RNG.standard_normal(shape).astype(np.float32)], hw=hw)
    out = res.outputs[0]
    assert res.report["host"]["host_macs"] == out.size * REDUCTION[kind] > 0
    assert host_macs(prog) == res.report["host"]["host_macs"]  # the input has the file's (typed) shape
