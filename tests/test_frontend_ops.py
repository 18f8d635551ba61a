"""Importer tests of what issue 11 added: quantization through value-preserving ops, zero
points, the ops of ONNX's node tests that users' models contain, opsets 11..25, and one test per
refusal kind.

Every accepted model is run by cimc (import + cimq executor) and by onnxruntime (graph
optimizations off); the compared outputs are integers (a QuantizeLinear on every output), equal
up to a 1-LSB rounding tie of onnxruntime's float arithmetic.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnx_node_cases as nc
import pytest
from cimc.dialects import cimq
from onnx import TensorProto, helper, numpy_helper

from cimc.errors import UnsupportedModelError
from cimc.frontend import import_onnx

S_X, S_Y = 0.05, 0.04


def _t(name: str, arr, dtype=None) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(arr, dtype=dtype), name)


def weight(name: str, shape, *, seed: int = 0, zp: int = 0) -> tuple[list, list]:
    """int8 weights (in [-7, 7] + zp) behind a DequantizeLinear named ``{name}_dq``."""
    w = np.random.default_rng(seed).integers(-7, 8, size=shape) + zp
    inits = [_t(f"{name}_i", w, np.int8), _t(f"{name}_s", 0.03, np.float32),
             _t(f"{name}_z", zp, np.int8)]
    return inits, [helper.make_node("DequantizeLinear", [f"{name}_i", f"{name}_s", f"{name}_z"],
                                    [f"{name}_f"], name=f"{name}_dq")]


def model_of(body: list, inits: list, x_shape, *, x_zp: int = 0, x_type=np.int8,
             opset: int = 19, pre: list | None = None, x_in: str = "x") -> onnx.ModelProto:
    """``x -> [pre] -> Q -> DQ ("a") -> body -> "y" -> Q ("yq", int8 output)``."""
    nodes = list(pre or [])
    nodes += [helper.make_node("QuantizeLinear", [x_in, "sx", "zx"], ["qx"], name="qx"),
              helper.make_node("DequantizeLinear", ["qx", "sx", "zx"], ["a"], name="dqx"),
              *body,
              helper.make_node("QuantizeLinear", ["y", "sy", "zy"], ["yq"], name="qy")]
    inits = [*inits, _t("sx", S_X, np.float32), _t("zx", x_zp, x_type),
             _t("sy", S_Y, np.float32), _t("zy", 0, np.int8)]
    graph = helper.make_graph(nodes, "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
                              [helper.make_tensor_value_info("yq", TensorProto.INT8, None)],
                              inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 7 if opset < 15 else 9
    return model


def run_both(model: onnx.ModelProto, tmp_path: Path, x: np.ndarray | None = None):
    """The module, cimc's outputs and onnxruntime's, on one random input."""
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    shape = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    if x is None:
        x = (np.random.default_rng(7).standard_normal(shape) * 2).astype(np.float32)
    ours = nc.cimc_run(path, {"x": x})
    theirs = nc.ort_run(model, {"x": x})
    for a, b in zip(ours, theirs):
        assert a.shape == b.shape
        assert np.abs(a.astype(np.int64) - b.astype(np.int64)).max(initial=0) <= 1
    return import_onnx(path).module, ours, theirs


def ops(module, cls) -> list:
    return [op for op in module.walk() if isinstance(op, cls)]


def conv(inp: str, out: str, name: str = "conv", **kw) -> onnx.NodeProto:
    return helper.make_node("Conv", [inp, "w_f"], [out], name=name, **kw)


def n(op: str, ins: list[str], outs: list[str], name: str, **kw) -> onnx.NodeProto:
    return helper.make_node(op, ins, outs, name=name, **kw)


# --------------------------------------------------------------------------------------------
# Item 1: quantization through value-preserving ops
# --------------------------------------------------------------------------------------------

W_CONV = (3, 2, 3, 3)


def _ax(name: str, values) -> onnx.TensorProto:
    return _t(name, values, np.int64)


CHAINS = {
    "maxpool": ([n("MaxPool", ["a"], ["m"], "pool", kernel_shape=[2, 2], strides=[2, 2]),
                 conv("m", "y")], [], W_CONV),
    "pad_zero": ([n("Pad", ["a", "p"], ["m"], "pad"), conv("m", "y")],
                 [_ax("p", [0, 0, 1, 1, 0, 0, 1, 1])], W_CONV),
    "pad_on_grid": ([n("Pad", ["a", "p", "v"], ["m"], "pad"), conv("m", "y")],
                    [_ax("p", [0, 0, 1, 0, 0, 0, 0, 1]), _t("v", 2 * S_X, np.float32)], W_CONV),
    "slice_concat": ([n("Slice", ["a", "s0", "e1", "ax1"], ["c0"], "s0"),
                      n("Slice", ["a", "e1", "e2", "ax1"], ["c1"], "s1"),
                      n("Concat", ["c1", "c0"], ["m"], "cat", axis=1), conv("m", "y")],
                     [_ax("s0", [0]), _ax("e1", [1]), _ax("e2", [2]), _ax("ax1", [1])], W_CONV),
    "split": ([n("Split", ["a"], ["c0", "c1"], "split", axis=1, num_outputs=2),
               n("Concat", ["c1", "c0"], ["m"], "cat", axis=1), conv("m", "y")], [], W_CONV),
    "identity_dropout": ([n("Identity", ["a"], ["i"], "id"), n("Dropout", ["i"], ["m"], "drop"),
                          conv("m", "y")], [], W_CONV),
    "resize_nearest": ([n("Resize", ["a", "", "sc"], ["m"], "resize", mode="nearest"),
                        conv("m", "y")], [_t("sc", [1, 1, 2, 2], np.float32)], W_CONV),
    "depth_to_space": ([n("Concat", ["a", "a"], ["c"], "cat", axis=1),
                        n("DepthToSpace", ["c"], ["m"], "d2s", blocksize=2, mode="CRD"),
                        conv("m", "y")], [], (3, 1, 3, 3)),
    "flatten": ([n("Flatten", ["a"], ["m"], "flat"),
                 helper.make_node("MatMul", ["m", "w_f"], ["y"], name="mm")], [], (72, 5)),
    "reshape_transpose": ([n("Reshape", ["a", "shp"], ["r"], "reshape"),
                           n("Transpose", ["r"], ["t"], "tr", perm=[0, 2, 1]),
                           helper.make_node("MatMul", ["t", "w_f"], ["y"], name="mm")],
                          [_ax("shp", [0, 2, 36])], (2, 4)),
    "squeeze_gather": ([n("Unsqueeze", ["a", "u"], ["e"], "unsq"),
                        n("Squeeze", ["e", "u"], ["s"], "sq"),
                        n("Gather", ["s", "i1"], ["g"], "gather", axis=2),
                        helper.make_node("MatMul", ["g", "w_f"], ["y"], name="mm")],
                       [_ax("u", [1]), _ax("i1", 2)], (6, 4)),
}


@pytest.mark.parametrize("chain", sorted(CHAINS))
def test_value_preserving_ops_keep_quantization(chain: str, tmp_path: Path) -> None:
    """DQ -> op(s) -> Conv/MatMul: the ops move integers, the crossbar op gets them directly."""
    body, extra, wshape = CHAINS[chain]
    w_inits, w_nodes = weight("w", wshape)
    model = model_of([*w_nodes, *body], [*w_inits, *extra], [2, 2, 6, 6])
    module, _, _ = run_both(model, tmp_path)
    (xb,) = [op for op in module.walk() if isinstance(op, cimq.CROSSBAR_OPS)]
    assert isinstance(xb.operands[0].type.element_type, cimq.QuantType)
    assert len(ops(module, cimq.QuantizeOp)) == 2  # the input's and the output's only


@pytest.mark.parametrize("chain", sorted(CHAINS))
def test_crossbar_layers_behind_value_preserving_ops_map(chain: str, tmp_path: Path) -> None:
    """The same chains lowered to crossbars: xbar (bit-serial) equals cimq integer for integer."""
    from cimc.exec import run_at_level

    body, extra, wshape = CHAINS[chain]
    w_inits, w_nodes = weight("w", wshape)
    path = tmp_path / "m.onnx"
    onnx.save(model_of([*w_nodes, *body], [*w_inits, *extra], [2, 2, 6, 6]), str(path))
    module = import_onnx(path).module
    x = np.random.default_rng(5).standard_normal((2, 2, 6, 6)).astype(np.float32)
    ref = run_at_level(module, "cimq", [x]).outputs
    got = run_at_level(module, "xbar", [x], fast=False).outputs
    for a, b in zip(ref, got):
        np.testing.assert_array_equal(a, b)


def test_dq_op_q_on_the_same_grid_is_recognised(tmp_path: Path) -> None:
    """DQ -> MaxPool -> Q (same scale and zero point) -> DQ -> Conv: no float round trip."""
    w_inits, w_nodes = weight("w", W_CONV)
    body = [*w_nodes, n("MaxPool", ["a"], ["m"], "pool", kernel_shape=[2, 2], strides=[2, 2]),
            n("QuantizeLinear", ["m", "sx", "zx"], ["mq"], "q_pool"),
            n("DequantizeLinear", ["mq", "sx", "zx"], ["md"], "dq_pool"), conv("md", "y")]
    module, _, _ = run_both(model_of(body, w_inits, [2, 2, 6, 6], x_zp=3), tmp_path)
    (pool,) = ops(module, cimq.MaxPoolOp)
    assert pool.attributes["src"].data == "mq"
    assert isinstance(pool.output.type.element_type, cimq.QuantType)
    assert [op.attributes["src"].data for op in ops(module, cimq.QuantizeOp)] == ["qx", "yq"]


def test_dq_op_q_on_another_grid_requantizes(tmp_path: Path) -> None:
    w_inits, w_nodes = weight("w", W_CONV)
    body = [*w_nodes, n("MaxPool", ["a"], ["m"], "pool", kernel_shape=[2, 2], strides=[2, 2]),
            n("QuantizeLinear", ["m", "s2", "zx"], ["mq"], "q_pool"),
            n("DequantizeLinear", ["mq", "s2", "zx"], ["md"], "dq_pool"), conv("md", "y")]
    model = model_of(body, [*w_inits, _t("s2", 0.1, np.float32)], [2, 2, 6, 6])
    module, _, _ = run_both(model, tmp_path)
    assert [op.attributes["src"].data for op in ops(module, cimq.QuantizeOp)] == ["qx", "mq", "yq"]


def test_input_scaling_before_the_first_quantizer(tmp_path: Path) -> None:
    """FINN-style preprocessing (Mul, Sub, Div, Add by constants) in front of the first Q."""
    pre = [n("Mul", ["x", "c255"], ["p1"], "scale"), n("Sub", ["p1", "mean"], ["p2"], "center"),
           n("Div", ["p2", "std"], ["p3"], "norm"), n("Add", ["p3", "off"], ["p4"], "shift")]
    consts = [_t("c255", 1 / 255, np.float32), _t("mean", [[[0.5]], [[0.4]]], np.float32),
              _t("std", 0.25, np.float32), _t("off", 0.01, np.float32)]
    w_inits, w_nodes = weight("w", W_CONV)
    model = model_of([*w_nodes, conv("a", "y", pads=[1, 1, 1, 1])], [*w_inits, *consts],
                     [2, 2, 6, 6], pre=pre, x_in="p4")
    x = np.random.default_rng(3).integers(0, 256, (2, 2, 6, 6)).astype(np.float32)
    module, _, _ = run_both(model, tmp_path, x)
    assert len(ops(module, cimq.ConvOp)) == 1


# --------------------------------------------------------------------------------------------
# Item 3: zero points
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("x_zp", "w_zp"), [(128, 0), (100, 3), (0, -2)])
def test_zero_points_run_exactly(x_zp: int, w_zp: int, tmp_path: Path) -> None:
    """uint8 activations with a zero point, weights with a per-tensor zero point: exact."""
    w_inits, w_nodes = weight("w", W_CONV, zp=w_zp)
    body = [*w_nodes, conv("a", "y", pads=[1, 1, 1, 1])]
    x_type = np.uint8 if x_zp > 0 else np.int8
    module, _, _ = run_both(model_of(body, w_inits, [2, 2, 6, 6], x_zp=x_zp, x_type=x_type),
                            tmp_path)
    (c,) = ops(module, cimq.ConvOp)
    assert c.input.type.element_type.zp == x_zp and c.weight.type.element_type.zp == w_zp


@pytest.mark.parametrize(("x_zp", "w_zp"), [(128, 0), (100, 3), (0, -2), (37, 0)])
def test_zero_points_on_crossbars(x_zp: int, w_zp: int, tmp_path: Path) -> None:
    """Zero points on crossbars (issue 11 item 3): the streamed input's is removed digitally with
    the signed-input offset (padding with it), a static weight's folded into the stored
    integers; xbar bit-serial and fast path equal cimq integer for integer."""
    from cimc.exec import run_at_level
    from cimc.target.hw import Hardware

    w_inits, w_nodes = weight("w", W_CONV, zp=w_zp)
    body = [*w_nodes, conv("a", "c", pads=[1, 1, 1, 1]), n("Relu", ["c"], ["r"], "relu"),
            n("Flatten", ["r"], ["y"], "flat")]
    x_type = np.uint8 if x_zp > 0 else np.int8
    model = model_of(body, w_inits, [2, 2, 6, 6], x_zp=x_zp, x_type=x_type)
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    module = import_onnx(path).module
    x = (np.random.default_rng(x_zp).standard_normal((2, 2, 6, 6)) * 2).astype(np.float32)
    ref = run_at_level(module, "cimq", [x]).outputs
    for fast in (True, False):
        out = run_at_level(module, "xbar", [x], hw=Hardware(rows=16, cols=8), fast=fast).outputs
        for a, b in zip(out, ref):
            np.testing.assert_array_equal(a, b)


WEIGHT_BATCHES = {  # x shape, weight shape, (m, n, P, H) reported
    "heads": ([2, 3, 4, 5], (3, 5, 6), (6, 5, 4, 3)),
    "vector": ([2, 4, 5], (5,), (1, 5, 4, 1)),
    "leading_one": ([2, 4, 5], (1, 5, 6), (6, 5, 4, 1)),
}


@pytest.mark.parametrize("case", sorted(WEIGHT_BATCHES))
def test_batched_and_vector_constant_weights_on_crossbars(case: str, tmp_path: Path) -> None:
    """MatMul with a batch of constant weights ``[H, K, N]`` (H repeats, as a grouped
    convolution's) or a vector ``[K]`` (one column) maps; xbar == cimq, bit-serial and fast."""
    from cimc.exec import run_at_level
    from cimc.report import xbar_report
    from cimc.target.hw import Hardware

    x_shape, w_shape, desc = WEIGHT_BATCHES[case]
    w_inits, w_nodes = weight("w", w_shape, zp=1)
    model = model_of([*w_nodes, n("MatMul", ["a", "w_f"], ["y"], "mm")], w_inits, x_shape)
    run_both(model, tmp_path)
    module = import_onnx(tmp_path / "m.onnx").module
    (row,) = xbar_report(module, baseline=False)["layers"]
    assert (row["m"], row["n"], row["P"], row["H"]) == desc
    x = (np.random.default_rng(1).standard_normal(x_shape) * 2).astype(np.float32)
    ref = run_at_level(module, "cimq", [x]).outputs
    for fast in (True, False):
        out = run_at_level(module, "xbar", [x], hw=Hardware(rows=16, cols=8), fast=fast).outputs
        np.testing.assert_array_equal(out[0], ref[0])


def test_broadcast_input_against_weight_batch_refused(tmp_path: Path) -> None:
    from cimc.pipeline import lower

    w_inits, w_nodes = weight("w", (3, 5, 6))
    model = model_of([*w_nodes, n("MatMul", ["a", "w_f"], ["y"], "mm")], w_inits, [4, 5])
    onnx.save(model, str(tmp_path / "m.onnx"))
    with pytest.raises(UnsupportedModelError) as info:
        lower(import_onnx(tmp_path / "m.onnx").module, "xbar-mm")
    assert str(info.value).startswith("linear layer 'mm' (cimq.matmul): input [4, 5] against the weight batch [3]")


def test_written_operand_zero_point_on_crossbars(tmp_path: Path) -> None:
    """MatMul of two activations whose right operand (written at run time) is uint8 with a zero
    point: stored as is (unsigned cells), its zero point corrected digitally; xbar == cimq."""
    from cimc.exec import run_at_level
    from cimc.target.hw import Hardware

    body = [n("Transpose", ["a"], ["t"], "tr", perm=[0, 1, 3, 2]), n("MatMul", ["a", "t"], ["y"], "mm")]
    model = model_of(body, [], [1, 2, 6, 6], x_zp=128, x_type=np.uint8)
    onnx.save(model, str(tmp_path / "m.onnx"))
    module = import_onnx(tmp_path / "m.onnx").module
    x = (np.random.default_rng(2).standard_normal((1, 2, 6, 6)) * 3).astype(np.float32)
    ref = run_at_level(module, "cimq", [x]).outputs
    for fast in (True, False):
        out = run_at_level(module, "xbar", [x], hw=Hardware(rows=8, cols=16), fast=fast).outputs
        np.testing.assert_array_equal(out[0], ref[0])


def test_onnxruntime_quantize_static(tmp_path: Path) -> None:
    """onnxruntime's QDQ quantizer: uint8 activations with zero points, per-channel int8
    weights, int32 biases: every quantized tensor equals onnxruntime's (ties counted)."""
    import ort_oracle
    from corpus import ort_quantized

    rng = np.random.default_rng(0)
    w = _t("w", rng.standard_normal((4, 3, 3, 3)).astype(np.float32))
    b = _t("b", rng.standard_normal(4).astype(np.float32))
    graph = helper.make_graph(
        [n("Conv", ["x", "w", "b"], ["y"], "conv", pads=[1, 1, 1, 1]),
         n("Relu", ["y"], ["r"], "relu"),
         n("MaxPool", ["r"], ["out"], "pool", kernel_shape=[2, 2], strides=[2, 2])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 6, 6])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 4, 3, 3])], [w, b])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    dst = ort_quantized(model, tmp_path / "q.onnx", [1, 3, 6, 6], per_channel=True)
    result = import_onnx(dst)
    (c,) = ops(result.module, cimq.ConvOp)
    assert c.input.type.element_type.spec() == "u8" and c.input.type.element_type.zp != 0
    assert c.weight.type.element_type.per_channel and ops(result.module, cimq.BiasAddOp)
    x = rng.standard_normal((1, 3, 6, 6)).astype(np.float32)
    ref, _ = ort_oracle.quantized_tensors(dst, [x])
    cmp, not_ties = ort_oracle.forced_comparison(result.module, [x], ref)
    assert cmp.tensors >= 2 and cmp.max_diff <= 1 and not not_ties


