"""Seeded generators of tiny Brevitas models for the importer tests, and an export helper.

Each generator takes a seed and returns a :class:`Case`: the model, an example input, the
expected ``(w_bits, a_bits)`` of every crossbar layer in forward (= ONNX node) order, the expected
layer kinds, and export options (opset 13..21, optional ``export_weight_q_node``, optional
dynamic batch). Models are a few kB so that a QCDQ export takes about 0.2 s.

* :func:`conv_case`: convolutions with random stride / padding / dilation / groups (including
  depthwise), max / average pooling, residual adds, per-tensor or per-channel weights, int32,
  float or no bias, then a classifier.
* :func:`mlp_case`: QuantLinear stacks on 2-D (Gemm) or 3-D (MatMul) inputs, with and without
  bias (Transpose + MatMul).
* :func:`attention_case`: q / k / v QuantLinear projections, QuantIdentity quantizers on Q, K, V,
  ``Q @ K^T``, softmax, an unsigned softmax quantizer and ``A @ V``, then an output projection.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn


def _q():
    import brevitas.nn as qnn
    import brevitas.quant as bq

    return qnn, bq


@dataclass
class Case:
    """A model to export plus what the importer must find in it."""

    name: str
    model: nn.Module
    x: torch.Tensor
    bits: list[tuple[int, int]]
    kinds: list[str]
    opset: int = 19
    weight_q_node: bool = False
    dynamic_batch: bool = False
    notes: dict = field(default_factory=dict)


def export(case: Case, path: str | Path) -> Path:
    """QCDQ export (TorchScript exporter) of a deep copy of ``case.model``; returns the path."""
    from brevitas.export import export_onnx_qcdq

    kwargs = {}
    if case.dynamic_batch:
        kwargs["dynamic_axes"] = {"x": {0: "batch"}}
    if case.weight_q_node:
        kwargs["export_weight_q_node"] = True
    clone = copy.deepcopy(case.model).eval()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        export_onnx_qcdq(clone, args=case.x, export_path=str(path), dynamo=False,
                         opset_version=case.opset, keep_initializers_as_inputs=False,
                         input_names=["x"], **kwargs)
    return Path(path)


def _bits(rng: np.random.Generator) -> int:
    return int(rng.integers(2, 9))


def _weight_quant(per_channel: bool):
    _, bq = _q()
    return bq.Int8WeightPerChannelFloat if per_channel else bq.Int8WeightPerTensorFloat


def _bias_kwargs(rng: np.random.Generator) -> tuple[dict, str]:
    """Random bias variant: int32 (Int32Bias), float, or none."""
    _, bq = _q()
    mode = str(rng.choice(["int32", "float", "none"]))
    if mode == "int32":
        return {"bias": True, "bias_quant": bq.Int32Bias}, mode
    if mode == "float":
        return {"bias": True}, mode
    return {"bias": False}, mode


def _randomize(model: nn.Module, seed: int) -> nn.Module:
    """Seeded random parameters (scaled normal), so that every seed gives other weights."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 1 and p.numel() > 1:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    return model


# --------------------------------------------------------------------------------------------
# Conv nets
# --------------------------------------------------------------------------------------------


class _ConvNet(nn.Module):
    def __init__(self, layers: nn.ModuleList, plan: list[str], head: nn.Module, gap: bool):
        super().__init__()
        self.layers, self.plan, self.head, self.gap = layers, plan, head, gap

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        it = iter(self.layers)
        for step in self.plan:
            if step == "conv":
                x = next(it)(x)
            elif step == "relu":
                x = torch.relu(x)
            elif step == "maxpool":
                x = nn.functional.max_pool2d(x, 2, ceil_mode=False)
            elif step == "avgpool":
                x = nn.functional.avg_pool2d(x, 2)
            elif step == "residual":
                a, b = next(it), next(it)
                x = torch.relu(b(torch.relu(a(x))) + x)
        if self.gap:
            x = nn.functional.adaptive_avg_pool2d(x, 1)
        return self.head(torch.flatten(x, 1))


