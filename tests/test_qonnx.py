"""QONNX input: files with ``Quant`` nodes are converted by the ``qonnx`` package's own
transformations and imported; what the conversion cannot express is refused with one line."""

from __future__ import annotations

import copy
import sys
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from cimc.errors import UnsupportedModelError
from cimc.exec.cimq_exec import run_cimq
from cimc.frontend import import_onnx, policy_of

pytest.importorskip("qonnx", reason="QONNX input needs the qonnx package (pip install '.[qonnx]')")


def _net(binary: bool = False) -> torch.nn.Module:
    import brevitas.nn as qnn
    import brevitas.quant as bq

    kw = {"weight_quant": bq.SignedBinaryWeightPerTensorConst} if binary else \
        {"weight_bit_width": 3}

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inp = qnn.QuantIdentity(bit_width=8, return_quant_tensor=True)
            self.c1 = qnn.QuantConv2d(1, 4, 3, **kw)
            self.r1 = qnn.QuantReLU(bit_width=4, return_quant_tensor=True)
            self.pool = torch.nn.MaxPool2d(2)
            self.c2 = qnn.QuantConv2d(4, 4, 3, weight_bit_width=5)

        def forward(self, x):
            return self.c2(self.pool(self.r1(self.c1(self.inp(x)))))

    torch.manual_seed(0)
    return Net().eval()


def _export(model: torch.nn.Module, path: Path, qonnx: bool) -> Path:
    from brevitas.export import export_onnx_qcdq, export_qonnx

    fn = export_qonnx if qonnx else export_onnx_qcdq
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        fn(copy.deepcopy(model), args=torch.randn(2, 1, 12, 12), export_path=str(path),
           dynamo=False, opset_version=13)
    return path


def test_qonnx_equals_qcdq_export(tmp_path: Path) -> None:
    """One Brevitas model exported as QONNX and as QCDQ: the same layers, bits and integers."""
    import ort_oracle

    model = _net()
    qonnx_path = _export(model, tmp_path / "q.onnx", qonnx=True)
    qcdq_path = _export(model, tmp_path / "qcdq.onnx", qonnx=False)
    assert {n.op_type for n in onnx.load(str(qonnx_path)).graph.node} >= {"Quant"}
    a, b = import_onnx(qonnx_path), import_onnx(qcdq_path)
    assert policy_of(a).tolist() == policy_of(b).tolist() == [[3, 8], [5, 4]]
    x = np.random.default_rng(0).standard_normal((2, 1, 12, 12)).astype(np.float32)
    out_a, _ = run_cimq(a.module, [x])
    out_b, _ = run_cimq(b.module, [x])
    np.testing.assert_array_equal(out_a[0], out_b[0])
    ref, _ = ort_oracle.quantized_tensors(qcdq_path, [x])
    cmp, not_ties = ort_oracle.forced_comparison(a.module, [x], ref)
    assert cmp.max_diff <= 1 and not not_ties


def test_bipolar_weights_refused(tmp_path: Path) -> None:
    path = _export(_net(binary=True), tmp_path / "b.onnx", qonnx=True)
    with pytest.raises(UnsupportedModelError) as info:
        import_onnx(path)
    assert str(info.value).startswith(
        "node '/c1/weight_quant/export_handler/BipolarQuant' (op BipolarQuant): binary (bipolar, "
        "+-1) quantization has no QuantizeLinear form")


def _quant_graph(op: str, extra_inputs: dict[str, float], **attrs) -> onnx.ModelProto:
    inits = [numpy_helper.from_array(np.array(v, np.float32), k) for k, v in extra_inputs.items()]
    node = helper.make_node(op, ["x", *extra_inputs], ["y"], name="qnode",
                            domain="qonnx.custom_op.general", **attrs)
    graph = helper.make_graph([node], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
                              inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11),
                                                    helper.make_opsetid("qonnx.custom_op.general",
                                                                        1)])
    model.ir_version = 7
    return model


@pytest.mark.parametrize(("op", "inputs", "attrs", "reason"), [
    ("Quant", {"s": 0.1, "z": 2.0, "b": 4.0}, {"signed": 1, "narrow": 0},
     "zero point [2.0] is not 0"),
    ("Quant", {"s": 0.1, "z": 0.0, "b": 1.0}, {"signed": 1, "narrow": 0},
     "bit width [1.0] is outside 2..8"),
    ("Quant", {"s": 0.1, "z": 0.0, "b": 4.0}, {"signed": 1, "narrow": 0, "rounding_mode": "FLOOR"},
     "rounding mode FLOOR is not ROUND"),
    ("Trunc", {"s": 0.1, "z": 0.0, "bi": 8.0, "bo": 4.0}, {},
     "truncation of a quantized tensor's low bits has no QuantizeLinear form"),
])
def test_unconvertible_qonnx_refused(op, inputs, attrs, reason, tmp_path: Path) -> None:
    path = tmp_path / "m.onnx"
    onnx.save(_quant_graph(op, inputs, **attrs), str(path))
    with pytest.raises(UnsupportedModelError) as info:
        import_onnx(path)
    assert str(info.value).startswith(f"node 'qnode' (op {op}): {reason}"), str(info.value)
    assert "\n" not in str(info.value)


def test_missing_qonnx_package(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "m.onnx"
    onnx.save(_quant_graph("Quant", {"s": 0.1, "z": 0.0, "b": 4.0}, signed=1, narrow=0), path)
    monkeypatch.setitem(sys.modules, "qonnx.transformation.qonnx_to_qcdq", None)
    with pytest.raises(UnsupportedModelError) as info:
        import_onnx(path)
    assert str(info.value) == (f"{path}: a QONNX model (Quant nodes); converting it needs the "
                               "qonnx package: pip install 'cimc[qonnx]'")
