"""Zoo models: layer order, policy -> Brevitas -> QCDQ ONNX -> recovered bits, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cimc import models
from cimc.errors import CimcError
from onnx_bits import op_types, recover_bits

from cimc.frontend import import_onnx, policy_of

SMALL = ("lenet", "resnet_small", "vit_small")
FULL = ("resnet18", "vgg16", "vit_b32")
EXPECTED_LAYERS = {"lenet": 5, "resnet_small": 10, "resnet20": 22, "vit_small": 18, "resnet18": 21,
                   "vgg16": 16, "vit_b32": 98}
SHAPE_OPS = {"Shape", "Gather", "ConstantOfShape"}


def random_policy(name: str, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(2, 9, size=(models.num_layers(name), 2))


def test_registry() -> None:
    assert set(models.MODEL_NAMES) == set(EXPECTED_LAYERS)
    for name, count in EXPECTED_LAYERS.items():
        assert models.num_layers(name) == count == len(models.layer_names(name))
    assert models.input_shape("lenet") == (1, 28, 28)
    assert models.input_shape("vit_b32") == (3, 224, 224)


def test_vit_layer_order() -> None:
    names = models.layer_names("vit_small")
    assert names[:9] == ["patch_embed"] + [f"blocks.0.{n}" for n in (
        "attn.q", "attn.k", "attn.v", "attn.qk", "attn.av", "attn.proj", "mlp.fc1", "mlp.fc2")]
    assert names[-1] == "head"


@pytest.mark.parametrize("name", SMALL)
def test_layer_names_follow_forward_order(name: str) -> None:
    """Names are module paths, and the modules run in exactly that order."""
    model = models.build(name)
    modules = dict(model.named_modules())
    order: list[str] = []
    for layer in models.layer_names(name):
        modules[layer].register_forward_hook(lambda m, i, o, n=layer: order.append(n))
    model.eval()(torch.zeros(1, *models.input_shape(name)))
    assert order == models.layer_names(name)


@pytest.mark.parametrize("name", SMALL)
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_policy_roundtrip_small(name: str, seed: int, tmp_path) -> None:
    """build -> (seed 1: two QAT steps) -> export -> bits read back from the ONNX = the policy."""
    policy = random_policy(name, seed)
    model = models.build(name, policy, seed=seed)
    x = torch.randn(4, *models.input_shape(name), generator=torch.Generator().manual_seed(seed))
    y = torch.arange(4) % 10
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    for _ in range(2 if seed == 1 else 0):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    path = models.export_onnx(model, tmp_path / f"{name}.onnx")
    ops, bits = recover_bits(path)
    assert len(ops) == models.num_layers(name)
    np.testing.assert_array_equal(bits, policy)
    assert not op_types(path) & SHAPE_OPS
    # and cimc's importer (what `cimc lower` runs) recovers the same bits in the same order
    result = import_onnx(path)
    np.testing.assert_array_equal(policy_of(result), policy)


def test_resnet20_layout(tmp_path) -> None:
    """ResNet-20 for 28x28: stride-2 stem, three stages of three basic blocks at 14x14 / 7x7 /
    4x4, 1x1 shortcuts where the shape changes; 19 3x3 convs + 2 shortcuts + fc; its policy
    survives the export."""
    from cimc.rl.search_model import describe_model

    names = models.layer_names("resnet20")
    assert len(names) == 22 and names[0] == "conv1" and names[-1] == "fc"
    assert [n for n in names if "downsample" in n] == ["layer2.0.downsample.0", "layer3.0.downsample.0"]
    _, descs = describe_model("resnet20")
    convs = [d for d in descs if d.kind == "conv"]
    assert sum(d.n % 9 == 0 for d in convs) == 19 and len(convs) == 21
    assert sorted({d.P for d in convs}) == [16, 49, 196]  # 4x4, 7x7, 14x14
    assert [d.m for d in descs if "conv" in d.name and d.name.endswith("conv2")] == [16] * 3 + [32] * 3 + [64] * 3
    policy = random_policy("resnet20", 5)
    path = models.export_onnx(models.build("resnet20", policy), tmp_path / "r20.onnx")
    np.testing.assert_array_equal(recover_bits(path)[1], policy)


def test_export_matches_onnxruntime(tmp_path) -> None:
    ort = pytest.importorskip("onnxruntime")
    policy = random_policy("vit_small", 7)
    model = models.build("vit_small", policy).eval()
    model.train()(torch.randn(4, 1, 28, 28))  # collect activation statistics once
    model.eval()
    path = models.export_onnx(model, tmp_path / "v.onnx")
    x = torch.randn(1, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    got = sess.run(None, {"x": x.numpy()})[0]
    with torch.no_grad():
        want = model(x).numpy()
    np.testing.assert_allclose(got, want, atol=1e-4)


def test_int32_bias_and_per_channel(tmp_path) -> None:
    import onnx
    from onnx import numpy_helper

    model = models.build("lenet", per_channel=True)
    path = models.export_onnx(model, tmp_path / "pc.onnx")
    graph = onnx.load(str(path)).graph
    vals = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    dq = [n for n in graph.node if n.op_type == "DequantizeLinear"]
    int32 = [n for n in dq if vals[n.input[2]].dtype == np.int32]
    assert len(int32) == 5  # one int32 bias per layer
    vector_scales = [n for n in dq if n.input[0] in {c.output[0] for c in graph.node if c.op_type == "Clip"}
                     and vals[n.input[1]].size > 1]
    assert len(vector_scales) == 5  # per-channel weight scales
    np.testing.assert_array_equal(recover_bits(path)[1], np.full((5, 2), 8))


def test_build_is_seeded() -> None:
    a = models.build("lenet", seed=3).state_dict()
    b = models.build("lenet", seed=3).state_dict()
    c = models.build("lenet", seed=4).state_dict()
    assert torch.equal(a["conv1.weight"], b["conv1.weight"])
    assert not torch.equal(a["conv1.weight"], c["conv1.weight"])


def test_float_twin_has_the_same_weight_keys() -> None:
    fkeys = set(models.build("vit_small", quant=False).state_dict())
    qmodel = models.build("vit_small")
    qmodel.train()(torch.zeros(2, 1, 28, 28))  # activation scales appear once initialised
    qkeys = set(qmodel.state_dict())
    assert fkeys < qkeys
    assert all("quant." in k for k in qkeys - fkeys)


def test_one_bit_is_refused_with_the_layer_name() -> None:
    policy = np.full((5, 2), 4)
    policy[2, 0] = 1
    with pytest.raises(CimcError, match="layer 2 'fc1'.*weight bits 1"):
        models.build("lenet", policy)
    policy[2] = (4, 1)
    with pytest.raises(CimcError, match="'fc1'.*activation"):
        models.build("lenet", policy)


@pytest.mark.parametrize("bad,match", [
    (np.full((4, 2), 4), "4 layers, the model has 5"),
    (np.full((5, 3), 4), r"shape \(L, 2\)"),
    (np.full((5, 2), 9), "layer 0 'conv1': w_bits = 9"),
    (np.full((5, 2), 0), "outside 1..8"),
    (np.full((5, 2), 4.5), "integers"),
])
def test_bad_policies(bad: np.ndarray, match: str) -> None:
    with pytest.raises(CimcError, match=match):
        models.build("lenet", bad)


def test_unknown_model() -> None:
    for call in (lambda: models.build("alexnet"), lambda: models.layer_names("alexnet"),
                 lambda: models.input_shape("alexnet")):
        with pytest.raises(CimcError, match="unknown model 'alexnet'"):
            call()


def test_zoo_onnx_caches(tmp_path) -> None:
    policy = random_policy("lenet", 5)
    first = models.zoo_onnx("lenet", policy, cache_dir=tmp_path)
    stamp = first.stat().st_mtime_ns
    again = models.zoo_onnx("lenet", policy, cache_dir=tmp_path)
    assert again == first and again.stat().st_mtime_ns == stamp
    other = models.zoo_onnx("lenet", None, cache_dir=tmp_path)
    assert other != first
    np.testing.assert_array_equal(recover_bits(first)[1], policy)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_zoo_onnx_env_cache_dir(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("CIMC_CACHE_DIR", str(tmp_path / "c"))
    path = models.zoo_onnx("lenet", seed=1)
    assert path.parent == tmp_path / "c"


@pytest.mark.slow
@pytest.mark.parametrize("name", FULL)
def test_full_size_build_and_export(name: str, tmp_path) -> None:
    """Seeded random weights; one random policy, bits read back; ImageNet shapes."""
    policy = random_policy(name, 11)
    model = models.build(name, policy)
    path = models.export_onnx(model, tmp_path / f"{name}.onnx")
    ops, bits = recover_bits(path)
    assert len(ops) == EXPECTED_LAYERS[name]
    np.testing.assert_array_equal(bits, policy)
    np.testing.assert_array_equal(policy_of(import_onnx(path)), policy)
    assert not op_types(path) & SHAPE_OPS
    if name == "vit_b32":
        assert ops.count("MatMul") == 12 * 8 and ops[0] == "Conv" and ops[-1] == "Gemm"
