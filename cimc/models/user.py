"""A user's own float model, ``--model FILE.py:FUNCTION``, quantized per policy by Brevitas.

``FUNCTION()`` returns a float ``torch.nn.Module`` (float32 parameters) that classifies: its
output is ``(N, classes)``. It carries ``input_shape``, the shape of one input without the batch
(``(C, H, W)`` for images), as an attribute. cimc calls ``FUNCTION()`` under a fixed torch seed, so
its random initialisation is the same every time (the float twin and every quantized rebuild
share the parameter names, as for the zoo).

**Crossbar layers** are the modules whose class is exactly ``torch.nn.Conv1d``, ``Conv2d``,
``Linear`` or ``MultiheadAttention`` (Brevitas' layer-wise rule: subclasses and modules inside a
crossbar layer are left alone), that run once in a forward pass. A ``Conv``/``Linear`` is one
policy row named by its module path; a self-attention ``MultiheadAttention`` at path ``p`` is four:
``p.in_proj`` (the packed q/k/v projection), ``p.qk`` (``Q @ K^T``: w = K's quantizer, a = Q's),
``p.av`` (``A @ V``: w = V's, a = the softmax output's, unsigned) and ``p.out_proj``. Rows are in
forward-execution order (hooks on one batch-1 pass), which is the order of the crossbar nodes in
the ONNX export. Modules of those classes that never run stay float and get no row.

**Quantization** is Brevitas' own ``brevitas.graph.quantize.layerwise_quantize`` with the
quantizers of its ``LAYERWISE_COMPUTE_LAYER_MAP`` (signed 8-bit-style input and weight quantizers,
int32 bias, the MHA's internal quantizers), restricted to the four classes, with each layer's bit
widths given as Brevitas' ``(module, name)`` keyword callables looked up in the policy. Everything
else (activations, pooling, normalisation) stays float and runs on the host.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from cimc.errors import CimcError
from cimc.user_code import call_function, canonical, is_code_spec

OPTION = "--model"
WHAT = "model file"
#: policy row suffix of a MultiheadAttention -> its (weight bits, input bits) keywords in
#: ``brevitas.nn.QuantMultiheadAttention``
MHA_ROWS: dict[str, tuple[str, str]] = {
    "in_proj": ("in_proj_weight_bit_width", "in_proj_input_bit_width"),
    "qk": ("k_transposed_bit_width", "q_scaled_bit_width"),
    "av": ("v_bit_width", "attn_output_weights_bit_width"),
    "out_proj": ("out_proj_weight_bit_width", "out_proj_input_bit_width"),
}


def is_user_model(name: str) -> bool:
    """Whether ``name`` is ``FILE.py:FUNCTION`` rather than a zoo name."""
    return is_code_spec(name)


def _crossbar_classes() -> tuple[type, ...]:
    from torch import nn

    return (nn.Conv1d, nn.Conv2d, nn.Linear, nn.MultiheadAttention)


@dataclass(frozen=True)
class UserLayer:
    """One policy row: its name, the module it belongs to, its crossbar descriptor and what the
    search's state needs (``c_in``, ``c_out``, ``stride``, ``kernel``, ``n_weights``, ``in_fmap``)."""

    name: str
    module: str
    module_type: str
    desc: Any  # cimc.target.LayerDesc
    c_in: int
    c_out: int
    stride: int
    kernel: int
    n_weights: int
    in_fmap: int


@dataclass(frozen=True)
class UserModel:
    """What cimc knows of a user's model after loading it once (see the module docstring)."""

    spec: str
    input_shape: tuple[int, ...]
    num_classes: int
    layers: tuple[UserLayer, ...]
    walk: tuple[str, ...]  # every crossbar-class module path, in Brevitas' walk order
    float_only: tuple[str, ...]  # those that never ran (left float, no row)

    @property
    def layer_names(self) -> list[str]:
        return [layer.name for layer in self.layers]

    @property
    def modules(self) -> list[str]:
        return list(dict.fromkeys(layer.module for layer in self.layers))


