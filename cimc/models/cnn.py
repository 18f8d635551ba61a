"""Convolutional zoo models: ``lenet``, ``resnet_small``, ``resnet20``, ``resnet18``, ``vgg16``.

Crossbar layers are created in forward-execution order by a :class:`LayerFactory`; the name of
each is its module path. Host ops (ReLU, max/average pooling, BatchNorm, residual adds, flatten)
are plain float ``torch.nn`` modules. The network input (already normalised to about [-1, 1]) feeds
a signed quantizer; every layer that follows a ReLU has an unsigned input quantizer.

Layer order:

* ``lenet`` (5): ``conv1, conv2, fc1, fc2, fc3``.
* ``resnet_small`` (10) / ``resnet20`` (22) / ``resnet18`` (21): ``conv1``, then per basic block
  ``<block>.conv1, <block>.conv2[, <block>.downsample]`` (the 1x1 shortcut conv runs after
  ``conv2``, as in torchvision), then ``fc``.
* ``vgg16`` (16): ``features.0 .. features.12`` (13 convs), ``classifier.0 .. classifier.2``.
"""

from __future__ import annotations

import torch
from torch import nn

from cimc.models.layers import LayerFactory


class LeNet(nn.Module):
    """LeNet-5 for 1x28x28: conv5x5(6, pad 2) - pool - conv5x5(16) - pool - 120 - 84 - classes."""

    def __init__(self, f: LayerFactory, num_classes: int = 10):
        super().__init__()
        self.conv1 = f.conv("conv1", 1, 6, 5, padding=2)
        self.conv2 = f.conv("conv2", 6, 16, 5, signed_input=False)
        self.fc1 = f.linear("fc1", 16 * 5 * 5, 120, signed_input=False)
        self.fc2 = f.linear("fc2", 120, 84, signed_input=False)
        self.fc3 = f.linear("fc3", 84, num_classes, signed_input=False)
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.relu(self.conv1(x)))
        x = self.pool(self.relu(self.conv2(x)))
        x = torch.flatten(x, 1)
        x = self.relu(self.fc1(x))
        x = self.relu(self.fc2(x))
        return self.fc3(x)


class BasicBlock(nn.Module):
    """ResNet basic block; the input follows a ReLU, so all its crossbar inputs are unsigned."""

    def __init__(self, f: LayerFactory, prefix: str, in_ch: int, out_ch: int, stride: int):
        super().__init__()
        self.conv1 = f.conv(f"{prefix}.conv1", in_ch, out_ch, 3, stride=stride, padding=1,
                            bias=False, signed_input=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = f.conv(f"{prefix}.conv2", out_ch, out_ch, 3, padding=1, bias=False,
                            signed_input=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_ch != out_ch:
            self.downsample = nn.Sequential()
            self.downsample.add_module(
                "0", f.conv(f"{prefix}.downsample.0", in_ch, out_ch, 1, stride=stride, bias=False,
                            signed_input=False))
            self.downsample.add_module("1", nn.BatchNorm2d(out_ch))
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class ResNet(nn.Module):
    """A ResNet of basic blocks; ``stem`` "small" (3x3 with ``stem_stride``, no max pool) or
    "imagenet" (7x7/2 + pool)."""

    def __init__(
        self,
        f: LayerFactory,
        *,
        in_ch: int,
        widths: tuple[int, ...],
        blocks: tuple[int, ...],
        num_classes: int,
        stem: str,
        stem_stride: int = 1,
    ):
        super().__init__()
        if stem == "imagenet":
            self.conv1 = f.conv("conv1", in_ch, widths[0], 7, stride=2, padding=3, bias=False)
            self.maxpool: nn.Module = nn.MaxPool2d(3, stride=2, padding=1)
        else:
            self.conv1 = f.conv("conv1", in_ch, widths[0], 3, stride=stem_stride, padding=1,
                                bias=False)
            self.maxpool = nn.Identity()
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU()
        prev = widths[0]
        for i, (width, count) in enumerate(zip(widths, blocks, strict=True)):
            stage = nn.Sequential()
            for j in range(count):
                stride = 2 if (i > 0 and j == 0) else 1
                stage.add_module(str(j), BasicBlock(f, f"layer{i + 1}.{j}", prev, width, stride))
                prev = width
            self.add_module(f"layer{i + 1}", stage)
        self.num_stages = len(widths)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = f.linear("fc", prev, num_classes, signed_input=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for i in range(self.num_stages):
            x = getattr(self, f"layer{i + 1}")(x)
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)


def resnet_small(f: LayerFactory, num_classes: int = 10) -> ResNet:
    """3 stages (16, 32, 64 channels) of one basic block, for 1x28x28 (10 crossbar layers)."""
    return ResNet(f, in_ch=1, widths=(16, 32, 64), blocks=(1, 1, 1), num_classes=num_classes,
                  stem="small")


def resnet20(f: LayerFactory, num_classes: int = 10) -> ResNet:
    """ResNet-20 (He et al.'s CIFAR layout: 16/32/64 channels, 3 stages of 3 basic blocks) for
    1x28x28 with a stride-2 stem (stages at 14x14, 7x7, 4x4), so that training and a 600-episode
    search fit two CPU cores; 1x1 shortcut convs where the shape changes (22 crossbar layers:
    19 3x3 convs, 2 shortcuts, fc)."""
    return ResNet(f, in_ch=1, widths=(16, 32, 64), blocks=(3, 3, 3), num_classes=num_classes,
                  stem="small", stem_stride=2)


def resnet18(f: LayerFactory, num_classes: int = 1000) -> ResNet:
    """ResNet-18 for 3x224x224 (21 crossbar layers)."""
    return ResNet(f, in_ch=3, widths=(64, 128, 256, 512), blocks=(2, 2, 2, 2),
                  num_classes=num_classes, stem="imagenet")


VGG16_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


class VGG16(nn.Module):
    """VGG-16 (configuration D, no BatchNorm, no dropout) for 3x224x224 (16 crossbar layers)."""

    def __init__(self, f: LayerFactory, num_classes: int = 1000):
        super().__init__()
        self.features = nn.Sequential()
        self.feature_relu = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        prev, idx = 3, 0
        for item in VGG16_CFG:
            if item == "M":
                continue
            self.features.add_module(
                str(idx), f.conv(f"features.{idx}", prev, int(item), 3, padding=1,
                                 signed_input=idx == 0))
            prev, idx = int(item), idx + 1
        self.classifier = nn.Sequential()
        dims = (512 * 7 * 7, 4096, 4096, num_classes)
        for i in range(3):
            self.classifier.add_module(
                str(i), f.linear(f"classifier.{i}", dims[i], dims[i + 1], signed_input=False))
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        idx = 0
        for item in VGG16_CFG:
            if item == "M":
                x = self.pool(x)
                continue
            x = self.feature_relu(self.features[idx](x))
            idx += 1
        x = torch.flatten(x, 1)
        x = self.relu(self.classifier[0](x))
        x = self.relu(self.classifier[1](x))
        return self.classifier[2](x)