# --------------------------------------------------------------------------------------------
# Item 7: ops of ONNX's node tests, NaN, opsets
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("attrs", [{"alpha": 0.5}, {"beta": 2.0}, {"transA": 1},
                                   {"alpha": 0.25, "beta": 0.35, "transA": 1, "transB": 1}])
def test_gemm_attributes(attrs: dict, tmp_path: Path) -> None:
    w_shape = (5, 4) if attrs.get("transB") else (4, 5)
    w_inits, w_nodes = weight("w", w_shape)
    bias = [_t("c", np.linspace(-1, 1, 5), np.float32)]
    x_shape = [4, 3] if attrs.get("transA") else [3, 4]
    body = [*w_nodes, n("Gemm", ["a", "w_f", "c"], ["y"], "gemm", **attrs)]
    module, _, _ = run_both(model_of(body, [*w_inits, *bias], x_shape), tmp_path)
    assert len(ops(module, cimq.MatMulOp)) == 1


def test_nan_reaching_a_quantizer(tmp_path: Path) -> None:
    """Sqrt of negative values and 0/0 quantize as onnxruntime does (to the lowest value)."""
    body = [n("Sqrt", ["a"], ["s"], "sqrt"), n("Div", ["a", "a"], ["d"], "div"),
            n("Add", ["s", "d"], ["y"], "add")]
    x = np.linspace(-3, 3, 2 * 2 * 6 * 6).reshape(2, 2, 6, 6).astype(np.float32)
    x[0, 0, 0, :3] = 0.0
    _, ours, theirs = run_both(model_of(body, [], [2, 2, 6, 6]), tmp_path, x)
    assert (ours[0] == -128).any()
    np.testing.assert_array_equal(ours[0], theirs[0])


