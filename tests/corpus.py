"""A corpus of quantized ONNX models that nobody on the cimc team wrote (test helper).

Every model is made by its producer's own tools, from random weights, when a test first asks for
it; the files are cached under ``$CIMC_CACHE_DIR/corpus-v1`` (deterministic: fixed seeds).

Producers (:data:`PRODUCERS`):

* ``brevitas_examples``: networks from Brevitas' example zoo (``bnn_pynq`` CNV / SFC / TFC at 2-bit
  weights and activations), exported as QCDQ;
* ``brevitas_mha``: Brevitas' ``QuantMultiheadAttention`` (both ``batch_first`` settings);
* ``brevitas_graph``: plain torch modules quantized by Brevitas' graph utilities
  (``brevitas.graph.quantize``), exported as QCDQ;
* ``onnxruntime``: onnxruntime's ``quantize_static`` (QDQ: uint8 activations with zero points,
  per-channel int8 weights, int32 biases) applied to float models: the ONNX zoo's MNIST CNN that
  ``qonnx`` ships, ONNX's own light SqueezeNet and ShuffleNet (random weights in place of their
  ``ConstantOfShape`` placeholders), ``qonnx``'s residual block, and torch-exported float nets;
* ``qonnx``: the pretrained ESPCN super-resolution network ``qonnx`` ships, in QONNX form and as
  converted to QCDQ by ``qonnx``'s ``QuantToQCDQ``.

``host`` names the layers of a model that run on the host (issue 11's host fallback: the first
layer takes the float image); the corpus test checks that exactly those are host layers.
"""

from __future__ import annotations

import copy
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

VERSION = "corpus-v1"
PRODUCERS = ("brevitas_examples", "brevitas_mha", "brevitas_graph", "onnxruntime", "qonnx")


@dataclass(frozen=True)
class CorpusModel:
    name: str
    producer: str
    path: Path
    input_shape: tuple[int, ...]
    #: the Conv / Gemm / MatMul nodes expected on the host (the host fallback), in program order
    host: tuple[str, ...] = ()
    #: inputs are images in [0, 1] (else standard normal)
    unit_input: bool = False
    #: the input axis that is the batch (1: sequence-first ``[tokens, batch, dim]``)
    batch_axis: int = 0

    @property
    def batch(self) -> int:
        return self.input_shape[self.batch_axis]


def cache_dir() -> Path:
    base = os.environ.get("CIMC_CACHE_DIR") or Path.home() / ".cache" / "cimc" / "models"
    path = Path(base) / VERSION
    path.mkdir(parents=True, exist_ok=True)
    return path


def _at(shape: tuple[int, ...], batch: int | None, axis: int = 0) -> tuple[int, ...]:
    """``shape`` with ``batch`` on ``axis`` (unchanged for None)."""
    return shape if batch is None else (*shape[:axis], batch, *shape[axis + 1:])


def _file(name: str, batch: int | None) -> Path:
    """The cached file of ``name`` (``name_b3.onnx``: the same model exported at batch 3)."""
    return cache_dir() / (f"{name}.onnx" if batch is None else f"{name}_b{batch}.onnx")


def _cached(path: Path, make: Callable[[Path], None]) -> Path:
    if not path.is_file():
        tmp = path.with_name(path.stem + ".part.onnx")
        make(tmp)
        tmp.replace(path)
    return path


