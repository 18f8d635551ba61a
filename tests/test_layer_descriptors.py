"""Issue 11 item 5: layer descriptors (m, n, P, H) per inference, whatever the axis order.

``cimc report``'s per-layer (m, n, P, H) is compared with a derivation written here from the ONNX
graph alone (onnx shape inference and numpy, nothing of cimc; ``N`` is the batch the file was
exported with): per Conv, ``m = O/G, n = C/G*kh*kw, P = N_out*Ho*Wo/N, H = G``; per Gemm / MatMul
with a constant weight, ``m = out features, n = K, P = rows of the run / N, H = 1``; per MatMul
of two activations, ``m = cols, n = K, P = rows of one operand, H = written operands of the run
/ N``. Brevitas' ``QuantMultiheadAttention`` computes sequence-first and folds the heads into the
leading axis: its projections must count the tokens and QK^T / AV the heads, the same at batch
1 and 3. Must-show 2: every corpus model, exported by its producer at batch 1 and at batch 3
(:func:`corpus.build`), reports the derivation's descriptors, the same at both batches; a
sequence-first input is imported with ``--batch-axis 1``.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import onnx
import pytest

import corpus
from cimc.frontend import import_onnx
from cimc.report import xbar_report

def _static_names(graph: onnx.GraphProto) -> set[str]:
    """Values computed from initializers and constants alone (weights and their DQ chains)."""
    static = {init.name for init in graph.initializer}
    for node in graph.node:
        ins = [i for i in node.input if i]
        if node.op_type == "Constant" or (ins and all(i in static for i in ins)):
            static.update(node.output)
    return static


#: Ops whose output has their first input's shape (a weight's DQ chain).
_SAME_SHAPE = ("DequantizeLinear", "QuantizeLinear", "Clip", "Identity")


def _inferred(model: onnx.ModelProto) -> dict[str, list[int]]:
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)
    shapes = {i.name: list(i.dims) for i in model.graph.initializer}
    for vi in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]:
        dims = vi.type.tensor_type.shape.dim
        if vi.type.tensor_type.HasField("shape") and all(d.HasField("dim_value") for d in dims):
            shapes[vi.name] = [d.dim_value for d in dims]
    return shapes


def graph_shapes(model: onnx.ModelProto, needed: list[str]) -> dict[str, list[int]]:
    """The static shapes of ``needed`` by onnx shape inference (strict, with data propagation);
    where it leaves a weight's DQ open (an IR-3 file), that DQ gets its input's shape and the
    inference runs again; a Reshape target computed from Shape ops that it cannot follow is
    found by running the graph with onnx's reference evaluator on zeros."""
    shapes = _inferred(model)
    open_ = [n for n in model.graph.node if n.op_type in _SAME_SHAPE and n.output[0] not in shapes
             and n.input[0] in shapes]
    if open_:
        for node in open_:
            model.graph.value_info.append(onnx.helper.make_tensor_value_info(
                node.output[0], onnx.TensorProto.FLOAT, shapes[node.input[0]]))
        shapes = _inferred(model)
    if all(n in shapes for n in needed):
        return shapes
    from onnx.reference import ReferenceEvaluator

    inits = {i.name for i in model.graph.initializer}
    feeds = {vi.name: np.zeros([d.dim_value for d in vi.type.tensor_type.shape.dim], np.float32)
             for vi in model.graph.input if vi.name not in inits}
    results = ReferenceEvaluator(model).run(None, feeds, intermediate=True)
    return {**shapes, **{k: list(np.shape(v)) for k, v in results.items()}}


