"""A user's own model for ``cimc-rl --model examples/user_model/model.py:make``.

Plain float PyTorch: cimc finds the crossbar layers (the two convolutions, the attention's four
matrix products and the classifier: 7 rows, see ``cimc-rl layers --model ...``) and quantizes
them per policy with Brevitas' graph utilities. The LayerNorm, ReLU and mean stay float on the
host. ``input_shape`` (one input without the batch) tells cimc what the model takes.
"""

import torch
from torch import nn


class DigitNet(nn.Module):
    """8x8 digits: two convolutions make 16 tokens of 32 features, self-attention mixes them."""

    input_shape = (1, 8, 8)

    def __init__(self, classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, stride=2, padding=1)
        self.attn = nn.MultiheadAttention(32, 2, batch_first=True)
        self.norm = nn.LayerNorm(32)
        self.head = nn.Linear(32, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv1(x))
        x = torch.relu(self.conv2(x))  # (N, 32, 4, 4)
        t = x.flatten(2).transpose(1, 2)  # (N, 16 tokens, 32)
        a, _ = self.attn(t, t, t, need_weights=False)
        t = self.norm(t + a)
        return self.head(t.mean(dim=1))


def make() -> nn.Module:
    return DigitNet()