def test_opset_11_model(tmp_path: Path) -> None:
    """Opset 11: Softmax over the trailing axes from ``axis`` (as 2-D), attribute axes."""
    w_inits, w_nodes = weight("w", W_CONV)
    body = [*w_nodes, conv("a", "c", pads=[1, 1, 1, 1]),
            n("Softmax", ["c"], ["sm"], "softmax", axis=1),
            n("Unsqueeze", ["sm"], ["u"], "unsq", axes=[1]),
            n("Squeeze", ["u"], ["y"], "sq", axes=[1])]
    run_both(model_of(body, w_inits, [2, 2, 6, 6], opset=11), tmp_path)


@pytest.mark.parametrize("opset", [10, 26])
def test_opset_range(opset: int, tmp_path: Path) -> None:
    w_inits, w_nodes = weight("w", W_CONV)
    path = tmp_path / "m.onnx"
    onnx.save(model_of([*w_nodes, conv("a", "y")], w_inits, [1, 2, 6, 6], opset=opset), path)
    with pytest.raises(UnsupportedModelError, match=f"opset {opset} is not supported; cimc "
                       "imports opsets 11 to 25"):
        import_onnx(path)


# --------------------------------------------------------------------------------------------
# One test per refusal kind: one line, naming the node, the op and the reason
# --------------------------------------------------------------------------------------------

