"""The model registry: names, input shapes, crossbar layer names and :func:`build`.

Every function here takes a zoo name or a user's ``FILE.py:FUNCTION`` (:mod:`cimc.models.user`);
:func:`resolve_model` is the one lookup the commands use.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import numpy as np
import torch
from torch import nn

from cimc.errors import CimcError
from cimc.models import cnn, vit
from cimc.models.layers import LayerFactory
from cimc.models.user import build_user, is_user_model, load_user_model


@dataclass(frozen=True)
class ZooEntry:
    """A zoo model: its constructor, input shape ``(C, H, W)`` and default class count."""

    make: Callable[..., nn.Module]
    input_shape: tuple[int, int, int]
    num_classes: int
    description: str


ZOO: dict[str, ZooEntry] = {
    "lenet": ZooEntry(cnn.LeNet, (1, 28, 28), 10, "LeNet-5 CNN, 5 layers"),
    "resnet_small": ZooEntry(cnn.resnet_small, (1, 28, 28), 10, "3-stage ResNet, 10 layers"),
    "resnet20": ZooEntry(cnn.resnet20, (1, 28, 28), 10, "ResNet-20 (stride-2 stem), 22 layers"),
    "vit_small": ZooEntry(vit.vit_small, (1, 28, 28), 10, "ViT, patch 7, dim 64, 2 blocks"),
    "resnet18": ZooEntry(cnn.resnet18, (3, 224, 224), 1000, "ResNet-18, 21 layers"),
    "vgg16": ZooEntry(cnn.VGG16, (3, 224, 224), 1000, "VGG-16, 16 layers"),
    "vit_b32": ZooEntry(vit.vit_b32, (3, 224, 224), 1000, "ViT-B/32, 98 layers"),
}

#: Names accepted by :func:`build`, small models first.
MODEL_NAMES: tuple[str, ...] = tuple(ZOO)


def _entry(name: str) -> ZooEntry:
    if name not in ZOO:
        raise CimcError(f"unknown model '{name}'; known models: {', '.join(MODEL_NAMES)}, "
                        "or FILE.py:FUNCTION")
    return ZOO[name]


def resolve_model(name: str) -> str:
    """``--model``: a zoo name as it is, or ``FILE.py:FUNCTION`` loaded, checked and made
    canonical (absolute path, so checkpoints and workers find the same file)."""
    if is_user_model(name):
        return load_user_model(name).spec
    _entry(name)
    return name


def input_shape(name: str) -> tuple[int, ...]:
    """The input shape ``(C, H, W)`` of a model (without the batch dimension)."""
    if is_user_model(name):
        return load_user_model(name).input_shape
    return _entry(name).input_shape


def num_classes(name: str) -> int:
    """The number of outputs (classes) of a model as built by default."""
    if is_user_model(name):
        return load_user_model(name).num_classes
    return _entry(name).num_classes


@cache
def _layer_names(name: str) -> tuple[str, ...]:
    factory = LayerFactory(record=True)
    entry = _entry(name)
    entry.make(factory, num_classes=entry.num_classes)
    return tuple(factory.names)


def layer_names(name: str) -> list[str]:
    """Crossbar layer names (module paths) of a zoo model in forward-execution order.

    This is the row order of a policy and the order of the crossbar nodes (Conv, Gemm, MatMul) in
    the exported ONNX graph.
    """
    if is_user_model(name):
        return load_user_model(name).layer_names
    return list(_layer_names(name))


def num_layers(name: str) -> int:
    """Number of crossbar layers ``L`` of a model (the rows of its policy)."""
    return len(layer_names(name))


def build(
    name: str,
    policy: np.ndarray | list | None = None,
    *,
    seed: int = 0,
    num_classes: int | None = None,
    per_channel: bool = False,
    quant: bool = True,
) -> nn.Module:
    """Build a zoo model from Brevitas quant layers at ``policy`` (``None``: every layer 8/8).

    ``policy`` is an ``(L, 2)`` int array of ``[w_bits, a_bits]`` per crossbar layer in the order
    of :func:`layer_names`. Weights are initialised from ``seed`` (the global torch RNG is left
    untouched). ``quant=False`` builds the float twin with plain ``torch.nn`` layers and the same
    parameter names, for float pre-training. The model carries ``cimc_name`` and
    ``cimc_input_shape`` attributes used by :func:`cimc.models.export_onnx`. A user's model
    (``FILE.py:FUNCTION``) is built by :func:`cimc.models.user.build_user`.
    """
    if is_user_model(name):
        info = load_user_model(name)
        if num_classes not in (None, info.num_classes):
            raise CimcError(f"{info.spec}: has {info.num_classes} outputs; it cannot be built "
                            f"with {num_classes} classes")
        checked = None if policy is None else validate_policy(policy, name)
        return build_user(name, checked, seed=seed, quant=quant, per_channel=per_channel)
    entry = _entry(name)
    names = layer_names(name)
    bits = None
    if policy is not None:
        checked = validate_policy(policy, name)
        bits = {n: (int(w), int(a)) for n, (w, a) in zip(names, checked, strict=True)}
    factory = LayerFactory(bits=bits, quant=quant, per_channel=per_channel)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = entry.make(factory, num_classes=num_classes or entry.num_classes)
    if factory.names != names:  # the constructors must be deterministic
        raise AssertionError(f"{name}: layer order changed between record and build")
    model.cimc_name = name
    model.cimc_input_shape = entry.input_shape
    return model


MIN_BITS = 1
MAX_BITS = 8


def _as_int_array(policy: object, where: str) -> np.ndarray:
    arr = np.asarray(policy)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise CimcError(f"{where}: policy must have shape (L, 2), got {arr.shape}")
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise CimcError(f"{where}: policy bits must be integers")
    elif arr.dtype.kind not in "iu":
        raise CimcError(f"{where}: policy bits must be integers, got dtype {arr.dtype}")
    return arr.astype(np.int64)


def validate_policy(policy: object, name: str) -> np.ndarray:
    """Check ``policy`` against zoo model ``name``; return it as an ``(L, 2)`` int64 array.

    Raises :class:`CimcError` for an unknown model, a wrong shape or layer count, non-integers, or
    bits outside 1..8 (naming the first offending layer).
    """
    names = layer_names(name)
    arr = _as_int_array(policy, f"policy for '{name}'")
    if arr.shape[0] != len(names):
        raise CimcError(
            f"policy for '{name}' has {arr.shape[0]} layers, the model has {len(names)}"
        )
    for i, (w, a) in enumerate(arr):
        for kind, bits in (("w_bits", w), ("a_bits", a)):
            if not MIN_BITS <= bits <= MAX_BITS:
                raise CimcError(
                    f"policy for '{name}', layer {i} '{names[i]}': {kind} = {bits} is outside "
                    f"{MIN_BITS}..{MAX_BITS}"
                )
    return arr