def conv_case(seed: int) -> Case:
    """A random small CNN (2..5 crossbar layers)."""
    qnn, bq = _q()
    rng = np.random.default_rng(seed)
    c = int(rng.integers(1, 4))
    hw = int(rng.integers(9, 14))
    per_channel = bool(rng.integers(0, 2))
    layers, plan, bits, kinds = nn.ModuleList(), [], [], []
    signed_in = True
    size = hw

    def conv(cin: int, cout: int, *, k: int, stride: int, pad: int, dil: int, groups: int):
        nonlocal signed_in
        w, a = _bits(rng), _bits(rng)
        bias_kw, _ = _bias_kwargs(rng)
        act = bq.Int8ActPerTensorFloat if signed_in else bq.Uint8ActPerTensorFloat
        m = qnn.QuantConv2d(cin, cout, k, stride=stride, padding=pad, dilation=dil,
                            groups=groups, weight_quant=_weight_quant(per_channel),
                            weight_bit_width=w, input_quant=act, input_bit_width=a, **bias_kw)
        bits.append((w, a))
        kinds.append("conv")
        return m

    n = int(rng.integers(1, 4))
    for i in range(n):
        choice = int(rng.integers(0, 4)) if i else 0
        if choice == 3 and size >= 3:  # residual block (same shape)
            a = conv(c, c, k=3, stride=1, pad=1, dil=1, groups=1)
            signed_in = False
            b = conv(c, c, k=3, stride=1, pad=1, dil=1, groups=1)
            layers.extend([a, b])
            plan.append("residual")
            continue
        k = int(rng.choice([1, 3]))
        dil = int(rng.choice([1, 2])) if k == 3 and size >= 7 else 1
        pad = int(rng.integers(0, 3))
        stride = int(rng.choice([1, 2]))
        depthwise = bool(rng.integers(0, 3) == 0) and i > 0
        groups = c if depthwise else 1
        cout = c * int(rng.integers(1, 3)) if depthwise else int(rng.integers(2, 7))
        eff = dil * (k - 1) + 1
        if size + 2 * pad < eff:
            pad = (eff - size + 1) // 2 + 1
        layers.append(conv(c, cout, k=k, stride=stride, pad=pad, dil=dil, groups=groups))
        plan.append("conv")
        size = (size + 2 * pad - eff) // stride + 1
        c = cout
        plan.append("relu")
        signed_in = False
        if size >= 4 and rng.integers(0, 3) == 0:
            plan.append(str(rng.choice(["maxpool", "avgpool"])))
            size //= 2
    gap = bool(rng.integers(0, 2))
    feat = c if gap else c * size * size
    w, a = _bits(rng), _bits(rng)
    bias_kw, _ = _bias_kwargs(rng)
    head = qnn.QuantLinear(feat, int(rng.integers(2, 6)),
                           weight_quant=_weight_quant(per_channel),
                           weight_bit_width=w, input_quant=bq.Uint8ActPerTensorFloat,
                           input_bit_width=a, **bias_kw)
    bits.append((w, a))
    kinds.append("linear")
    model = _randomize(_ConvNet(layers, plan, head, gap), seed)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(1, int(layers[0].in_channels), hw, hw, generator=gen)
    model.eval()
    with torch.no_grad():
        model(x)
    return Case(f"conv{seed}", model, x, bits, kinds, opset=int(rng.integers(13, 22)),
                weight_q_node=bool(rng.integers(0, 4) == 0),
                dynamic_batch=bool(rng.integers(0, 4) == 0),
                notes={"per_channel": per_channel, "plan": plan})


# --------------------------------------------------------------------------------------------
# MLPs
# --------------------------------------------------------------------------------------------


class _Mlp(nn.Module):
    def __init__(self, layers: nn.ModuleList, acts: list[str]):
        super().__init__()
        self.layers, self.acts = layers, acts

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer, act in zip(self.layers, self.acts):
            x = layer(x)
            if act == "relu":
                x = torch.relu(x)
            elif act == "gelu":
                x = nn.functional.gelu(x)
        return x


def mlp_case(seed: int) -> Case:
    """A random MLP of 1..3 QuantLinear layers on a 2-D or 3-D input."""
    qnn, bq = _q()
    rng = np.random.default_rng(seed)
    tokens = int(rng.integers(2, 5)) if rng.integers(0, 2) else 0
    per_channel = bool(rng.integers(0, 2))
    f = int(rng.integers(3, 9))
    layers, acts, bits = nn.ModuleList(), [], []
    signed = True
    for _ in range(int(rng.integers(1, 4))):
        out = int(rng.integers(2, 9))
        w, a = _bits(rng), _bits(rng)
        bias_kw, _ = _bias_kwargs(rng)
        act = bq.Int8ActPerTensorFloat if signed else bq.Uint8ActPerTensorFloat
        layers.append(qnn.QuantLinear(f, out, weight_quant=_weight_quant(per_channel),
                                      weight_bit_width=w, input_quant=act, input_bit_width=a,
                                      **bias_kw))
        bits.append((w, a))
        kind = str(rng.choice(["relu", "gelu", "none"]))
        acts.append(kind)
        signed = kind != "relu"
        f = out
    model = _randomize(_Mlp(layers, acts), seed)
    shape = (2, tokens, layers[0].in_features) if tokens else (2, layers[0].in_features)
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(seed))
    model.eval()
    with torch.no_grad():
        model(x)
    return Case(f"mlp{seed}", model, x, bits, ["linear"] * len(bits),
                opset=int(rng.integers(13, 22)), weight_q_node=bool(rng.integers(0, 4) == 0),
                dynamic_batch=bool(rng.integers(0, 3) == 0),
                notes={"per_channel": per_channel, "tokens": tokens})


