"""Tests of the ONNX QDQ/QCDQ importer (:mod:`cimc.frontend`).

* 52 random Brevitas models (tests/brevitas_zoo.py: conv nets, MLPs, attention; random per-layer
  weight / activation bits 2..8, per-tensor / per-channel, int32 / float / no bias, opsets
  13..21, some with ``export_weight_q_node`` or a dynamic batch): export -> import -> every
  recovered bit width equals the configured one, the module verifies and survives print/parse;
* hand-built QDQ graphs for the mapping details (bit-width recovery, shared constants, folding of
  shape subgraphs, batch handling);
* one test per rejected input, checking the error class and that the message names the node /
  op / value.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from xdsl.context import Context
from xdsl.dialects import builtin, func
from xdsl.parser import Parser
from xdsl.printer import Printer

import brevitas_zoo
from cimc.dialects import cimq
from cimc.errors import CimcError, InputFileError, UnsupportedModelError
from cimc.frontend import ImportResult, import_onnx, policy_of

# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def _ctx() -> Context:
    ctx = Context()
    for dialect in (builtin.Builtin, func.Func, cimq.CIMQ):
        ctx.load_dialect(dialect)
    return ctx


def assert_round_trip(result: ImportResult) -> None:
    """Custom and generic text parse back to a structurally equal module."""
    module = result.module
    module.verify()
    reparsed = Parser(_ctx(), str(module)).parse_module()
    reparsed.verify()
    assert reparsed.is_structurally_equivalent(module)
    import io

    buf = io.StringIO()
    Printer(stream=buf, print_generic_format=True).print_op(module)
    generic = Parser(_ctx(), buf.getvalue()).parse_module()
    assert generic.is_structurally_equivalent(module)


def ops_of(result: ImportResult, cls: type) -> list:
    return [op for op in result.module.walk() if isinstance(op, cls)]


def save(model: onnx.ModelProto, path: Path) -> Path:
    onnx.save(model, str(path))
    return path


def tensor(name: str, arr, dtype=None) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(arr, dtype=dtype), name)


def conv_qdq(
    *,
    act_zp: int = 0,
    act_zp_type=np.int8,
    act_clip: tuple[int, int] | None = None,
    w_clip: tuple[int, int] | None = (-7, 7),
    w_zp=0,
    w_scale=0.02,
    w_axis: int | None = None,
    act_op: str = "Relu",
    conv_input: str = "dq_x",
    x_dims: list = (1, 2, 5, 5),
    opset: int = 19,
) -> onnx.ModelProto:
    """``x -> Q -> [Clip] -> DQ -> Conv(., DQ(Clip(w_int))) -> act`` (node names used in errors)."""
    rng = np.random.default_rng(0)
    w = rng.integers(-7, 8, size=(3, 2, 3, 3)).astype(np.int8)
    inits = [
        tensor("s_x", 0.05, np.float32),
        tensor("zp_x", act_zp, act_zp_type),
        tensor("w_int", w),
        tensor("s_w", w_scale, np.float32),
        tensor("zp_w", w_zp, np.int8),
    ]
    nodes = [helper.make_node("QuantizeLinear", ["x", "s_x", "zp_x"], ["q_x"], name="q_x")]
    dq_in = "q_x"
    if act_clip is not None:
        lo, hi = act_clip
        inits += [tensor("a_lo", lo, act_zp_type), tensor("a_hi", hi, act_zp_type)]
        nodes.append(helper.make_node("Clip", ["q_x", "a_lo", "a_hi"], ["c_x"], name="clip_x"))
        dq_in = "c_x"
    nodes.append(
        helper.make_node("DequantizeLinear", [dq_in, "s_x", "zp_x"], ["dq_x"], name="dq_x"))
    w_in = "w_int"
    if w_clip is not None:
        inits += [tensor("w_lo", w_clip[0], np.int8), tensor("w_hi", w_clip[1], np.int8)]
        nodes.append(helper.make_node("Clip", ["w_int", "w_lo", "w_hi"], ["w_c"], name="clip_w"))
        w_in = "w_c"
    dq_attrs = {} if w_axis is None else {"axis": w_axis}
    nodes.append(helper.make_node("DequantizeLinear", [w_in, "s_w", "zp_w"], ["w_f"], name="dq_w",
                                  **dq_attrs))
    nodes.append(
        helper.make_node("Conv", [conv_input, "w_f"], ["y"], name="conv", pads=[1, 1, 1, 1]))
    nodes.append(helper.make_node(act_op, ["y"], ["out"], name="act"))
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_dims))],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)], inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 9
    return model


def replace_init(model: onnx.ModelProto, name: str, arr) -> onnx.ModelProto:
    for i, init in enumerate(model.graph.initializer):
        if init.name == name:
            model.graph.initializer[i].CopyFrom(numpy_helper.from_array(np.asarray(arr), name))
            return model
    raise KeyError(name)


def expect_error(path: Path, cls: type, *fragments: str) -> str:
    with pytest.raises(cls) as info:
        import_onnx(path)
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message
    return message


# --------------------------------------------------------------------------------------------
# Random Brevitas models: bits, kinds, verification, round trip
# --------------------------------------------------------------------------------------------

CONFIGS = (
    [("conv", s) for s in range(20)]
    + [("mlp", s) for s in range(18)]
    + [("attention", s) for s in range(14)]
)


@pytest.mark.parametrize(("family", "seed"), CONFIGS, ids=[f"{f}{s}" for f, s in CONFIGS])
def test_brevitas_models(family: str, seed: int, tmp_path: Path) -> None:
    case = brevitas_zoo.GENERATORS[family](seed)
    path = brevitas_zoo.export(case, tmp_path / f"{case.name}.onnx")
    result = import_onnx(path)

    assert policy_of(result).tolist() == [list(b) for b in case.bits]
    assert [layer.kind for layer in result.layers] == case.kinds
    graph = onnx.load(str(path)).graph
    crossbar_nodes = [n.name for n in graph.node if n.op_type in ("Conv", "Gemm", "MatMul")]
    assert [layer.name for layer in result.layers] == crossbar_nodes
    for layer in result.layers:
        if layer.kind != "matmul_act":
            assert layer.w_signed
            assert layer.per_channel == case.notes.get("per_channel", layer.per_channel)
    # Every quantize names the ONNX integer tensor it reproduces.
    int_tensors = {n.output[0] for n in graph.node if n.op_type in ("QuantizeLinear", "Clip")}
    quantizes = ops_of(result, cimq.QuantizeOp)
    assert quantizes
    for op in quantizes:
        assert op.attributes["src"].data in int_tensors
    # The crossbar ops carry their ONNX node names.
    xbar = [op for op in result.module.walk() if isinstance(op, cimq.CROSSBAR_OPS)]
    assert [op.attributes["layer"].data for op in xbar] == crossbar_nodes
    if case.dynamic_batch:
        assert result.inputs[0].shape[0] is None
        assert "tensor<?x" in str(result.module)
    assert_round_trip(result)


def test_config_count() -> None:
    assert len(set(CONFIGS)) >= 50


# --------------------------------------------------------------------------------------------
# Mapping details on hand-built graphs
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("w_clip", "spec"),
    [((-7, 7), "s4n"), ((-8, 7), "s4"), ((-1, 1), "s2n"), ((-127, 127), "s8n"), (None, "s8")],
)
def test_weight_bits_from_clip(tmp_path: Path, w_clip, spec: str) -> None:
    result = import_onnx(save(conv_qdq(w_clip=w_clip), tmp_path / "m.onnx"))
    (const,) = [op for op in ops_of(result, cimq.ConstOp)
                if isinstance(op.output.type.element_type, cimq.QuantType)]
    assert const.output.type.element_type.spec() == spec
    bits = int(re.sub(r"\D", "", spec))
    assert policy_of(result).tolist() == [[bits, 8]]


@pytest.mark.parametrize(
    ("clip", "zp_type", "spec"),
    [((0, 15), np.uint8, "u4"), ((0, 3), np.uint8, "u2"), ((-32, 31), np.int8, "s6"),
     ((-3, 3), np.int8, "s3n"), (None, np.uint8, "u8"), (None, np.int8, "s8")],
)
def test_activation_bits_and_src(tmp_path: Path, clip, zp_type, spec: str) -> None:
    result = import_onnx(save(conv_qdq(act_clip=clip, act_zp_type=zp_type), tmp_path / "m.onnx"))
    (q,) = ops_of(result, cimq.QuantizeOp)
    assert q.output.type.element_type.spec() == spec
    assert q.attributes["src"].data == ("c_x" if clip else "q_x")
    assert result.layers[0].a_signed == spec.startswith("s")


def test_per_channel_weights_and_accumulator(tmp_path: Path) -> None:
    scales = np.array([0.01, 0.02, 0.04], np.float32)
    model = replace_init(conv_qdq(w_axis=0), "s_w", scales)
    replace_init(model, "zp_w", np.zeros(3, np.int8))
    result = import_onnx(save(model, tmp_path / "m.onnx"))
    (conv,) = ops_of(result, cimq.ConvOp)
    w = conv.weight.type.element_type
    acc = conv.output.type.element_type
    assert w.channel_axis == 0 and list(w.scale_values) == pytest.approx(scales.tolist())
    assert acc.channel_axis == 1 and acc.width == 32
    assert list(acc.scale_values) == pytest.approx((0.05 * scales.astype(np.float64)).tolist())
    assert result.layers[0].per_channel


def test_weights_are_clipped_and_stored(tmp_path: Path) -> None:
    model = conv_qdq(w_clip=(-1, 1))
    result = import_onnx(save(model, tmp_path / "m.onnx"))
    (conv,) = ops_of(result, cimq.ConvOp)
    blob = conv.weight.owner.value
    assert isinstance(blob, cimq.BlobAttr) and blob.key.data == "w_int"
    w_int = numpy_helper.to_array(next(i for i in model.graph.initializer if i.name == "w_int"))
    np.testing.assert_array_equal(blob.array, np.clip(w_int, -1, 1))


def test_shared_weight_constant(tmp_path: Path) -> None:
    """One DQ'd weight used by two convs, and one initializer behind two different clips."""
    model = conv_qdq()
    g = model.graph
    g.initializer.extend([tensor("w_lo2", -1, np.int8), tensor("w_hi2", 1, np.int8)])
    g.node.extend([
        helper.make_node("Conv", ["dq_x", "w_f"], ["y2"], name="conv2", pads=[1, 1, 1, 1]),
        helper.make_node("Clip", ["w_int", "w_lo2", "w_hi2"], ["w_c2"], name="clip_w2"),
        helper.make_node("DequantizeLinear", ["w_c2", "s_w", "zp_w"], ["w_f2"], name="dq_w2"),
        helper.make_node("Conv", ["dq_x", "w_f2"], ["y3"], name="conv3", pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["y2", "y3"], ["s"], name="add"),
        helper.make_node("Add", ["s", "out"], ["out2"], name="add2"),
    ])
    del g.output[:]
    g.output.append(helper.make_tensor_value_info("out2", TensorProto.FLOAT, None))
    result = import_onnx(save(model, tmp_path / "m.onnx"))
    assert [layer.name for layer in result.layers] == ["conv", "conv2", "conv3"]
    assert policy_of(result).tolist() == [[4, 8], [4, 8], [2, 8]]
    assert_round_trip(result)