def derive(path: Path, batch: int) -> dict[str, tuple[int, int, int, int]]:
    """(m, n, P, H) per Conv / Gemm / MatMul node, from the graph's shapes (``batch``: the
    inferences of one run, the batch the file was exported with)."""
    model = onnx.load(str(path))
    for vi in [*model.graph.input, *model.graph.output]:  # a symbolic batch: at ``batch``
        for d in vi.type.tensor_type.shape.dim:
            if d.HasField("dim_param"):
                d.dim_value = batch
    del model.graph.value_info[:]  # every intermediate shape from the inference
    static = _static_names(model.graph)
    nodes = [nd for nd in model.graph.node if nd.op_type in ("Conv", "Gemm", "MatMul")]
    shapes = graph_shapes(model, [n for nd in nodes for n in (nd.input[0], nd.input[1], nd.output[0])])
    out = {}
    for node in nodes:
        a, b, y = shapes[node.input[0]], shapes[node.input[1]], shapes[node.output[0]]
        attrs = {at.name: onnx.helper.get_attribute_value(at) for at in node.attribute}
        if node.op_type == "Conv":
            g = attrs.get("group", 1)
            o, cg, kh, kw = b
            out[node.name] = (o // g, cg * kh * kw, y[0] * y[2] * y[3] // batch, g)
        elif node.input[1] in static:
            k = b[1] if node.op_type == "Gemm" and attrs.get("transB") else b[-2] if len(b) > 1 else b[0]
            out[node.name] = (y[-1], k, math.prod(y[:-1]) // batch, 1)
        else:
            out[node.name] = (b[-1], b[-2], a[-2], math.prod(b[:-2]) // batch)
    return out


def reported(module, batch: int = 1) -> dict[str, tuple[int, int, int, int]]:
    rep = xbar_report(module, baseline=False, batch=batch)
    return {r["name"]: (r["m"], r["n"], r["P"], r["H"]) for r in rep["layers"] if r["kind"] != "host"}


def _import(model: corpus.CorpusModel):
    """The corpus file as a user imports it (``--batch-axis 1`` for a sequence-first input)."""
    return import_onnx(model.path, batch_axis=model.batch_axis or None)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(corpus.ENTRIES))
def test_corpus_descriptors_from_the_graph(name: str, capsys) -> None:
    """Must-show 2: at batch 1 and 3 (the producer's export at each), the report's (m, n, P, H)
    equal the derivation from the graph, and batch 3's equal batch 1's; a run of 3 inputs of the
    batch-1 file reports the same per inference."""
    pytest.importorskip("qonnx", reason="the corpus has qonnx's models (pip install '.[qonnx]')")
    rows, lines = {}, []
    for batch in (1, 3):
        model = corpus.build(name, batch)
        assert model.batch == batch
        path = corpus.reference_path(model)  # QONNX: the QCDQ file onnxruntime runs (same names)
        want = derive(path, batch)
        module = _import(model).module
        rows[batch] = reported(module)
        assert rows[batch] == {k: want[k] for k in rows[batch]}, (name, batch)
        assert len(want) - len(rows[batch]) == len(model.host)  # the host layers: no descriptor
        lines.append(f"batch {batch} ({model.path.name}, input {list(model.input_shape)}, batch "
                     f"axis {model.batch_axis}): {len(rows[batch])} layers == derivation")
    assert rows[3] == rows[1]
    assert reported(_import(corpus.build(name, 1)).module, batch=3) == rows[1]
    lines.append(f"batch 3 == batch 1 on every layer, e.g. {next(iter(rows[1].items()))}")
    with capsys.disabled():
        print(f"\n[{name}] " + "; ".join(lines), end="")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["qmha_sf", "graph_attn_sf", "qmha_bf", "graph_attn_bf"])
def test_sequence_first_input_is_warned_not_silent(name: str) -> None:
    """What cimc cannot derive is said: a sequence-first graph input without ``--batch-axis``
    makes the attention products not split into axis 0's inferences, and the report warns,
    naming the layer and the option; the batch-first twin splits and gets no warning."""
    result = import_onnx(corpus.build(name).path)
    warnings = xbar_report(result.module, baseline=False)["warnings"]
    odd = [w for w in warnings if "do not split into" in w]
    if name.endswith("_sf"):
        assert len(odd) == 1 and '"/mha/MatMul"' in odd[0] and "[5, 2, 16]" in odd[0], warnings
        assert "--batch-axis" in odd[0]
    else:
        assert odd == [], warnings


#: Corpus models whose graph takes another batch once its input's axis 0 is made symbolic (the
#: others bake the batch into Reshape shapes: Brevitas' flatten / MHA exports, ShuffleNet).
REBATCHABLE = ["graph_cnn", "ort_residual_block", "ort_light_squeezenet", "ort_torch_cnn",
               "qonnx_espcn_nn_resize", "qonnx_espcn_nn_resize_qcdq", "qonnx_espcn_subpixel"]


@pytest.mark.slow
@pytest.mark.parametrize("name", REBATCHABLE)
def test_corpus_descriptors_at_batch_3(name: str, tmp_path: Path) -> None:
    """The same models with a symbolic batch imported at batch 3: (m, n, P, H) equal the graph's
    derivation at batch 3 and the ones at batch 1 (cost per inference does not move)."""
    pytest.importorskip("qonnx", reason="the corpus has qonnx's models (pip install '.[qonnx]')")
    model = corpus.build(name)
    graph = onnx.load(str(corpus.reference_path(model)))
    inits = {i.name for i in graph.graph.initializer}
    for vi in [*graph.graph.input, *graph.graph.output]:
        if vi.name not in inits:
            vi.type.tensor_type.shape.dim[0].dim_param = "batch"
    del graph.graph.value_info[:]
    path = tmp_path / f"{name}.onnx"
    onnx.save(graph, str(path))
    at1 = reported(import_onnx(path, batch=1).module)
    at3 = reported(import_onnx(path, batch=3).module)
    want = derive(path, 3)
    assert at3 == {k: want[k] for k in at3}
    assert at3 == at1


@pytest.mark.parametrize("seed", [0, 3])
def test_mha_heads_and_tokens_at_batch_1_and_3(seed: int, tmp_path: Path) -> None:
    """QuantMultiheadAttention (sequence-first inside, heads folded into the leading axis):
    projections P = tokens, QK^T and AV H = heads and P = tokens, equal to the graph's
    derivation, and the same at batch 1 and 3."""
    import brevitas_zoo

    case = brevitas_zoo.mha_case(seed, dynamic_batch=True)
    path = brevitas_zoo.export(case, tmp_path / "mha.onnx")
    heads, tokens = case.model.mha.num_heads, case.x.shape[1]
    rows = {}
    for batch in (1, 3):
        rows[batch] = reported(import_onnx(path, batch=batch).module)
        assert rows[batch] == {k: v for k, v in derive(path, batch).items() if k in rows[batch]}
    assert rows[1] == rows[3]
    kinds = [(p, h) for (_, _, p, h) in rows[1].values()]
    assert kinds == [(tokens, 1), (tokens, heads), (tokens, heads), (tokens, 1)], rows[1]


def test_mha_xbar_equals_cimq_at_batch_3(tmp_path: Path) -> None:
    """The regrouped rows compute the same integers: xbar (fast and bit-serial) == cimq."""
    import brevitas_zoo
    from cimc.exec import run_at_level
    from cimc.target.hw import Hardware

    case = brevitas_zoo.mha_case(3, dynamic_batch=True)
    path = brevitas_zoo.export(case, tmp_path / "mha.onnx")
    module = import_onnx(path, batch=3).module
    x = np.random.default_rng(0).standard_normal((3, *case.x.shape[1:])).astype(np.float32)
    ref = run_at_level(module, "cimq", [x]).outputs
    for fast in (True, False):
        out = run_at_level(module, "xbar", [x], hw=Hardware(rows=16, cols=16), fast=fast).outputs
        for a, b in zip(out, ref):
            np.testing.assert_array_equal(a, b)


XBAR_EQUAL: dict[str, tuple[int, int]] = {}


@pytest.mark.slow  # the corpus is built on first use (~100 s); each model then takes < 30 s
@pytest.mark.parametrize("name", list(corpus.ENTRIES))
def test_corpus_xbar_equals_cimq(name: str, capsys) -> None:
    """Must-show 1: ``--level xbar`` equals ``--level cimq`` integer for integer on every corpus
    model (the whole input: one image or the model's own batch), on the exact fast path and
    bit-serially, host layers and zero points included; every crossbar layer's integers of the
    bit-serial run equal the fast path's."""
    pytest.importorskip("qonnx", reason="the corpus has qonnx's models (pip install '.[qonnx]')")
    from cimc.exec import lowered_copy, run_at_level
    from cimc.exec.xbar_exec import run_xbar
    from cimc.target.hw import Hardware

    model = corpus.build(name)
    module = import_onnx(model.path).module
    x = corpus.input_for(model)
    ref = run_at_level(module, "cimq", [x]).outputs
    program = lowered_copy(module, "xbar", hw=Hardware())
    equal, layers = {}, {}
    for fast in (True, False):
        res = run_xbar(program, [x], hw=Hardware(), fast=fast, record_layers=True)
        for a, b in zip(res.outputs, ref):
            np.testing.assert_array_equal(a, b)
        equal[fast] = sum(int((a == b).sum()) for a, b in zip(res.outputs, ref))
        layers[fast] = res.report["_layer_outputs"]
    assert layers[True].keys() == layers[False].keys()
    for key, a in layers[True].items():
        np.testing.assert_array_equal(np.asarray(a), np.asarray(layers[False][key]), err_msg=key)
    total = sum(a.size for a in ref)
    inner = sum(np.asarray(a).size for a in layers[True].values())
    XBAR_EQUAL[name] = (total, equal[True], equal[False])
    with capsys.disabled():
        print(f"\n[{name}] input {list(x.shape)}: xbar == cimq on {equal[True]}/{total} output "
              f"integers (fast), {equal[False]}/{total} (bit-serial); bit-serial == fast on "
              f"{inner} integers of {len(layers[True])} crossbar layers", end="")


def test_zz_corpus_xbar_table(capsys) -> None:
    """Prints how many corpus models run ``--level xbar`` equal to ``cimq`` (runs after them)."""
    if not XBAR_EQUAL:
        pytest.skip("no corpus model ran at xbar in this session (select test_corpus_xbar_equals_cimq)")
    fast = sum(1 for t, f, _ in XBAR_EQUAL.values() if f == t)
    serial = sum(1 for t, _, b in XBAR_EQUAL.values() if b == t)
    with capsys.disabled():
        print(f"\ncorpus at --level xbar == cimq: {fast}/{len(corpus.ENTRIES)} fast path, "
              f"{serial}/{len(corpus.ENTRIES)} bit-serial ({len(XBAR_EQUAL)} ran)")
    assert fast == serial == len(XBAR_EQUAL)


def _tiny_vit(heads: int):
    """Patch embedding (a 4x4 stride-4 convolution: 4 tokens of 16 features), Brevitas'
    ``QuantMultiheadAttention`` (batch-first; it computes sequence-first inside and folds the
    heads into the leading axis), a classifier on the flattened tokens."""
    import brevitas.nn as qnn
    import torch
    from brevitas.quant import Int8ActPerTensorFloat
    from torch import nn

    class TinyVit(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inp = qnn.QuantIdentity(Int8ActPerTensorFloat, bit_width=8)
            self.patch = qnn.QuantConv2d(3, 16, 4, stride=4, weight_bit_width=4)
            self.tok = qnn.QuantIdentity(Int8ActPerTensorFloat, bit_width=6)
            self.mha = qnn.QuantMultiheadAttention(16, heads, batch_first=True)
            self.out = qnn.QuantIdentity(Int8ActPerTensorFloat, bit_width=8)
            self.head = qnn.QuantLinear(64, 10, bias=False, weight_bit_width=5)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            t = self.tok(self.patch(self.inp(x)).flatten(2).transpose(1, 2))
            a = self.out(self.mha(t, t, t, need_weights=False)[0])
            return self.head(a.flatten(1))

    torch.manual_seed(heads)
    model = TinyVit().eval()
    x = torch.randn(1, 3, 8, 8)
    with torch.no_grad():
        model(x)
    return model, x


@pytest.mark.parametrize("heads", [2, 4])
def test_vit_with_quant_mha_counts_heads_tokens_and_closed_form(heads: int, tmp_path: Path) -> None:
    """Must-show 3: a ViT built with QuantMultiheadAttention reports P = tokens for every
    projection, H = heads and P = tokens for QK^T and AV, and its counted cycles (bit-serial
    run) equal the closed form of those descriptors."""
    import brevitas_zoo
    from cimc.exec.xbar_exec import run_xbar
    from cimc.pipeline import lower
    from cimc.target import LayerDesc, layer_cost
    from cimc.target.hw import Hardware

    model, x = _tiny_vit(heads)
    case = brevitas_zoo.Case("vit", model, x, [], [], opset=19)
    path = brevitas_zoo.export(case, tmp_path / "vit.onnx")
    module = import_onnx(path).module
    tokens, hd = 4, 16 // heads
    want = [(16, 48, tokens, 1), (48, 16, tokens, 1), (tokens, hd, tokens, heads),
            (hd, tokens, tokens, heads), (16, 16, tokens, 1), (10, 64, 1, 1)]
    got = list(reported(module).values())
    assert got == want
    assert list(derive(path, 1).values()) == want
    hw = Hardware(rows=32, cols=32)
    lower(module, "xbar", hw=hw)
    res = run_xbar(module, [x.numpy()], hw=hw, fast=False)
    for row, (m, n, p, h) in zip(res.report["layers"], want, strict=True):
        cost = layer_cost(LayerDesc(row["name"], m, n, p, h, row["kind"]), row["w_bits"], row["a_bits"], hw)
        assert row["executes"] == cost.executes and row["writes"] == cost.writes
        assert row["adc_conversions"] == cost.adc_conversions
        assert {k: row[k] for k in cost.counters.as_dict()} == cost.counters.as_dict()