def _make(spec: str, seed: int) -> tuple[str, Any]:
    """``FUNCTION()`` under torch seed ``seed`` (the global RNG is left untouched), checked."""
    import torch
    from torch import nn

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        spec, model = call_function(spec, OPTION, WHAT)
    if not isinstance(model, nn.Module):
        raise CimcError(f"{spec}: returned a {type(model).__name__}, not a torch.nn.Module")
    bad = next(((n, p.dtype) for n, p in model.named_parameters() if p.dtype != torch.float32), None)
    if bad is not None:
        raise CimcError(f"{spec}: parameter '{bad[0]}' is {bad[1]}; cimc trains float32 models")
    if type(model) in _crossbar_classes():  # layerwise_quantize replaces children, not the root
        model = nn.Sequential(model)
    return spec, model


def _input_shape(spec: str, model: Any) -> tuple[int, ...]:
    shape = getattr(model, "input_shape", None)
    if shape is None and isinstance(model, _sequential()) and len(model) == 1:
        shape = getattr(model[0], "input_shape", None)
    if shape is None:
        raise CimcError(f"{spec}: the model has no input_shape; set model.input_shape = (C, H, W), "
                        "the shape of one input without the batch")
    try:
        dims = tuple(int(d) for d in shape)
    except (TypeError, ValueError):
        raise CimcError(f"{spec}: input_shape {shape!r} is not a tuple of ints") from None
    if not dims or any(d < 1 for d in dims) or any(d != s for d, s in zip(dims, shape)):
        raise CimcError(f"{spec}: input_shape {tuple(shape)!r} must be positive ints, e.g. (1, 28, 28)")
    return dims


def _sequential() -> type:
    from torch import nn

    return nn.Sequential


def crossbar_modules(model: Any) -> dict[str, Any]:
    """Module path -> module of every crossbar-class module, outermost first (as Brevitas walks)."""
    classes = _crossbar_classes()
    found: dict[str, Any] = {}

    def walk(module: Any, prefix: str) -> None:
        for name, child in module.named_children():
            path = f"{prefix}.{name}" if prefix else name
            if type(child) in classes:
                found[path] = child
            else:
                walk(child, path)

    walk(model, "")
    return found


@cache
def _load(spec: str, stamp: tuple[int, int]) -> UserModel:
    del stamp  # part of the cache key only: a changed file is loaded again
    import torch

    spec, model = _make(spec, 0)
    shape = _input_shape(spec, model)
    candidates = crossbar_modules(model)
    calls = _trace_calls(spec, model, candidates, shape)
    if not calls:
        raise CimcError(f"{spec}: no crossbar layers ran in a forward pass (cimc maps "
                        "torch.nn.Conv1d, Conv2d, Linear and MultiheadAttention modules)")
    layers = tuple(row for path, call in calls for row in _describe(spec, path, *call))
    model.eval()
    with torch.no_grad():
        out = model(torch.zeros(1, *shape))
    if not isinstance(out, torch.Tensor) or out.dim() != 2:
        got = f"shape {tuple(out.shape)}" if isinstance(out, torch.Tensor) else type(out).__name__
        raise CimcError(f"{spec}: the model's output is {got}; cimc trains classifiers, "
                        "whose output is (N, classes)")
    float_only = tuple(p for p in candidates if p not in dict(calls))
    info = UserModel(spec, shape, int(out.shape[1]), layers, tuple(candidates), float_only)
    qmodel = _quantize(info, model, None, per_channel=False)
    try:
        with torch.no_grad():
            qmodel.eval()(torch.zeros(1, *shape))
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise CimcError(f"{spec}: the model quantized by Brevitas fails on a forward pass: "
                        f"{type(exc).__name__}: {first}") from None
    return info


def load_user_model(text: str) -> UserModel:
    """Load ``FILE.py:FUNCTION`` once (again after the file changes) and describe its layers."""
    from pathlib import Path

    spec = canonical(text, OPTION)
    st = Path(spec.rpartition(":")[0]).stat()
    return _load(spec, (st.st_mtime_ns, st.st_size))