def input_for(model: CorpusModel, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if model.unit_input:
        return rng.random(model.input_shape, dtype=np.float32)
    return rng.standard_normal(model.input_shape).astype(np.float32)


# --------------------------------------------------------------------------------------------
# Producers
# --------------------------------------------------------------------------------------------


def _brevitas_export(module, x, path: Path, opset: int = 13) -> None:
    import torch
    from brevitas.export import export_onnx_qcdq

    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        export_onnx_qcdq(copy.deepcopy(module).eval(), args=x, export_path=str(path),
                         dynamo=False, opset_version=opset)


def _randomize_bn(module, seed: int) -> None:
    """Random running statistics and affine parameters for every BatchNorm (the examples'
    initial ones are the identity)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
            if m.affine:
                m.weight.data.copy_(torch.rand(n, generator=gen) + 0.5)
                m.bias.data.copy_(torch.randn(n, generator=gen) * 0.1)


def bnn_pynq(name: str, shape: tuple[int, ...], batch: int | None = None) -> CorpusModel:
    shape = _at(shape, batch)

    def make(path: Path) -> None:
        import torch
        from brevitas_examples.bnn_pynq.models import model_with_cfg

        torch.manual_seed(0)
        model = model_with_cfg(name, False)[0].eval()
        _randomize_bn(model, 0)
        _brevitas_export(model, torch.rand(*shape), path)

    path = _cached(_file(name, batch), make)
    return CorpusModel(name, "brevitas_examples", path, shape, unit_input=True)


def brevitas_example_float_input(name: str, cfg: str, shape: tuple[int, ...], host: str,
                                 batch: int | None = None) -> CorpusModel:
    """Brevitas example networks whose first layer takes the float image (host fallback)."""
    shape = _at(shape, batch)

    def make(path: Path) -> None:
        import torch

        torch.manual_seed(0)
        if name.startswith("resnet18"):
            from brevitas_examples.bnn_pynq.models import model_with_cfg

            model = model_with_cfg(cfg, False)[0].eval()
        else:
            from brevitas_examples.imagenet_classification.models import model_with_cfg

            model = model_with_cfg(cfg, None)[0].eval()
        _randomize_bn(model, 0)
        _brevitas_export(model, torch.rand(*shape), path)

    path = _cached(_file(name, batch), make)
    return CorpusModel(name, "brevitas_examples", path, shape, unit_input=True, host=(host,))


def qmha(batch_first: bool, batch: int | None = None) -> CorpusModel:
    """Brevitas' QuantMultiheadAttention with quantized input, 4-bit projections."""
    axis = 0 if batch_first else 1
    shape = _at((2, 5, 16) if batch_first else (5, 2, 16), batch, axis)

    def make(path: Path) -> None:
        import brevitas.nn as qnn
        import torch

        class Block(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.mha = qnn.QuantMultiheadAttention(
                    16, 2, batch_first=batch_first, in_proj_weight_bit_width=4,
                    out_proj_weight_bit_width=5)

            def forward(self, x):
                return self.mha(x, x, x, need_weights=False)[0]

        torch.manual_seed(1)
        _brevitas_export(Block().eval(), torch.randn(*shape), path)

    tag = "bf" if batch_first else "sf"
    path = _cached(_file(f"qmha_{tag}", batch), make)
    return CorpusModel(f"qmha_{tag}", "brevitas_mha", path, shape, batch_axis=axis)


def ort_quantized(model: onnx.ModelProto | Path, dst: Path, input_shape: list[int], *,
                  per_channel: bool = True, seed: int = 0, samples: int = 4,
                  unit: bool = False) -> Path:
    """onnxruntime's ``quantize_static`` in QDQ format (uint8 activations with zero points,
    int8 weights, int32 biases), calibrated on random inputs."""
    from onnxruntime import quantization as q

    src = model if isinstance(model, Path) else dst.with_name(dst.stem + ".float.onnx")
    if not isinstance(model, Path):
        onnx.save(model, str(src))
    name = onnx.load(str(src), load_external_data=False).graph.input[0].name
    rng = np.random.default_rng(seed)

    def sample() -> np.ndarray:
        if unit:
            return rng.random(input_shape, dtype=np.float32)
        return rng.standard_normal(input_shape).astype(np.float32)

    class Reader(q.CalibrationDataReader):
        def __init__(self) -> None:
            self.data = iter([{name: sample()} for _ in range(samples)])

        def get_next(self):
            return next(self.data, None)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        q.quantize_static(str(src), str(dst), Reader(), quant_format=q.QuantFormat.QDQ,
                          activation_type=q.QuantType.QUInt8, weight_type=q.QuantType.QInt8,
                          per_channel=per_channel)
    return dst


def _qonnx_data(rel: str) -> Path:
    import qonnx

    return Path(qonnx.__file__).parent / "data" / "onnx" / rel


def ort_mnist_conv(batch: int | None = None) -> CorpusModel:
    """The ONNX model zoo's MNIST CNN (float, opset 8, shipped by qonnx) through onnxruntime."""
    shape = _at((1, 1, 28, 28), batch)

    def make(path: Path) -> None:
        from onnx import version_converter

        model = version_converter.convert_version(onnx.load(str(_qonnx_data(
            "mnist-conv/model.onnx"))), 13)
        _ort_quantize_model(_rebatched(model, batch), path, shape, unit=True)

    path = _cached(_file("ort_mnist_conv", batch), make)
    return CorpusModel("ort_mnist_conv", "onnxruntime", path, shape, unit_input=True)


def _rebatched(model: onnx.ModelProto, batch: int | None) -> onnx.ModelProto:
    """The float ``model`` at ``batch`` (as it is for None: the corpus' own file)."""
    from corpus_rebatch import rebatch

    return model if batch is None else rebatch(model, batch)


def _ort_quantize_model(model: onnx.ModelProto, path: Path, shape, *, unit: bool = False) -> None:
    src = path.with_name(path.stem + ".float.onnx")
    onnx.save(model, str(src))
    ort_quantized(src, path, list(shape), unit=unit)
    src.unlink()


def ort_residual_block(batch: int | None = None) -> CorpusModel:
    """qonnx's float residual block (Conv, Relu, Add, MaxPool) through onnxruntime."""
    shape = _at((1, 1, 200, 200), batch)

    def make(path: Path) -> None:
        model = onnx.load(str(_qonnx_data("residual_block_clean.onnx")))
        _ort_quantize_model(_rebatched(model, batch), path, shape)

    path = _cached(_file("ort_residual_block", batch), make)
    return CorpusModel("ort_residual_block", "onnxruntime", path, shape)


def _light_with_weights(name: str, seed: int) -> onnx.ModelProto:
    """ONNX's light model ``name`` with random weights for its ``ConstantOfShape`` placeholders,
    converted to opset 13."""
    from onnx import backend, version_converter

    folder = Path(backend.__file__).parent / "test" / "data" / "light"
    model = onnx.load(str(folder / f"light_{name}.onnx"))
    graph = model.graph
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    rng = np.random.default_rng(seed)
    keep, new_inits = [], []
    for node in graph.node:
        if node.op_type != "ConstantOfShape":
            keep.append(node)
            continue
        shape = tuple(int(d) for d in inits[node.input[0]])
        if len(shape) > 1:
            fan_in = int(np.prod(shape[1:]))
            arr = rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)
        else:
            arr = rng.random(shape) + 0.5  # scales, biases, means and variances: positive
        new_inits.append(numpy_helper.from_array(arr.astype(np.float32), node.output[0]))
    del graph.node[:]
    graph.node.extend(keep)
    graph.initializer.extend(new_inits)
    names = {i.name for i in graph.initializer}
    real_inputs = [vi for vi in graph.input if vi.name not in names]
    del graph.input[:]
    graph.input.extend(real_inputs)
    model.ir_version = 7  # initializers need not be graph inputs from IR 4 on
    return version_converter.convert_version(model, 13)


def ort_light(name: str, batch: int | None = None) -> CorpusModel:
    shape = _at((1, 3, 224, 224), batch)

    def make(path: Path) -> None:
        model = _rebatched(_light_with_weights(name, 0), batch)
        _ort_quantize_model(model, path, shape, unit=True)

    path = _cached(_file(f"ort_light_{name}", batch), make)
    return CorpusModel(f"ort_light_{name}", "onnxruntime", path, shape, unit_input=True)


def _torch_float_export(module, x, path: Path) -> None:
    import torch

    fast = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)  # export the layer's ops, not its fused kernel
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(module.eval(), (x,), str(path), dynamo=False, opset_version=17,
                              input_names=["x"])
    finally:
        torch.backends.mha.set_fastpath_enabled(fast)


