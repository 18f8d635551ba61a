"""The ``cimc`` command line: outputs, and one-line errors with no traceback or partial files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cli_helpers import assert_one_line_error

BIN = Path(sys.executable).parent
SMALL = """
func.func @main(%x: tensor<?x4xf32>) -> tensor<?x2xf32> {
  %q = cimq.quantize %x : (tensor<?x4xf32>) -> tensor<?x4x!cimq.q<u4:0.5>>
  %w = cimq.const dense<[[1, -1], [2, 3], [0, 7], [-7, 1]]> : tensor<4x2xi8> : tensor<4x2x!cimq.q<s4n:0.25>>
  %a = cimq.matmul %q, %w {layer = "fc"} : (tensor<?x4x!cimq.q<u4:0.5>>, tensor<4x2x!cimq.q<s4n:0.25>>) -> tensor<?x2x!cimq.q<s32:0.125>>
  %f = cimq.dequantize %a : (tensor<?x2x!cimq.q<s32:0.125>>) -> tensor<?x2xf32>
  %r = cimq.relu %f : (tensor<?x2xf32>) -> tensor<?x2xf32>
  %o = cimq.quantize %r : (tensor<?x2xf32>) -> tensor<?x2x!cimq.q<u8:0.1>>
  %d = cimq.dequantize %o : (tensor<?x2x!cimq.q<u8:0.1>>) -> tensor<?x2xf32>
  func.return %d : tensor<?x2xf32>
}
"""


def cimc(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "cimc"), *args], capture_output=True, text=True, cwd=cwd, timeout=300
    )


@pytest.fixture()
def small_mlir(tmp_path: Path) -> Path:
    p = tmp_path / "small.mlir"
    p.write_text(SMALL)
    return p


def test_run_small_module_matches_reference(small_mlir: Path, tmp_path: Path) -> None:
    x = np.array([[1.0, 2.0, 3.0, 0.5], [4.0, 0.0, 1.0, 2.0]], np.float32)
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "y.npy"
    proc = cimc("run", str(small_mlir), "--level", "cimq", "--input", str(tmp_path / "x.npy"), "--output", str(out))
    assert proc.returncode == 0, proc.stderr
    q = np.clip(np.rint(x / np.float32(0.5)), 0, 15).astype(np.int64)
    w = np.array([[1, -1], [2, 3], [0, 7], [-7, 1]])
    y = np.maximum((q @ w).astype(np.float64) * 0.125, 0).astype(np.float32)
    expected = np.clip(np.rint(y / np.float32(0.1)), 0, 255).astype(np.float32) * np.float32(0.1)
    assert np.array_equal(np.load(out), expected)


def test_run_random_batched_input(small_mlir: Path) -> None:
    proc = cimc("run", str(small_mlir), "--batch", "3", "--seed", "7")
    assert proc.returncode == 0, proc.stderr
    assert "[3, 2]" in proc.stdout


def test_lower_roundtrip_through_file(small_mlir: Path, tmp_path: Path) -> None:
    out = tmp_path / "fused.mlir"
    proc = cimc("lower", str(small_mlir), "--to", "cimq-fused", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    text = out.read_text()
    assert "cimq.requantize" in text and "cimc.level" in text
    again = cimc("lower", str(out), "--to", "cimq-fused")
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == text.strip()


def test_missing_file() -> None:
    assert_one_line_error(cimc("lower", "does-not-exist.onnx"), "does-not-exist.onnx", "not found")


def test_directory_instead_of_file(tmp_path: Path) -> None:
    assert_one_line_error(cimc("lower", str(tmp_path)), "is a directory")


def test_unknown_level(small_mlir: Path) -> None:
    assert_one_line_error(cimc("lower", str(small_mlir), "--to", "nowhere"), "unknown level 'nowhere'")


def test_malformed_mlir_leaves_no_output(tmp_path: Path) -> None:
    bad = tmp_path / "bad.mlir"
    bad.write_text(SMALL.replace("cimq.matmul %q, %w", "cimq.matmul %q %w"))
    out = tmp_path / "out.mlir"
    proc = cimc("lower", str(bad), "-o", str(out))
    assert_one_line_error(proc, "bad.mlir", "malformed IR")
    assert not out.exists()
    assert list(tmp_path.iterdir()) == [bad]


def test_invalid_mlir_is_reported_with_the_verifier_message(tmp_path: Path) -> None:
    bad = tmp_path / "bad.mlir"
    bad.write_text(SMALL.replace("s32:0.125", "s32:0.5"))
    assert_one_line_error(cimc("lower", str(bad)), "accumulator scale")


def test_debug_shows_traceback(tmp_path: Path) -> None:
    proc = cimc("lower", "does-not-exist.onnx", "--debug")
    assert proc.returncode != 0
    assert "Traceback" in proc.stderr


def test_wrong_input_shape(small_mlir: Path, tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.zeros((2, 5), np.float32))
    out = tmp_path / "y.npy"
    proc = cimc("run", str(small_mlir), "--input", str(tmp_path / "x.npy"), "--output", str(out))
    assert_one_line_error(proc, "input 0 has shape [2, 5]", "expects ['?', 4]")
    assert not out.exists()


def test_wrong_input_dtype(small_mlir: Path, tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.zeros((2, 4), np.int32))
    assert_one_line_error(cimc("run", str(small_mlir), "--input", str(tmp_path / "x.npy")), "dtype int32")


def test_input_not_numpy(small_mlir: Path, tmp_path: Path) -> None:
    (tmp_path / "x.npy").write_text("hello")
    assert_one_line_error(cimc("run", str(small_mlir), "--input", str(tmp_path / "x.npy")), "not a .npy")


def test_missing_weights_sidecar(tmp_path: Path) -> None:
    text = SMALL.replace(
        "dense<[[1, -1], [2, 3], [0, 7], [-7, 1]]> : tensor<4x2xi8>",
        '#cimq.blob<"fc.weight", "00000000000000000000">',
    )
    p = tmp_path / "m.mlir"
    p.write_text(text)
    assert_one_line_error(cimc("run", str(p)), "m.weights.npz")


# ---- ONNX inputs -------------------------------------------------------------------------------

def _float_model(path: Path, op: str = "Relu") -> Path:
    import onnx
    from onnx import TensorProto, helper

    node = helper.make_node(op, ["x"], ["y"], name="act")
    graph = helper.make_graph(
        [node], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)]), path)
    return path


def test_not_an_onnx_file(tmp_path: Path) -> None:
    p = tmp_path / "model.onnx"
    p.write_bytes(b"this is not a protobuf \x00\xff\x13")
    out = tmp_path / "out.mlir"
    assert_one_line_error(cimc("lower", str(p), "-o", str(out)), "model.onnx", "not an ONNX model")
    assert not out.exists() and not (tmp_path / "out.weights.npz").exists()


def test_truncated_onnx_file(tmp_path: Path) -> None:
    full = Path(__file__).parent / "filecheck" / "frontend" / "Inputs" / "attention.onnx"
    p = tmp_path / "cut.onnx"
    p.write_bytes(full.read_bytes()[: len(full.read_bytes()) // 2])
    out = tmp_path / "out.mlir"
    assert_one_line_error(cimc("lower", str(p), "-o", str(out)), "cut.onnx")
    assert sorted(x.name for x in tmp_path.iterdir()) == ["cut.onnx"]


def test_float_model_without_qdq(tmp_path: Path) -> None:
    p = _float_model(tmp_path / "float.onnx")
    assert_one_line_error(cimc("lower", str(p)), "no QDQ nodes")


def test_unsupported_op_names_node_and_op(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"], name="q"),
        helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"], name="dq"),
        helper.make_node("Tanh", ["xd"], ["y"], name="squash"),
    ]
    inits = [numpy_helper.from_array(np.array(0.1, np.float32), "s"),
             numpy_helper.from_array(np.array(0, np.int8), "z")]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], inits,
    )
    p = tmp_path / "tanh.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)]), p)
    assert_one_line_error(cimc("lower", str(p)), "node 'squash'", "Tanh", "not supported")


def test_run_onnx_file_at_cimq(tmp_path: Path) -> None:
    onnx_file = Path(__file__).parent / "filecheck" / "frontend" / "Inputs" / "mlp.onnx"
    proc = cimc("run", str(onnx_file), "--level", "cimq", "--batch", "4", "--output", str(tmp_path / "y.npy"))
    assert proc.returncode == 0, proc.stderr
    assert np.load(tmp_path / "y.npy").shape[0] == 4