def _trace_calls(spec: str, model: Any, candidates: dict[str, Any],
                 shape: tuple[int, ...]) -> list[tuple[str, tuple[Any, ...]]]:
    """``[(path, (module, input shapes, key shape, output shape))]`` in the order the crossbar
    modules run in one batch-1 forward pass; a module that runs twice is refused."""
    import torch

    calls: list[tuple[str, tuple[Any, ...]]] = []
    hooks = []

    def hook(module, args, kwargs, output, _path):
        if any(p == _path for p, _ in calls):
            raise CimcError(f"{spec}: layer '{_path}' runs twice in one forward pass; cimc maps "
                            "each crossbar layer once (give each use its own module)")
        if isinstance(module, torch.nn.MultiheadAttention):
            q, k, v = (list(args) + [kwargs.get(n) for n in ("query", "key", "value")][len(args):])[:3]
            if not (q is k and k is v):
                raise CimcError(f"{spec}: attention layer '{_path}' is called with a different "
                                "query, key and value; cimc maps self-attention (query is key is value)")
            out = output[0]
        else:
            q, out = args[0], output
        calls.append((_path, (module, tuple(q.shape), tuple(out.shape))))

    for path, module in candidates.items():
        hooks.append(module.register_forward_hook(
            lambda m, a, kw, o, _p=path: hook(m, a, kw, o, _p), with_kwargs=True))
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, *shape))
    except CimcError:
        raise
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise CimcError(f"{spec}: a forward pass on input_shape {shape} raised "
                        f"{type(exc).__name__}: {first}") from None
    finally:
        for h in hooks:
            h.remove()
    return calls


def _describe(spec: str, path: str, module: Any, in_shape: tuple[int, ...],
              out_shape: tuple[int, ...]) -> list[UserLayer]:
    """The policy rows of one crossbar module, from its shapes at batch 1 (so rows streamed per
    inference do not depend on where a layout puts the batch axis)."""
    from torch import nn

    from cimc.target import LayerDesc

    kind = type(module).__name__
    if isinstance(module, (nn.Conv1d, nn.Conv2d)):
        g, k = module.groups, math.prod(module.kernel_size)
        dw = g > 1 and g == module.in_channels
        p = math.prod(out_shape[2:]) if len(out_shape) > 2 else 1
        desc = LayerDesc(path, module.out_channels // g, module.in_channels // g * k, int(p), g,
                         "depthwise" if dw else "conv")
        return [UserLayer(path, path, kind, desc, module.in_channels, module.out_channels,
                          int(module.stride[0]), int(module.kernel_size[0]), module.weight.numel(),
                          int(math.prod(in_shape[2:]) if len(in_shape) > 2 else 1))]
    if isinstance(module, nn.Linear):
        rows = math.prod(in_shape) // module.in_features  # batch 1: every row is per inference
        desc = LayerDesc(path, module.out_features, module.in_features, int(rows), 1, "linear")
        return [UserLayer(path, path, kind, desc, module.in_features, module.out_features, 1, 1,
                          module.weight.numel(), int(rows))]
    return _describe_mha(spec, path, module, in_shape)


def _describe_mha(spec: str, path: str, mha: Any, q_shape: tuple[int, ...]) -> list[UserLayer]:
    from cimc.target import LayerDesc

    e, h = mha.embed_dim, mha.num_heads
    if mha.kdim != e or mha.vdim != e:
        raise CimcError(f"{spec}: attention layer '{path}' has kdim/vdim other than embed_dim; "
                        "cimc maps the packed q/k/v projection only")
    t, d = math.prod(q_shape) // e, e // h
    descs = {
        "in_proj": LayerDesc(f"{path}.in_proj", 3 * e, e, t, 1, "linear"),
        "qk": LayerDesc(f"{path}.qk", t, d, t, h, "matmul"),
        "av": LayerDesc(f"{path}.av", d, t, t, h, "matmul"),
        "out_proj": LayerDesc(f"{path}.out_proj", e, e, t, 1, "linear"),
    }
    return [UserLayer(ds.name, path, "MultiheadAttention", ds, ds.n, ds.m, 1, 1,
                      ds.m * ds.n * ds.H, ds.P) for ds in descs.values()]