REFUSALS = {
    "pad_mode": ([n("Pad", ["a", "p"], ["y"], "pad", mode="reflect")],
                 [_ax("p", [0, 0, 1, 1, 0, 0, 1, 1])],
                 "node 'pad' (op Pad): mode 'reflect' is not supported (constant padding only)"),
    "split_sizes": ([n("Split", ["a", "sz"], ["y", "z"], "split", axis=1)], [_ax("sz", [1, 3])],
                    "node 'split' (op Split): split sizes [1, 3] do not cover dim 1 of size 2"),
    "slice_step_0": ([n("Slice", ["a", "s0", "e1", "ax1", "st"], ["y"], "slice")],
                     [_ax("s0", [0]), _ax("e1", [1]), _ax("ax1", [1]), _ax("st", [0])],
                     "node 'slice' (op Slice): step 0 is not allowed"),
    "gather_range": ([n("Gather", ["a", "ix"], ["y"], "gather", axis=1)], [_ax("ix", [0, 5])],
                     "node 'gather' (op Gather): index 5 is out of range for dim 1 of size 2"),
    "dropout_training": ([n("Dropout", ["a", "r", "t"], ["y"], "drop")],
                         [_t("r", 0.3, np.float32), _t("t", True, np.bool_)],
                         "node 'drop' (op Dropout): training_mode=true with ratio 0.30000001192"),
    "gemm_alpha": ([*weight("w", (6, 5))[1], n("Flatten", ["a"], ["f"], "flat"),
                    n("Gemm", ["f", "w_f"], ["y"], "gemm", alpha=-1.0)], weight("w", (72, 5))[0],
                   "node 'gemm' (op Gemm): alpha=-1.0 is not supported (alpha must be positive)"),
    "resize_batch": ([n("Resize", ["a", "", "sc"], ["y"], "resize", mode="nearest")],
                     [_t("sc", [2, 1, 1, 1], np.float32)],
                     "node 'resize' (op Resize): resizing the batch axis is not supported"),
    "resize_linear": ([n("Resize", ["a", "", "sc"], ["y"], "resize", mode="linear")],
                      [_t("sc", [1, 1, 2, 2], np.float32)],
                      "node 'resize' (op Resize): mode 'linear' is not supported (nearest only)"),
    "depth_to_space_channels": ([n("DepthToSpace", ["a"], ["y"], "d2s", blocksize=2)], [],
                                ("node 'd2s' (op DepthToSpace): 2 channels are not divisible by "
                                 "blocksize^2 = 4")),
    "gelu_mode": ([n("Gelu", ["a"], ["y"], "gelu", approximate="fast")], [],
                  "node 'gelu' (op Gelu): approximate='fast' is not supported (none or tanh)"),
    "pool_1d_same": ([n("Reshape", ["a", "shp"], ["r"], "reshape"),
                      n("MaxPool", ["r"], ["y"], "pool", kernel_shape=[2], auto_pad="SAME_UPPER")],
                     [_ax("shp", [0, 2, 36])],
                     "node 'pool' (op MaxPool): auto_pad SAME_* is not supported for 1-D pooling"),
    "weight_zp_per_channel": ([n("DequantizeLinear", ["wi", "ws", "wz"], ["wf"], "dq_w", axis=0),
                               n("Conv", ["a", "wf"], ["y"], "conv")],
                              [_t("wi", np.ones((3, 2, 1, 1)), np.int8),
                               _t("ws", [0.1, 0.2, 0.3], np.float32), _t("wz", [0, 3, 0], np.int8)],
                              ("node 'dq_w': per-channel weight zero points [0, 3, 0] are not "
                               "supported (one zero point per tensor)")),
    "dq_zero_point_differs": ([n("DequantizeLinear", ["qx", "sx", "z5"], ["y"], "dq2")],
                              [_t("z5", 5, np.int8)],
                              ("node 'dq2': DequantizeLinear zero point [5] differs from the "
                               "QuantizeLinear zero point 0")),
    "zp_outside_clip": ([n("QuantizeLinear", ["a", "sx", "z20"], ["q2"], "q2"),
                         n("Clip", ["q2", "lo", "hi"], ["c2"], "clip2"),
                         n("DequantizeLinear", ["c2", "sx", "z20"], ["y"], "dq2")],
                        [_t("z20", 20, np.int8), _t("lo", -8, np.int8), _t("hi", 7, np.int8)],
                        "node 'clip2': zero point 20 lies outside the Clip range [-8, 7]"),
    "dq_output_dtype": ([n("QuantizeLinear", ["a", "sx", "zx"], ["q2"], "q2"),
                         n("DequantizeLinear", ["q2", "sx", "zx"], ["y"], "dq2",
                           output_dtype=TensorProto.FLOAT16)], [],
                        ("node 'dq2' (op DequantizeLinear): output_dtype=float16 is not "
                         "supported (float32 only)")),
}


