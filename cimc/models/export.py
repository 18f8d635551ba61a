"""ONNX QCDQ export of zoo models, and a cache of exported zoo models."""

from __future__ import annotations

import copy
import hashlib
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cimc.errors import CimcError

#: Bump when the architectures or the export settings change, to invalidate cached files.
EXPORT_FORMAT = 1
OPSET = 19


def export_onnx(model: nn.Module, path: str | Path, *, batch: int = 1, outputs: Any = None) -> Path:
    """Export ``model`` as ONNX QCDQ (TorchScript exporter, opset 19, input named ``"x"``).

    Exports a deep copy in eval mode (a failed Brevitas export leaves state behind in the module
    it ran on), with a fixed batch size, into a temporary folder; the bytes then go to ``path``
    all or nothing (with ``outputs``, a :class:`cimc.safe_write.OutputSet`, only added to it).
    """
    from brevitas.export import export_onnx_qcdq

    from cimc.safe_write import OutputSet

    shape = getattr(model, "cimc_input_shape", None)
    if shape is None:
        raise CimcError(
            "export_onnx: the model has no cimc_input_shape (build it with cimc.models.build)"
        )
    target = Path(path)
    clone = copy.deepcopy(model).eval()
    x = torch.zeros(batch, *shape)
    with tempfile.TemporaryDirectory(prefix="cimc-export-") as tmp_dir:
        tmp = os.path.join(tmp_dir, "model.onnx")
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            export_onnx_qcdq(clone, args=x, export_path=tmp, dynamo=False, opset_version=OPSET,
                             keep_initializers_as_inputs=False, input_names=["x"])
        with open(tmp, "rb") as fh:
            data = fh.read()
    outs = OutputSet() if outputs is None else outputs
    outs.put(target, data, "the ONNX export")
    if outputs is None:
        outs.commit()
    return target


def default_cache_dir() -> Path:
    """``$CIMC_CACHE_DIR`` or ``~/.cache/cimc/models``."""
    env = os.environ.get("CIMC_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "cimc" / "models"


def policy_key(policy: np.ndarray | None) -> str:
    """A short stable key for a policy (``"w8a8"`` for ``None``)."""
    if policy is None:
        return "w8a8"
    arr = np.ascontiguousarray(np.asarray(policy, dtype=np.int64))
    return "p" + hashlib.sha1(arr.tobytes()).hexdigest()[:12]


def zoo_onnx(
    name: str,
    policy: np.ndarray | list | None = None,
    *,
    seed: int = 0,
    cache_dir: str | Path | None = None,
) -> Path:
    """Build zoo model ``name`` at ``policy`` (seeded random weights), export it once, cache it.

    Files live under ``cache_dir`` (default :func:`default_cache_dir`) as
    ``<name>-<policy key>-s<seed>-v<format>.onnx``; a cached file is returned without rebuilding.
    """
    from cimc.models.policy import validate_policy
    from cimc.models.zoo import build

    checked = None if policy is None else validate_policy(policy, name)
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = root / f"{name}-{policy_key(checked)}-s{seed}-v{EXPORT_FORMAT}.onnx"
    if path.is_file():
        return path
    model = build(name, checked, seed=seed)
    return export_onnx(model, path)