# --------------------------------------------------------------------------------------------
# Building: float, or quantized at per-layer bits by brevitas.graph
# --------------------------------------------------------------------------------------------


def _bits(table: Mapping[str, tuple[int, int]], suffix: str, index: int):
    """A Brevitas keyword callable: ``(module, name) -> bits`` of row ``name + suffix``."""
    return lambda module, name: table[name + suffix][index]  # noqa: ARG005 (Brevitas' signature)


def layer_map(bits: Mapping[str, tuple[int, int]], *, per_channel: bool = False) -> dict[type, Any]:
    """``compute_layer_map`` for ``layerwise_quantize``: Brevitas' own entries for the crossbar
    classes, plus the per-layer bit widths of ``bits`` (row name -> ``(w_bits, a_bits)``)."""
    from brevitas.graph.quantize import LAYERWISE_COMPUTE_LAYER_MAP
    from brevitas.quant import Int8WeightPerChannelFloat
    from torch import nn

    out: dict[type, Any] = {}
    for cls in (nn.Conv1d, nn.Conv2d, nn.Linear):
        qcls, kwargs = LAYERWISE_COMPUTE_LAYER_MAP[cls]
        kw = dict(kwargs, weight_bit_width=_bits(bits, "", 0), input_bit_width=_bits(bits, "", 1))
        if per_channel:
            kw["weight_quant"] = Int8WeightPerChannelFloat
        out[cls] = (qcls, kw)
    qcls, kwargs = LAYERWISE_COMPUTE_LAYER_MAP[nn.MultiheadAttention]
    kw = dict(kwargs)
    for row, (w_key, a_key) in MHA_ROWS.items():
        kw[w_key], kw[a_key] = _bits(bits, f".{row}", 0), _bits(bits, f".{row}", 1)
    if per_channel:
        kw["in_proj_weight_quant"] = kw["out_proj_weight_quant"] = Int8WeightPerChannelFloat
    out[nn.MultiheadAttention] = (qcls, kw)
    return out


def build_user(text: str, policy: Any = None, *, seed: int = 0, quant: bool = True,
               per_channel: bool = False) -> Any:
    """The user's model: float (``quant=False``, as ``FUNCTION()`` returns it) or with its
    crossbar layers quantized at ``policy`` (``(L, 2)`` in :attr:`UserModel.layer_names` order;
    ``None``: 8/8) by ``brevitas.graph.quantize.layerwise_quantize``."""
    info = load_user_model(text)
    spec, model = _make(info.spec, seed)
    if tuple(crossbar_modules(model)) != info.walk:
        raise CimcError(f"{spec}: returned a model with other layers than the first time; "
                        "FUNCTION() must build the same model on every call")
    model.cimc_name = info.spec
    model.cimc_input_shape = info.input_shape
    if not quant:
        return model
    return _quantize(info, model, policy, per_channel=per_channel)


def _quantize(info: UserModel, model: Any, policy: Any, *, per_channel: bool) -> Any:
    import warnings

    from brevitas.graph.quantize import layerwise_quantize

    from cimc.models.layers import check_exportable

    names = info.layer_names
    rows = [(8, 8)] * len(names) if policy is None else [(int(w), int(a)) for w, a in policy]
    if len(rows) != len(names):
        raise CimcError(f"policy for '{info.spec}' has {len(rows)} layers, the model has {len(names)}")
    for i, (name, (w, a)) in enumerate(zip(names, rows)):
        check_exportable(name, i, w, a)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            qmodel = layerwise_quantize(model, compute_layer_map=layer_map(
                dict(zip(names, rows)), per_channel=per_channel), name_blacklist=list(info.float_only))
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise CimcError(f"{info.spec}: Brevitas' layerwise_quantize failed: "
                        f"{type(exc).__name__}: {first}") from None
    qmodel.cimc_name = info.spec
    qmodel.cimc_input_shape = info.input_shape
    return qmodel