def test_empty_input_refused(tmp_path: Path) -> None:
    w_inits, w_nodes = weight("w", W_CONV)
    path = tmp_path / "m.onnx"
    onnx.save(model_of([*w_nodes, conv("a", "y")], w_inits, [1, 2, 0, 6]), path)
    with pytest.raises(UnsupportedModelError) as info:
        import_onnx(path)
    assert str(info.value) == "input 'x' dim 2 has size 0; cimc takes non-empty inputs"


@pytest.mark.parametrize("kind", sorted(REFUSALS))
def test_refusal_is_one_line(kind: str, tmp_path: Path) -> None:
    body, inits, message = REFUSALS[kind]
    opset = 23 if kind == "dq_output_dtype" else 19
    path = tmp_path / "m.onnx"
    onnx.save(model_of(body, inits, [1, 2, 6, 6], opset=opset), path)
    with pytest.raises(UnsupportedModelError) as info:
        import_onnx(path)
    assert "\n" not in str(info.value)
    assert str(info.value).startswith(message), str(info.value)


def test_off_grid_pad_then_conv_runs_on_the_host(tmp_path: Path) -> None:
    """A pad value off the grid leaves floats: the conv after it is a host layer (issue 11
    item 2), equal to onnxruntime."""
    from cimc.analysis import host_layers

    body = [*weight("w", W_CONV)[1], n("Pad", ["a", "p", "v"], ["m"], "pad"), conv("m", "y")]
    inits = [*weight("w", W_CONV)[0], _ax("p", [0, 0, 1, 1, 0, 0, 1, 1]), _t("v", 0.3 * S_X, np.float32)]
    model = model_of(body, inits, [1, 2, 6, 6])
    run_both(model, tmp_path)
    (host,) = host_layers(import_onnx(tmp_path / "m.onnx").module)
    assert host.line() == "node 'conv' (op Conv): input 'm' is not quantized"


def test_fixed_batch_module_refuses_another_batch(tmp_path: Path) -> None:
    """A model that moves the batch off axis 0 (sequence-first attention) is typed at one batch
    and marked so: another batch is a one-line error, not a failure deep in the executor."""
    import brevitas_zoo

    from cimc.errors import ExecutionError
    from cimc.exec.cimq_exec import run_cimq

    path = brevitas_zoo.export(brevitas_zoo.mha_case(1), tmp_path / "mha.onnx")
    result = import_onnx(path)
    main = next(iter(result.module.ops))
    assert "cimq.fixed_batch" in main.attributes and not result.batch_polymorphic
    shape = list(result.inputs[0].shape)
    run_cimq(result.module, [np.zeros(shape, np.float32)])
    with pytest.raises(ExecutionError) as info:
        run_cimq(result.module, [np.zeros([shape[0] + 2, *shape[1:]], np.float32)])
    assert str(info.value) == f"input 0 has batch {shape[0] + 2}, @main expects {shape[0]}"