def _gemm_model(*, trans_b: int = 1, alpha: float = 1.0, trans_a: int = 0, bias: str = "int32",
                opset: int = 19) -> onnx.ModelProto:
    rng = np.random.default_rng(1)
    w = rng.integers(-3, 4, size=(4, 6) if trans_b else (6, 4)).astype(np.int8)
    inits = [tensor("s_x", 0.1, np.float32), tensor("zp_x", 0, np.int8), tensor("w", w),
             tensor("s_w", 0.05, np.float32), tensor("zp_w", 0, np.int8),
             tensor("lo", -3, np.int8), tensor("hi", 3, np.int8)]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s_x", "zp_x"], ["q"], name="q"),
        helper.make_node("DequantizeLinear", ["q", "s_x", "zp_x"], ["dq"], name="dq"),
        helper.make_node("Clip", ["w", "lo", "hi"], ["wc"], name="wc"),
        helper.make_node("DequantizeLinear", ["wc", "s_w", "zp_w"], ["wf"], name="wdq"),
    ]
    gemm_in = ["dq", "wf"]
    if bias == "int32":
        inits += [tensor("b", [5, -7, 0, 2], np.int32),
                  tensor("s_b", np.float32(0.1) * np.float32(0.05)), tensor("zp_b", 0, np.int32)]
        nodes.append(helper.make_node("DequantizeLinear", ["b", "s_b", "zp_b"], ["bf"], name="bdq"))
        gemm_in.append("bf")
    elif bias == "float":
        inits.append(tensor("bf", [0.5, -0.25, 0.0, 1.0], np.float32))
        gemm_in.append("bf")
    nodes.append(helper.make_node("Gemm", gemm_in, ["y"], name="gemm", transB=trans_b,
                                  alpha=alpha, transA=trans_a))
    graph = helper.make_graph(nodes, "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 9
    return model


@pytest.mark.parametrize("bias", ["int32", "float", "none"])
@pytest.mark.parametrize("trans_b", [0, 1])
def test_gemm_transpose_folded_and_bias(tmp_path: Path, bias: str, trans_b: int) -> None:
    result = import_onnx(save(_gemm_model(trans_b=trans_b, bias=bias), tmp_path / "m.onnx"))
    (mm,) = ops_of(result, cimq.MatMulOp)
    assert mm.weight.type.get_shape() == (6, 4)
    assert len(ops_of(result, cimq.BiasAddOp)) == (bias == "int32")
    assert len(ops_of(result, cimq.AddOp)) == (bias == "float")
    assert policy_of(result).tolist() == [[3, 8]]
    assert result.layers[0].shapes["weight"] == (6, 4)
    assert_round_trip(result)


def test_shape_subgraph_folded_and_batch(tmp_path: Path) -> None:
    """Reshape target from Shape/Gather/Unsqueeze/Concat is folded; batch entry written as 0."""
    model = conv_qdq(x_dims=["N", 2, 5, 5])
    g = model.graph
    g.initializer.extend([tensor("i0", 0, np.int64), tensor("minus1", [-1], np.int64),
                          tensor("ax0", [0], np.int64)])
    g.node.extend([
        helper.make_node("Shape", ["out"], ["shp"], name="shape"),
        helper.make_node("Gather", ["shp", "i0"], ["n"], name="gather_n", axis=0),
        helper.make_node("Unsqueeze", ["n", "ax0"], ["n1"], name="unsq"),
        helper.make_node("Concat", ["n1", "minus1"], ["target"], name="cat", axis=0),
        helper.make_node("Reshape", ["out", "target"], ["flat"], name="reshape"),
    ])
    del g.output[:]
    g.output.append(helper.make_tensor_value_info("flat", TensorProto.FLOAT, None))
    path = save(model, tmp_path / "m.onnx")
    result = import_onnx(path)
    (reshape,) = ops_of(result, cimq.ReshapeOp)
    assert list(cimq.ints(reshape.shape)) == [0, -1]
    assert result.inputs[0].shape == (None, 2, 5, 5)
    assert result.outputs[0].shape == (None, 75)
    assert "tensor<?x75xf32>" in str(result.module)
    for op in result.module.walk():  # shape computations are folded, not emitted
        assert op.name.startswith(("cimq.", "func.", "builtin."))
    fixed = import_onnx(path, batch=4)
    assert fixed.inputs[0].shape == (4, 2, 5, 5) and fixed.outputs[0].shape == (4, 75)
    assert_round_trip(fixed)


def test_static_batch_override(tmp_path: Path) -> None:
    case = brevitas_zoo.attention_case(3)
    path = brevitas_zoo.export(case, tmp_path / "a.onnx")
    result = import_onnx(path, batch=5)
    text = str(result.module)
    assert result.inputs[0].shape[0] == 5 and result.outputs[0].shape[0] == 5
    for op in ops_of(result, cimq.ReshapeOp):
        assert cimq.ints(op.shape)[0] in (0, -1)
    assert "%x: tensor<5x" in text
    for op in ops_of(result, cimq.MatMulActOp):
        assert op.output.type.get_shape()[0] == 5


def test_attention_k_transpose_on_integers(tmp_path: Path) -> None:
    case = brevitas_zoo.attention_case(0)
    result = import_onnx(brevitas_zoo.export(case, tmp_path / "a.onnx"))
    qk, _ = ops_of(result, cimq.MatMulActOp)
    rhs = qk.rhs.owner
    assert isinstance(rhs, cimq.TransposeOp)
    assert isinstance(rhs.output.type.element_type, cimq.QuantType)


@pytest.mark.parametrize("name", ["lenet", "resnet_small", "vit_small"])
def test_zoo_models(name: str) -> None:
    models = pytest.importorskip("cimc.models")
    rng = np.random.default_rng(len(name))
    n = models.num_layers(name)
    policy = rng.integers(2, 9, size=(n, 2))
    path = models.zoo_onnx(name, policy)
    result = import_onnx(path)
    assert policy_of(result).tolist() == policy.tolist()
    assert_round_trip(result)


@pytest.mark.slow
@pytest.mark.parametrize(("name", "layers"), [("resnet18", 21), ("vgg16", 16), ("vit_b32", 98)])
def test_full_size_import(name: str, layers: int) -> None:
    """Full-size models import (only when the zoo has already exported them); the time is
    benchmarks/bench_import.py's, not a test's."""
    export = pytest.importorskip("cimc.models.export")
    path = export.default_cache_dir() / f"{name}-w8a8-s0-v{export.EXPORT_FORMAT}.onnx"
    if not path.is_file():
        pytest.skip(f"{path} not built (python -c \"from cimc.models import zoo_onnx; "
                    f"zoo_onnx('{name}')\")")
    result = import_onnx(path)
    assert len(result.layers) == layers


# --------------------------------------------------------------------------------------------
# Rejected inputs
# --------------------------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    expect_error(tmp_path / "nope.onnx", InputFileError, "nope.onnx", "file not found")


def test_not_onnx(tmp_path: Path) -> None:
    p = tmp_path / "x.onnx"
    p.write_text("this is not a protobuf\n")
    expect_error(p, InputFileError, "x.onnx", "not an ONNX model")


def test_truncated_protobuf(tmp_path: Path) -> None:
    data = save(conv_qdq(), tmp_path / "ok.onnx").read_bytes()
    p = tmp_path / "t.onnx"
    p.write_bytes(data[: len(data) // 2])
    expect_error(p, InputFileError, "t.onnx", "not an ONNX model (")


def test_float_model_rejected(tmp_path: Path) -> None:
    w = tensor("w", np.ones((3, 2, 3, 3), np.float32))
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"], name="conv")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 5, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])
    expect_error(save(model, tmp_path / "f.onnx"), UnsupportedModelError,
                 "model has no QDQ nodes: cimc compiles quantized models; export with "
                 "brevitas.export.export_onnx_qcdq")


def test_unsupported_op(tmp_path: Path) -> None:
    path = save(conv_qdq(act_op="Tanh"), tmp_path / "m.onnx")
    expect_error(path, UnsupportedModelError, "node 'act' (op Tanh) is not supported")


def test_unsupported_domain(tmp_path: Path) -> None:
    model = conv_qdq()
    model.graph.node[-1].domain = "com.example"
    model.opset_import.append(helper.make_opsetid("com.example", 1))
    expect_error(save(model, tmp_path / "m.onnx"), UnsupportedModelError,
                 "node 'act'", "com.example::Relu", "not supported")


def test_activation_16_bits(tmp_path: Path) -> None:
    path = save(conv_qdq(act_zp_type=np.int16), tmp_path / "m.onnx")
    expect_error(path, UnsupportedModelError, "node 'q_x'", "int16", "16 bits",
                 "1 to 8 bits")


def test_clip_range_wider_than_8_bits(tmp_path: Path) -> None:
    path = save(conv_qdq(act_zp_type=np.int16, act_clip=(-512, 511)), tmp_path / "m.onnx")
    expect_error(path, UnsupportedModelError, "node 'clip_x'", "[-512, 511]", "10 bits")


def test_weight_16_bits_runs_on_the_host(tmp_path: Path) -> None:
    """A 16-bit weight is the host fallback (tests/test_host_fallback.py), named with its bits."""
    from cimc.analysis import host_layers

    model = replace_init(conv_qdq(w_clip=None), "w_int", np.ones((3, 2, 3, 3), np.int16))
    replace_init(model, "zp_w", np.array(0, np.int16))
    module = import_onnx(save(model, tmp_path / "m.onnx")).module
    (host,) = host_layers(module)
    assert host.op == "Conv" and "16 bits (crossbars take 1 to 8)" in host.reason


@pytest.mark.parametrize("bounds", [(0, 10), (-3, 4), (-5, 5)])
def test_clip_not_power_of_two(tmp_path: Path, bounds) -> None:
    path = save(conv_qdq(act_clip=bounds), tmp_path / "m.onnx")
    expect_error(path, UnsupportedModelError, "node 'clip_x'", f"[{bounds[0]}, {bounds[1]}]",
                 "power-of-two")


def test_dynamic_non_batch_dim(tmp_path: Path) -> None:
    path = save(conv_qdq(x_dims=["N", 2, "h", 5]), tmp_path / "m.onnx")
    msg = expect_error(path, UnsupportedModelError)
    assert msg == ("input 'x' dim 2 is dynamic ('h'); only the batch dimension (axis 0; see "
                   "--batch-axis) may be symbolic")


def test_float_conv_in_qdq_model_runs_on_the_host(tmp_path: Path) -> None:
    from cimc.analysis import host_layers

    path = save(conv_qdq(conv_input="x"), tmp_path / "m.onnx")
    (host,) = host_layers(import_onnx(path).module)
    assert host.line() == "node 'conv' (op Conv): input 'x' is not quantized"


def test_blocked_quantization(tmp_path: Path) -> None:
    model = conv_qdq(opset=21, w_clip=None)
    dq = next(n for n in model.graph.node if n.name == "dq_w")
    dq.attribute.extend([helper.make_attribute("block_size", 2), helper.make_attribute("axis", 1)])
    expect_error(save(model, tmp_path / "m.onnx"), UnsupportedModelError,
                 "node 'dq_w' (op DequantizeLinear)", "block_size=2")


def test_errors_are_cimc_errors(tmp_path: Path) -> None:
    assert issubclass(UnsupportedModelError, CimcError) and issubclass(InputFileError, CimcError)


@pytest.mark.parametrize("dynamic", [False, True])
def test_quant_multihead_attention(tmp_path: Path, dynamic: bool) -> None:
    """Brevitas MHA: shape subgraphs folded, batch moved off axis 0 -> typed at one batch."""
    from onnx_bits import recover_bits

    case = brevitas_zoo.mha_case(1, dynamic_batch=dynamic)
    path = brevitas_zoo.export(case, tmp_path / "mha.onnx")
    result = import_onnx(path)
    assert policy_of(result).tolist() == recover_bits(str(path))[1].tolist()
    assert [layer.kind for layer in result.layers] == case.kinds
    assert not result.batch_polymorphic
    assert result.inputs[0].shape[0] == 1 and "?" not in str(result.module)
    assert_round_trip(result)
    if dynamic:
        assert import_onnx(path, batch=3).inputs[0].shape[0] == 3
    else:
        expect_error_batch = pytest.raises(UnsupportedModelError, match="batch dimension does not")
        with expect_error_batch:
            import_onnx(path, batch=3)


def test_squeeze_unsqueeze_keep_batch(tmp_path: Path) -> None:
    model = conv_qdq(x_dims=["N", 2, 5, 5])
    g = model.graph
    g.initializer.append(tensor("ax", [2], np.int64))
    g.node.extend([helper.make_node("Unsqueeze", ["out", "ax"], ["u"], name="unsq"),
                   helper.make_node("Squeeze", ["u", "ax"], ["sq"], name="sq")])
    del g.output[:]
    g.output.append(helper.make_tensor_value_info("sq", TensorProto.FLOAT, None))
    result = import_onnx(save(model, tmp_path / "m.onnx"))
    shapes = [list(cimq.ints(op.shape)) for op in ops_of(result, cimq.ReshapeOp)]
    assert shapes == [[0, 3, 1, 5, 5], [0, 3, 5, 5]]
    assert result.batch_polymorphic and result.outputs[0].shape == (None, 3, 5, 5)


def test_integer_tensor_used_as_float(tmp_path: Path) -> None:
    model = conv_qdq()
    model.graph.node.append(helper.make_node("Relu", ["q_x"], ["r"], name="bad_relu"))
    model.graph.output.append(helper.make_tensor_value_info("r", TensorProto.INT8, None))
    expect_error(save(model, tmp_path / "m.onnx"), UnsupportedModelError,
                 "node 'bad_relu' (op Relu)", "integer tensor 'q_x'")


def host_ops_model(opset: int = 20) -> onnx.ModelProto:
    """conv_qdq's output through every float host op the importer maps (one chain)."""
    model = conv_qdq(opset=opset)  # out: [1, 3, 5, 5]
    g = model.graph
    f32 = np.float32
    g.initializer.extend([
        tensor("c_half", 0.5, f32), tensor("c_two", [2.0, 3.0, 4.0, 5.0, 6.0], f32),
        tensor("lo_f", -0.5, f32), tensor("hi_f", 0.75, f32),
        tensor("g_ln", np.linspace(0.5, 1.5, 5), f32), tensor("b_ln", np.linspace(-1, 1, 5), f32),
        tensor("bn_g", [1.0, 0.5, 2.0], f32), tensor("bn_b", [0.1, 0.0, -0.1], f32),
        tensor("bn_m", [0.2, -0.1, 0.0], f32), tensor("bn_v", [1.0, 2.0, 0.5], f32),
        tensor("idx1", 1, np.int64), tensor("axes_r", [2], np.int64),
        tensor("sl_s", [1], np.int64), tensor("sl_e", [4], np.int64), tensor("sl_a", [3], np.int64),
    ])
    n = helper.make_node
    g.node.extend([
        n("BatchNormalization", ["out", "bn_g", "bn_b", "bn_m", "bn_v"], ["h1"], name="bn"),
        n("Sub", ["h1", "c_half"], ["h2"], name="sub"),
        n("Div", ["h2", "c_two"], ["h3"], name="div"),
        n("Clip", ["h3", "lo_f", "hi_f"], ["h4"], name="clipf"),
        n("LayerNormalization", ["h4", "g_ln", "b_ln"], ["h5"], name="ln", axis=-1),
        n("Gelu", ["h5"], ["h6"], name="gelu"),
        n("Mul", ["h6", "h6"], ["h7"], name="sq_mul"),
        n("Sqrt", ["h7"], ["h8"], name="sqrt"),
        n("Erf", ["h8"], ["h9"], name="erf"),
        n("Softmax", ["h9"], ["h10"], name="softmax", axis=1),
        n("AveragePool", ["h10"], ["p1"], name="avg", kernel_shape=[2, 2], pads=[1, 1, 0, 0]),
        n("MaxPool", ["h10"], ["p2"], name="max", kernel_shape=[3, 3], strides=[2, 2]),
        n("GlobalAveragePool", ["h10"], ["p3"], name="gap"),
        n("ReduceMean", ["h10", "axes_r"], ["p4"], name="rmean", keepdims=0),
        n("Gather", ["h10", "idx1"], ["p5"], name="gather", axis=1),
        n("Slice", ["h10", "sl_s", "sl_e", "sl_a"], ["p6"], name="slice"),
        n("Flatten", ["p1"], ["f1"], name="flat1"), n("Flatten", ["p2"], ["f2"], name="flat2"),
        n("Flatten", ["p3"], ["f3"], name="flat3"), n("Flatten", ["p4"], ["f4"], name="flat4"),
        n("Flatten", ["p5"], ["f5"], name="flat5"), n("Flatten", ["p6"], ["f6"], name="flat6"),
        n("Concat", ["f1", "f2", "f3", "f4", "f5", "f6"], ["cat"], name="cat", axis=1),
    ])
    del g.output[:]
    g.output.append(helper.make_tensor_value_info("cat", TensorProto.FLOAT, None))
    return model


def test_host_ops(tmp_path: Path) -> None:
    result = import_onnx(save(host_ops_model(), tmp_path / "h.onnx"))
    names = {op.name for op in result.module.walk()}
    for expected in ("cimq.mul", "cimq.add", "cimq.sub", "cimq.div", "cimq.clip", "cimq.layernorm",
                     "cimq.gelu", "cimq.sqrt", "cimq.erf", "cimq.softmax", "cimq.avgpool",
                     "cimq.maxpool", "cimq.global_avgpool", "cimq.reduce_mean", "cimq.gather",
                     "cimq.slice", "cimq.flatten", "cimq.concat"):
        assert expected in names, expected
    (clip,) = ops_of(result, cimq.ClipOp)
    assert clip.min.value.data == -0.5 and clip.max.value.data == 0.75
    (soft,) = ops_of(result, cimq.SoftmaxOp)
    assert soft.axis.value.data == 1
    assert result.outputs[0].shape == (1, 3 * 25 + 3 * 4 + 3 + 15 + 25 + 45)
    assert_round_trip(result)
