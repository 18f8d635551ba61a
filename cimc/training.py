"""Training, quantisation-aware training, fine-tuning and evaluation of zoo models.

The pipeline (cim-model.md section 4)::

    float pre-train      build(name, quant=False)                  -> train()
    8-bit QAT            quantize_from_float(name, float_state)    -> train()
    fine-tune at policy  finetune(name, policy, qat8_state, ...)   (brief; the search's inner loop)
    full QAT at a final policy: finetune(name, final_policy, qat8_state, epochs=...)

Loading float weights into a quantised model: the float twin has plain ``torch.nn`` layers with
the same parameter names, so every float key matches; the quantised model additionally has the
learned activation scales (``*.input_quant.*``, ``*.a_quant.*``, ``*.w_quant.*``), which are missing
from the float state and start from runtime statistics in the first training steps. That is the
only mismatch allowed (``strict=False`` for those keys; anything else raises). Between quantised
models of different policies the keys are identical and loading is strict.

Everything is seeded (model init, shuffling), runs on the CPU with ``torch.set_num_threads(2)``
and shows tqdm bars unless ``progress=False``. Optimiser: Adam with a cosine learning-rate decay
over the run.
"""

from __future__ import annotations

import os

import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cimc.errors import CimcError, InputFileError

#: torch threads for training and evaluation (the machine has 2 cores); ``CIMC_THREADS`` overrides,
#: e.g. 1 when several jobs share the cores (read at every call, see :func:`num_threads`).
NUM_THREADS = int(os.environ.get("CIMC_THREADS", "2"))


def num_threads() -> int:
    """Torch threads for training and evaluation: ``$CIMC_THREADS``, default 2."""
    raw = os.environ.get("CIMC_THREADS", "").strip()
    return int(raw) if raw.isdigit() and int(raw) > 0 else NUM_THREADS


QUANT_KEY_MARKERS = ("input_quant.", "a_quant.", "w_quant.", "weight_quant.", "bias_quant.",
                     "act_quant.")  # the last: Brevitas' QuantMultiheadAttention's own quantizers

Dataset = str | tuple[np.ndarray, np.ndarray]


def _data(dataset: Dataset, split: str, limit: int | None) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(dataset, str):
        from cimc.data import load_dataset

        return load_dataset(dataset, split, limit=limit)
    x, y = dataset
    if limit is not None:
        x, y = x[:limit], y[:limit]
    return np.asarray(x, dtype=np.float32), np.asarray(y, dtype=np.int64)


def _progress(total: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=not enabled, leave=False, dynamic_ncols=True)