# --------------------------------------------------------------------------------------------
# Attention
# --------------------------------------------------------------------------------------------


class _Attention(nn.Module):
    def __init__(self, rng: np.random.Generator, dim: int, heads: int, tokens: int,
                 per_channel: bool):
        super().__init__()
        qnn, bq = _q()
        self.dim, self.heads, self.tokens = dim, heads, tokens
        self.bits: list[tuple[int, int]] = []
        self.kinds: list[str] = []
        a_in = _bits(rng)

        def linear(a_bits: int) -> nn.Module:
            w = _bits(rng)
            bias_kw, _ = _bias_kwargs(rng)
            self.bits.append((w, a_bits))
            self.kinds.append("linear")
            return qnn.QuantLinear(dim, dim, weight_quant=_weight_quant(per_channel),
                                   weight_bit_width=w, input_quant=bq.Int8ActPerTensorFloat,
                                   input_bit_width=a_bits, **bias_kw)

        self.q, self.k, self.v = linear(a_in), linear(a_in), linear(a_in)
        qb, kb, vb, pb = (_bits(rng) for _ in range(4))
        self.q_quant = qnn.QuantIdentity(bq.Int8ActPerTensorFloat, bit_width=qb)
        self.k_quant = qnn.QuantIdentity(bq.Int8ActPerTensorFloat, bit_width=kb)
        self.v_quant = qnn.QuantIdentity(bq.Int8ActPerTensorFloat, bit_width=vb)
        self.p_quant = qnn.QuantIdentity(bq.Uint8ActPerTensorFloat, bit_width=pb)
        self.bits += [(kb, qb), (vb, pb)]
        self.kinds += ["matmul_act", "matmul_act"]
        self.proj = linear(_bits(rng))

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        hd = self.dim // self.heads
        return x.reshape(-1, self.tokens, self.heads, hd).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = self.q_quant(self._split(self.q(x)))
        k = self.k_quant(self._split(self.k(x)))
        v = self.v_quant(self._split(self.v(x)))
        scores = torch.matmul(q, k.transpose(-2, -1)) / float(np.sqrt(self.dim // self.heads))
        probs = self.p_quant(torch.softmax(scores, dim=-1))
        out = torch.matmul(probs, v).transpose(1, 2).reshape(-1, self.tokens, self.dim)
        return self.proj(out)


def attention_case(seed: int) -> Case:
    """A one-block attention layer; K is transposed after its quantizer (on the integers)."""
    rng = np.random.default_rng(seed)
    heads = int(rng.choice([1, 2]))
    dim = heads * int(rng.integers(2, 5))
    tokens = int(rng.integers(2, 6))
    model = _Attention(rng, dim, heads, tokens, bool(rng.integers(0, 2)))
    _randomize(model, seed)
    x = torch.randn(1, tokens, dim, generator=torch.Generator().manual_seed(seed))
    model.eval()
    with torch.no_grad():
        model(x)
    return Case(f"attn{seed}", model, x, list(model.bits), list(model.kinds),
                opset=int(rng.integers(13, 22)), weight_q_node=bool(rng.integers(0, 4) == 0))


GENERATORS = {"conv": conv_case, "mlp": mlp_case, "attention": attention_case}


class _Mha(nn.Module):
    def __init__(self, dim: int, heads: int, in_bits: int, w_in: int, w_out: int):
        super().__init__()
        qnn, bq = _q()
        self.inp = qnn.QuantIdentity(bq.Int8ActPerTensorFloat, bit_width=in_bits)
        self.mha = qnn.QuantMultiheadAttention(dim, heads, batch_first=True,
                                               in_proj_weight_bit_width=w_in,
                                               out_proj_weight_bit_width=w_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.inp(x)
        return self.mha(x, x, x, need_weights=False)[0]


def mha_case(seed: int, *, dynamic_batch: bool = False) -> Case:
    """Brevitas ``QuantMultiheadAttention``: its export computes shapes with Shape/Gather/...

    The expected bits of its four crossbar layers (in_proj, Q @ K^T, A @ V, out_proj) are not
    configured one by one here; tests compare them with an independent recovery from the file.
    """
    rng = np.random.default_rng(seed)
    heads = int(rng.choice([1, 2]))
    dim = heads * int(rng.integers(2, 5))
    model = _randomize(_Mha(dim, heads, _bits(rng), _bits(rng), _bits(rng)), seed)
    x = torch.randn(1, int(rng.integers(2, 6)), dim, generator=torch.Generator().manual_seed(seed))
    model.eval()
    with torch.no_grad():
        model(x)
    return Case(f"mha{seed}", model, x, [], ["linear", "matmul_act", "matmul_act", "linear"],
                opset=19, dynamic_batch=dynamic_batch)