def ort_torch(name: str, batch: int | None = None) -> CorpusModel:
    """torch's own modules exported as float ONNX (an attention block of LayerNorm,
    MultiheadAttention and Linear; a CNN), then onnxruntime's quantizer."""
    shapes = {"transformer": (1, 6, 16), "cnn": (1, 3, 16, 16)}
    shape = _at(shapes[name], batch)

    def make(path: Path) -> None:
        import torch
        from torch import nn

        torch.manual_seed(2)
        if name == "transformer":
            module = _attention_block(batch_first=True, need_weights=True)
        else:
            module = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                   nn.MaxPool2d(2), nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(),
                                   nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))
            _randomize_bn(module, 2)
        src = path.with_name(path.stem + ".float.onnx")
        _torch_float_export(module, torch.randn(*shape), src)
        ort_quantized(src, path, list(shape))
        src.unlink()

    path = _cached(_file(f"ort_torch_{name}", batch), make)
    return CorpusModel(f"ort_torch_{name}", "onnxruntime", path, shape)


def qonnx_espcn(converted: bool, variant: str = "nn_resize", batch: int | None = None
                ) -> CorpusModel:
    """qonnx's pretrained ESPCN (BSD300, x3): the QONNX file, or qonnx's own QCDQ conversion
    (``cleanup_model``, ``InferShapes``, ``QuantToQCDQ``). At another batch: the file with that
    batch on its input and output, every other shape re-derived (qonnx's conversion infers them;
    the QCDQ file is checked by onnx shape inference)."""
    shape = _at((1, 3, 128, 128), batch)
    src = _qonnx_data(f"bsd300x3-espcn/{variant}/quant_model.onnx")
    host = () if variant == "nn_resize" else ("Conv_5",)  # subpixel: a float conv
    if not converted:
        if batch is not None:
            from corpus_rebatch import rebatch

            src = _cached(_file(f"qonnx_espcn_{variant}", batch), lambda p: onnx.save(
                rebatch(onnx.load(str(src)), batch, float_model=False, check=False), str(p)))
        return CorpusModel(f"qonnx_espcn_{variant}", "qonnx", src, shape, host=host,
                           unit_input=True)

    def make(path: Path) -> None:
        from qonnx.core.modelwrapper import ModelWrapper
        from qonnx.transformation.infer_shapes import InferShapes
        from qonnx.transformation.qonnx_to_qcdq import QuantToQCDQ
        from qonnx.util.cleanup import cleanup_model

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            wrapper = cleanup_model(ModelWrapper(str(src)))
            wrapper = wrapper.transform(InferShapes()).transform(QuantToQCDQ())
        model = wrapper.model
        if batch is not None:
            from corpus_rebatch import rebatch

            model = rebatch(model, batch, float_model=False)
        onnx.save(model, str(path))

    path = _cached(_file(f"qonnx_espcn_{variant}_qcdq", batch), make)
    return CorpusModel(f"qonnx_espcn_{variant}_qcdq", "qonnx", path, shape, host=host,
                       unit_input=True)


