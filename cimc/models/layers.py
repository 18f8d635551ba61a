"""Crossbar-layer factory shared by the zoo architectures.

Every crossbar layer of a zoo model is made by one :class:`LayerFactory` call that names it with
its module path (``"layer1.0.conv1"``). The factory looks the layer's ``(w_bits, a_bits)`` up in the
policy and builds:

* ``conv`` / ``linear``: a Brevitas ``QuantConv2d`` / ``QuantLinear`` with its **own input
  quantizer** (``input_quant``, ``a_bits``; unsigned when the input follows a ReLU, signed
  elsewhere, zero point 0), a signed symmetric narrow-range weight quantizer (``w_bits``,
  per-tensor scale, or per output channel with ``per_channel=True``) and an ``Int32Bias`` (int32,
  scale ``s_in * s_w``).
* ``matmul``: a :class:`QuantMatMul` for an activation-activation product (attention ``Q @ K^T``
  and ``A @ V``): the streamed operand ``a`` gets a quantizer with ``a_bits`` and the operand
  written to the crossbar (``K^T`` or ``V``) a signed one with ``w_bits``.

The same constructors run in three modes: quantised (the default), float (plain ``torch.nn``
layers with the same parameter names, for float pre-training) and record (only the layer names are
collected, nothing is allocated; used by :func:`cimc.models.layer_names`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

from cimc.errors import CimcError

class QuantMatMul(nn.Module):
    """``a @ w`` with both operands quantised: the crossbar form of an attention matmul.

    ``w`` is the operand written to the crossbar (``K^T`` in ``Q @ K^T``, ``V`` in ``A @ V``),
    quantised signed with ``w_bits``; ``a`` is streamed, quantised with ``a_bits`` (unsigned when
    ``signed_input`` is false, e.g. softmax probabilities). In the ONNX export each operand of the
    MatMul is a ``QuantizeLinear -> [Clip] -> DequantizeLinear`` chain.
    """

    def __init__(self, w_bits: int, a_bits: int, *, signed_input: bool = True, quant: bool = True):
        super().__init__()
        if not quant:
            self.a_quant: nn.Module = nn.Identity()
            self.w_quant: nn.Module = nn.Identity()
            return
        import brevitas.nn as qnn
        from brevitas.quant import Int8ActPerTensorFloat, Uint8ActPerTensorFloat

        a_quantizer = Int8ActPerTensorFloat if signed_input else Uint8ActPerTensorFloat
        self.a_quant = qnn.QuantIdentity(a_quantizer, bit_width=a_bits)
        self.w_quant = qnn.QuantIdentity(Int8ActPerTensorFloat, bit_width=w_bits)

    def forward(self, a: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return torch.matmul(self.a_quant(a), self.w_quant(w))


def check_exportable(name: str, index: int, w_bits: int, a_bits: int) -> None:
    """Refuse bit widths Brevitas cannot build or export as QCDQ (1 bit), naming the layer."""
    for kind, bits in (("weight", w_bits), ("activation", a_bits)):
        if bits == 1:
            raise CimcError(
                f"layer {index} '{name}': {kind} bits 1 cannot be exported as QCDQ by Brevitas "
                "(binary quantisation is unsupported); use 2..8"
            )


@dataclass
class LayerFactory:
    """Makes the crossbar layers of one model, in forward-execution order.

    ``bits`` maps layer name -> ``(w_bits, a_bits)``; ``None`` means every layer at 8/8.
    ``record`` collects names only and returns placeholders.
    """

    bits: Mapping[str, tuple[int, int]] | None = None
    quant: bool = True
    per_channel: bool = False
    record: bool = False
    names: list[str] = field(default_factory=list)

    def _take(self, name: str) -> tuple[int, int]:
        if name in self.names:
            raise ValueError(f"duplicate crossbar layer name {name!r}")
        self.names.append(name)
        if self.bits is None:
            return 8, 8
        w_bits, a_bits = self.bits[name]
        check_exportable(name, len(self.names) - 1, w_bits, a_bits)
        return w_bits, a_bits

    def _quantizers(self, signed_input: bool) -> dict[str, object]:
        from brevitas.quant import (
            Int8ActPerTensorFloat,
            Int8WeightPerChannelFloat,
            Int8WeightPerTensorFloat,
            Int32Bias,
            Uint8ActPerTensorFloat,
        )

        return {
            "weight_quant": Int8WeightPerChannelFloat if self.per_channel else Int8WeightPerTensorFloat,
            "input_quant": Int8ActPerTensorFloat if signed_input else Uint8ActPerTensorFloat,
            "bias_quant": Int32Bias,
        }

    def conv(
        self,
        name: str,
        in_ch: int,
        out_ch: int,
        kernel: int,
        *,
        stride: int = 1,
        padding: int = 0,
        bias: bool = True,
        signed_input: bool = True,
    ) -> nn.Module:
        """A 2-D convolution crossbar layer (``groups`` = 1)."""
        w_bits, a_bits = self._take(name)
        if self.record:
            return nn.Identity()
        if not self.quant:
            return nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=padding, bias=bias)
        import brevitas.nn as qnn

        quants = self._quantizers(signed_input)
        if not bias:
            quants.pop("bias_quant")
        return qnn.QuantConv2d(
            in_ch, out_ch, kernel, stride=stride, padding=padding, bias=bias,
            weight_bit_width=w_bits, input_bit_width=a_bits, **quants,
        )

    def linear(
        self, name: str, in_f: int, out_f: int, *, bias: bool = True, signed_input: bool = True
    ) -> nn.Module:
        """A fully-connected crossbar layer (on a vector or on every token)."""
        w_bits, a_bits = self._take(name)
        if self.record:
            return nn.Identity()
        if not self.quant:
            return nn.Linear(in_f, out_f, bias=bias)
        import brevitas.nn as qnn

        quants = self._quantizers(signed_input)
        if not bias:
            quants.pop("bias_quant")
        return qnn.QuantLinear(
            in_f, out_f, bias=bias, weight_bit_width=w_bits, input_bit_width=a_bits, **quants
        )

    def matmul(self, name: str, *, signed_input: bool = True) -> nn.Module:
        """An activation-activation crossbar matmul (see :class:`QuantMatMul`)."""
        w_bits, a_bits = self._take(name)
        if self.record:
            return nn.Identity()
        return QuantMatMul(w_bits, a_bits, signed_input=signed_input, quant=self.quant)
