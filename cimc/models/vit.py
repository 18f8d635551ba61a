"""Vision transformers: ``vit_small`` (1x28x28) and ``vit_b32`` (ViT-B/32, 3x224x224).

Pre-norm blocks with float LayerNorm and GELU on the host. Attention is written out from
``QuantLinear`` projections and two :class:`~cimc.models.layers.QuantMatMul` products (Brevitas'
``QuantMultiheadAttention`` is not used: its export computes shapes at run time). All reshapes use
fixed sizes with ``-1`` for the batch, so the TorchScript export has no Shape/Gather ops. The class
token is placed as ``x[:, :1] * 0 + cls`` concatenated in front of the patch tokens (a Slice, Mul,
Add and Concat in ONNX) rather than with ``expand(batch)``.

Crossbar layers (in forward order): ``patch_embed`` (a Conv with kernel = stride = patch), then per
block ``i`` (separate, not fused, q/k/v projections)::

    blocks.i.attn.q, blocks.i.attn.k, blocks.i.attn.v,
    blocks.i.attn.qk    Q @ K^T: w_bits = K's quantizer (K^T is written), a_bits = Q's quantizer
    blocks.i.attn.av    A @ V:   w_bits = V's quantizer, a_bits = softmax-output quantizer (unsigned)
    blocks.i.attn.proj, blocks.i.mlp.fc1, blocks.i.mlp.fc2

and finally ``head`` (on the class token after the final LayerNorm): ``2 + 8 * depth`` layers.
"""

from __future__ import annotations

import torch
from torch import nn

from cimc.models.layers import LayerFactory


class Attention(nn.Module):
    """Multi-head self-attention over a fixed number of tokens."""

    def __init__(self, f: LayerFactory, prefix: str, dim: int, heads: int, tokens: int):
        super().__init__()
        self.dim, self.heads, self.tokens = dim, heads, tokens
        self.head_dim = dim // heads
        self.scale = self.head_dim**-0.5
        self.q = f.linear(f"{prefix}.q", dim, dim)
        self.k = f.linear(f"{prefix}.k", dim, dim)
        self.v = f.linear(f"{prefix}.v", dim, dim)
        self.qk = f.matmul(f"{prefix}.qk")
        self.av = f.matmul(f"{prefix}.av", signed_input=False)
        self.proj = f.linear(f"{prefix}.proj", dim, dim)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(-1, self.tokens, self.heads, self.head_dim).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = self._split(self.q(x))
        k = self._split(self.k(x))
        v = self._split(self.v(x))
        scores = self.qk(q, k.transpose(-2, -1)) * self.scale
        out = self.av(torch.softmax(scores, dim=-1), v)
        out = out.transpose(1, 2).reshape(-1, self.tokens, self.dim)
        return self.proj(out)


class Mlp(nn.Module):
    """fc1 - GELU - fc2."""

    def __init__(self, f: LayerFactory, prefix: str, dim: int, hidden: int):
        super().__init__()
        self.fc1 = f.linear(f"{prefix}.fc1", dim, hidden)
        self.act = nn.GELU()
        self.fc2 = f.linear(f"{prefix}.fc2", hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block."""

    def __init__(self, f: LayerFactory, prefix: str, dim: int, heads: int, hidden: int,
                 tokens: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(f, f"{prefix}.attn", dim, heads, tokens)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(f, f"{prefix}.mlp", dim, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ViT(nn.Module):
    """A ViT classifier with a class token and learned position embeddings."""

    def __init__(
        self,
        f: LayerFactory,
        *,
        image: int,
        patch: int,
        in_ch: int,
        dim: int,
        depth: int,
        heads: int,
        hidden: int,
        num_classes: int,
    ):
        super().__init__()
        self.dim = dim
        self.patches = (image // patch) ** 2
        self.tokens = self.patches + 1
        self.patch_embed = f.conv("patch_embed", in_ch, dim, patch, stride=patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.randn(1, self.tokens, dim) * 0.02)
        self.blocks = nn.Sequential(*[
            Block(f, f"blocks.{i}", dim, heads, hidden, self.tokens) for i in range(depth)
        ])
        self.norm = nn.LayerNorm(dim)
        self.head = f.linear("head", dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x).reshape(-1, self.dim, self.patches).transpose(1, 2)
        cls = x[:, :1] * 0.0 + self.cls_token
        x = torch.cat([cls, x], dim=1) + self.pos_embed
        x = self.norm(self.blocks(x))
        return self.head(x[:, :1].reshape(-1, self.dim))


def vit_small(f: LayerFactory, num_classes: int = 10) -> ViT:
    """28x28, patch 7 (16 tokens + cls), dim 64, 4 heads, 2 blocks, MLP 128 (18 layers)."""
    return ViT(f, image=28, patch=7, in_ch=1, dim=64, depth=2, heads=4, hidden=128,
               num_classes=num_classes)


def vit_b32(f: LayerFactory, num_classes: int = 1000) -> ViT:
    """ViT-B/32: 224x224, patch 32 (49 tokens + cls), dim 768, 12 heads, 12 blocks, MLP 3072."""
    return ViT(f, image=224, patch=32, in_ch=3, dim=768, depth=12, heads=12, hidden=3072,
               num_classes=num_classes)