def _attention_block(batch_first: bool, need_weights: bool = False):
    import torch
    from torch import nn

    class Block(nn.Module):
        """A pre-norm attention block of torch's own layers."""

        def __init__(self) -> None:
            super().__init__()
            self.ln = nn.LayerNorm(16)
            self.mha = nn.MultiheadAttention(16, 2, batch_first=batch_first)
            self.ff1 = nn.Linear(16, 32)
            self.ff2 = nn.Linear(32, 16)

        def forward(self, x):
            h = self.ln(x)
            a, _ = self.mha(h, h, h, need_weights=need_weights)
            x = x + a
            return x + self.ff2(torch.relu(self.ff1(x)))

    return Block()


def brevitas_graph(name: str, batch: int | None = None) -> CorpusModel:
    """Plain torch modules quantized by Brevitas' graph utilities: ``quantize`` of the traced
    CNN, ``layerwise_quantize`` (MultiheadAttention -> QuantMultiheadAttention, Linear ->
    QuantLinear) of an attention block in both layouts."""
    axis = 1 if name == "attn_sf" else 0
    shape = _at({"cnn": (1, 3, 16, 16), "attn_bf": (2, 5, 16), "attn_sf": (5, 2, 16)}[name], batch, axis)

    def make(path: Path) -> None:
        import torch
        from brevitas.graph.quantize import layerwise_quantize, quantize
        from torch import nn

        torch.manual_seed(3)
        if name == "cnn":
            from brevitas.fx import brevitas_symbolic_trace

            cnn = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                nn.MaxPool2d(2), nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(),
                                nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10)).eval()
            _randomize_bn(cnn, 3)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model = quantize(brevitas_symbolic_trace(cnn)).eval()
        else:
            model = layerwise_quantize(_attention_block(name == "attn_bf").eval()).eval()
        _brevitas_export(model, torch.randn(*shape), path, opset=17)

    path = _cached(_file(f"graph_{name}", batch), make)
    return CorpusModel(f"graph_{name}", "brevitas_graph", path, shape, batch_axis=axis)