def train(
    model: nn.Module,
    dataset: Dataset,
    *,
    epochs: float = 1,
    lr: float = 1e-3,
    batch_size: int = 128,
    limit: int | None = None,
    seed: int = 0,
    progress: bool = True,
    steps: int | None = None,
    split: str = "train",
    weight_decay: float = 0.0,
) -> dict[str, Any]:
    """Train ``model`` in place with cross-entropy; return ``{"steps", "loss", "epoch_seconds"}``.

    ``dataset`` is a data-set name (see :mod:`cimc.data`) or an ``(x, y)`` pair of arrays.
    ``steps``, when given, overrides ``epochs`` (batches drawn from reshuffled epochs).
    ``epoch_seconds`` is the wall time per full pass over the data (extrapolated when fewer steps
    than one epoch were run).
    """
    torch.set_num_threads(num_threads())
    x, y = _data(dataset, split, limit)
    if len(x) == 0:
        raise CimcError("train: the data set split is empty")
    per_epoch = math.ceil(len(x) / batch_size)
    total = steps if steps is not None else max(1, round(epochs * per_epoch))
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda i: 0.5 * (1 + math.cos(math.pi * min(i, total) / total)))
    loss_fn = nn.CrossEntropyLoss()
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    model.train()
    done, running, start = 0, 0.0, time.perf_counter()
    with _progress(total, "train", progress) as bar:
        while done < total:
            perm = torch.randperm(len(xt), generator=gen)
            for i in range(0, len(perm), batch_size):
                if done >= total:
                    break
                idx = perm[i : i + batch_size]
                loss = loss_fn(model(xt[idx]), yt[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                running = loss.item() if done == 0 else 0.98 * running + 0.02 * loss.item()
                done += 1
                bar.update(1)
                bar.set_postfix(loss=f"{running:.3f}", refresh=False)
    elapsed = time.perf_counter() - start
    model.eval()
    return {"steps": done, "loss": running, "epoch_seconds": elapsed * per_epoch / done}


@torch.no_grad()
def evaluate(
    model: nn.Module,
    dataset: Dataset,
    split: str = "test",
    limit: int | None = None,
    *,
    batch_size: int = 500,
    progress: bool = False,
) -> float:
    """Top-1 accuracy in percent of ``model`` on ``split`` of ``dataset``."""
    torch.set_num_threads(num_threads())
    x, y = _data(dataset, split, limit)
    if len(x) == 0:
        raise CimcError("evaluate: the data set split is empty")
    model.eval()
    correct = 0
    xt = torch.from_numpy(x)
    with _progress(math.ceil(len(x) / batch_size), "eval", progress) as bar:
        for i in range(0, len(x), batch_size):
            pred = model(xt[i : i + batch_size]).argmax(dim=1).numpy()
            correct += int((pred == y[i : i + batch_size]).sum())
            bar.update(1)
    return 100.0 * correct / len(x)


def load_float_weights(model: nn.Module, float_state: dict[str, torch.Tensor]) -> list[str]:
    """Load float weights into a quantised model; return the (quantiser) keys left at init.

    Raises :class:`CimcError` when a key other than a quantiser's is missing or unexpected.
    """
    result = model.load_state_dict(float_state, strict=False)
    bad_missing = [k for k in result.missing_keys if not any(m in k for m in QUANT_KEY_MARKERS)]
    if bad_missing or result.unexpected_keys:
        raise CimcError(
            "float weights do not fit the model: missing "
            f"{bad_missing[:3]}, unexpected {list(result.unexpected_keys)[:3]}"
        )
    return list(result.missing_keys)


def quantize_from_float(
    name: str,
    float_state: dict[str, torch.Tensor],
    policy: np.ndarray | None = None,
    *,
    seed: int = 0,
    per_channel: bool = False,
    num_classes: int | None = None,
) -> nn.Module:
    """Build ``name`` at ``policy`` (default 8/8) and load float pre-trained weights into it."""
    from cimc.models import build

    model = build(name, policy, seed=seed, per_channel=per_channel, num_classes=num_classes)
    load_float_weights(model, float_state)
    return model


def finetune(
    name: str,
    policy: np.ndarray | list | None,
    state_dict: dict[str, torch.Tensor],
    dataset: Dataset,
    *,
    steps: int | None = None,
    epochs: float | None = None,
    lr: float = 2e-4,
    batch_size: int = 128,
    limit: int | None = None,
    seed: int = 0,
    progress: bool = False,
    per_channel: bool = False,
    num_classes: int | None = None,
) -> nn.Module:
    """Rebuild ``name`` at ``policy``, load quantised (8-bit QAT) weights strictly, fine-tune.

    Give ``steps`` (e.g. the search's brief fine-tune) or ``epochs`` (the full QAT at the final
    policy); with neither, one epoch. Returns the model in eval mode.
    """
    from cimc.models import build

    model = build(name, policy, seed=seed, per_channel=per_channel, num_classes=num_classes)
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise CimcError(f"checkpoint does not fit model '{name}': {first}") from None
    if steps is None and epochs is None:
        epochs = 1
    if steps == 0:
        return model.eval()
    train(model, dataset, epochs=epochs or 1, steps=steps, lr=lr, batch_size=batch_size,
          limit=limit, seed=seed, progress=progress)
    return model


def save_checkpoint(path: str | Path, model: nn.Module, meta: dict[str, Any], *, outputs: Any = None) -> Path:
    """Write ``model.state_dict()`` to ``path`` (``.pt``) and ``meta`` to ``path.json``, together:
    both or neither (with ``outputs``, a :class:`cimc.safe_write.OutputSet`, only added to it).

    ``meta`` should hold at least ``model`` (zoo name), ``float`` (bool) and ``policy`` (list of
    ``[w, a]`` or ``None``).
    """
    import io

    from cimc.safe_write import OutputSet

    p = Path(path)
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    outs = OutputSet() if outputs is None else outputs
    outs.put(p, buf.getvalue(), "the checkpoint")
    outs.put(meta_path(p), json.dumps(meta, indent=1, default=_json_default) + "\n", "the checkpoint's metadata")
    if outputs is None:
        outs.commit()
    return p


def meta_path(path: str | Path) -> Path:
    """The metadata JSON beside a checkpoint: ``model.pt`` -> ``model.json``."""
    return Path(path).with_suffix(".json")


def load_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a checkpoint written by :func:`save_checkpoint`: ``(state_dict, meta)``.

    The file is size-checked and read with ``torch.load(weights_only=True)``, which only rebuilds
    tensors and plain containers (never arbitrary objects: a crafted pickle cannot run code);
    the result must be a dict of tensors.
    """
    import io

    from cimc.safe_read import LIMITS, read_bytes, read_json

    p = Path(path)
    data = read_bytes(p, "checkpoint", LIMITS["checkpoint"])
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds for a bad file
        raise InputFileError(f"{p}: not a readable checkpoint ({type(exc).__name__})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputFileError(f"{p}: not a model checkpoint (expected a state dict of tensors)")
    mp = meta_path(p)
    meta = read_json(mp, "checkpoint metadata") if mp.is_file() else {}
    if not isinstance(meta, dict):
        raise InputFileError(f"{mp}: checkpoint metadata must be a JSON object")
    return state, meta


def _json_default(obj: object) -> object:
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