#: name -> builder of every corpus model, in a stable order; ``batch``: the same model
#: exported at that batch (None: the corpus' own file)
ENTRIES: dict[str, Callable[..., CorpusModel]] = {
    "cnv_2w2a": lambda batch=None: bnn_pynq("cnv_2w2a", (1, 3, 32, 32), batch),
    "sfc_2w2a": lambda batch=None: bnn_pynq("sfc_2w2a", (1, 1, 28, 28), batch),
    "tfc_2w2a": lambda batch=None: bnn_pynq("tfc_2w2a", (1, 1, 28, 28), batch),
    "qmha_bf": lambda batch=None: qmha(True, batch),
    "qmha_sf": lambda batch=None: qmha(False, batch),
    "graph_cnn": lambda batch=None: brevitas_graph("cnn", batch),
    "graph_attn_bf": lambda batch=None: brevitas_graph("attn_bf", batch),
    "graph_attn_sf": lambda batch=None: brevitas_graph("attn_sf", batch),
    "ort_mnist_conv": ort_mnist_conv,
    "ort_residual_block": ort_residual_block,
    "ort_light_squeezenet": lambda batch=None: ort_light("squeezenet", batch),
    "ort_light_shufflenet": lambda batch=None: ort_light("shufflenet", batch),
    "ort_torch_transformer": lambda batch=None: ort_torch("transformer", batch),
    "ort_torch_cnn": lambda batch=None: ort_torch("cnn", batch),
    "qonnx_espcn_nn_resize": lambda batch=None: qonnx_espcn(False, batch=batch),
    "qonnx_espcn_nn_resize_qcdq": lambda batch=None: qonnx_espcn(True, batch=batch),
    # the first layer takes the float image: it runs on the host (issue 11's host fallback)
    "resnet18_4w4a": lambda batch=None: brevitas_example_float_input(
        "resnet18_4w4a", "resnet18_4w4a", (1, 3, 32, 32), "/conv1/Conv", batch),
    "mobilenet_v1_4b": lambda batch=None: brevitas_example_float_input(
        "mobilenet_v1_4b", "quant_mobilenet_v1_4b", (1, 3, 224, 224),
        "/features/init_block/conv/Conv", batch),
    "qonnx_espcn_subpixel": lambda batch=None: qonnx_espcn(False, "subpixel", batch),
}


def build(name: str, batch: int | None = None) -> CorpusModel:
    """One corpus model (built and cached on first use); ``batch``: the same model exported at
    that batch (the corpus' own file when it already has it)."""
    model = ENTRIES[name]()
    if batch is None or batch == model.batch:
        return model
    return ENTRIES[name](batch)


def models() -> list[CorpusModel]:
    """Every corpus model (built and cached on first use)."""
    return [build(name) for name in ENTRIES]


def reference_path(model: CorpusModel) -> Path:
    """The QDQ file onnxruntime runs for ``model``: the file itself, or for a QONNX file its
    conversion by cimc's QONNX input (qonnx's own transformations), with the same tensor names
    cimc's ops carry."""
    from cimc.frontend.qonnx_in import is_qonnx, to_qcdq

    loaded = onnx.load(str(model.path))
    if not is_qonnx(loaded):
        return model.path
    tag = "" if model.batch == 1 else f"_b{model.batch}"
    return _cached(cache_dir() / f"{model.name}{tag}.ref.onnx",
                   lambda p: onnx.save(to_qcdq(loaded, model.path), str(p)))
