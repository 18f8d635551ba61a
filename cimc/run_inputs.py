"""The inputs and labels of ``cimc run``: loaded as data, matched to ``@main`` by name, checked.

- one ``.npy`` feeds a model with one input; an ``.npz`` feeds every input by name (the ONNX
  input names, ``cimq.name`` on ``@main``'s arguments) or, for a one-input model, its only array;
  a model with several inputs and a plain ``.npy`` is refused with the names it needs;
- non-finite values (NaN, +-inf) are refused unless ``allow_nonfinite``: then, before the run,
  NaN becomes 0 and +-inf the largest finite float32 of that sign, so the model's input quantizer
  saturates them to its largest/smallest code (the same at every level);
- labels are a 1-D integer array, one per input along the inputs' batch axis (``--batch-axis``),
  each in ``0 .. classes - 1``;
- the memory a run needs (inputs and the largest activation of the batch, a few copies) is
  estimated before anything runs and refused when it exceeds the memory available.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from cimc.errors import ExecutionError, InputFileError
from cimc.safe_read import human_bytes, load_array

#: Working copies of the largest activation assumed by the memory estimate.
ACTIVATION_COPIES = 4


def _names(attrs: Any, count: int, prefix: str) -> list[str]:
    data = attrs.data if attrs is not None else ()
    names = []
    for i in range(count):
        name = None
        if i < len(data) and "cimq.name" in data[i].data:
            name = data[i].data["cimq.name"].data
        names.append(name or f"{prefix}{i}")
    return names


def input_names(main: Any) -> list[str]:
    """``@main``'s input names (``cimq.name``), ``input<i>`` where a name is missing."""
    return _names(main.arg_attrs, len(main.function_type.inputs.data), "input")


def output_names(main: Any) -> list[str]:
    """``@main``'s output names (``cimq.name``), ``output<i>`` where a name is missing."""
    return _names(main.res_attrs, len(main.function_type.outputs.data), "output")


def _arg_shapes(main: Any) -> list[list[int]]:
    return [list(t.get_shape()) for t in main.function_type.inputs.data]


def random_batch(module: Any, main: Any, batch: int | None) -> int:
    """The batch of ``cimc run``'s random input: ``--batch`` (default 1); a model typed at one batch
    (``cimq.fixed_batch``: its batch is off axis 0, or a Reshape fixes it) runs at that batch
    only, and another ``--batch`` is refused with one line."""
    from cimc.analysis import batch_axes, run_batch

    typed = run_batch(module)
    if typed is None:
        return 1 if batch is None else batch
    if batch is not None and batch != typed:
        axes, names = batch_axes(module), input_names(main)
        where = f" (axis {axes[0]} of input {names[0]})" if axes and names else ""
        raise InputFileError(f"--batch {batch}: the model is typed at batch {typed}{where} and runs at "
                             "that batch only; re-export it at the batch you want")
    return typed


def load_inputs(path: Path | None, main: Any, batch: int, seed: int, *,
                allow_nonfinite: bool = False) -> list[np.ndarray]:
    """The arrays to feed ``@main``, in argument order (random seeded ones without ``path``)."""
    names = input_names(main)
    if path is None:
        rng = np.random.default_rng(seed)
        fixed = "cimq.fixed_batch" in main.attributes  # typed at one batch: keep its shape
        return [rng.standard_normal([batch if i == 0 and not (fixed and d >= 0) else d
                                     for i, d in enumerate(s)]).astype(np.float32)
                for s in _arg_shapes(main)]
    data = load_array(path, "input", npz=True)
    arrays = _by_name(data, names, path)
    for name, arr in zip(names, arrays):
        _check_values(arr, name, path, allow_nonfinite)
    if allow_nonfinite:
        big = float(np.finfo(np.float32).max)
        arrays = [np.nan_to_num(a.astype(np.float32), nan=0.0, posinf=big, neginf=-big)
                  if a.dtype.kind == "f" else a for a in arrays]
    return arrays


def _by_name(data: Any, names: list[str], path: Path) -> list[np.ndarray]:
    if not isinstance(data, dict):
        if len(names) != 1:
            raise InputFileError(
                f"{path}: the model takes {len(names)} inputs ({', '.join(names)}); give an .npz "
                "with one array per input name"
            )
        return [data]
    if len(names) == 1 and len(data) == 1:
        return list(data.values())
    missing = [n for n in names if n not in data]
    if missing:
        raise InputFileError(
            f"{path}: no array named {', '.join(missing)}; the model's inputs are {', '.join(names)} "
            f"(the file has {', '.join(data) or 'none'})"
        )
    extra = [k for k in data if k not in names]
    if extra:
        raise InputFileError(f"{path}: array {extra[0]} is not an input of the model ({', '.join(names)})")
    return [data[n] for n in names]


def _check_values(arr: np.ndarray, name: str, path: Path, allow_nonfinite: bool) -> None:
    if arr.dtype.kind not in "fiub":
        raise InputFileError(f"{path}: input {name} has dtype {arr.dtype}; the model takes numbers")
    if arr.size == 0:
        raise InputFileError(f"{path}: input {name} is empty (shape {list(arr.shape)})")
    if arr.dtype.kind == "f" and not allow_nonfinite:
        bad = ~np.isfinite(arr)
        if bad.any():
            first = tuple(int(i) for i in np.argwhere(bad)[0])
            raise InputFileError(
                f"{path}: input {name} has {int(bad.sum())} non-finite value(s) (first {arr[first]} at "
                f"{list(first)}); pass --allow-nonfinite to quantize them (NaN -> 0, inf saturates)"
            )


def load_labels(path: Path, n: int, classes: int | None) -> np.ndarray:
    """Integer class labels ``[n]`` from a ``.npy`` file, each in ``0 .. classes - 1``."""
    labels = load_array(path, "labels", npz=False)
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise InputFileError(
            f"{path}: labels must be a 1-D integer array, got {labels.dtype} of shape {list(labels.shape)}"
        )
    if labels.shape[0] != n:
        raise InputFileError(f"{path}: {labels.shape[0]} labels for a batch of {n} inputs")
    if classes is not None and labels.size:
        lo, hi = int(labels.min()), int(labels.max())
        if lo < 0 or hi >= classes:
            bad = lo if lo < 0 else hi
            raise InputFileError(f"{path}: label {bad} is outside 0..{classes - 1} (the model has {classes} classes)")
    return labels.astype(np.int64)


def classes_of(main: Any) -> int | None:
    """Classes of the first output (its last dimension) when it is static."""
    outs = list(main.function_type.outputs.data)
    if not outs:
        return None
    shape = outs[0].get_shape()
    return int(shape[-1]) if shape and shape[-1] > 0 else None


def available_memory() -> int:
    """Bytes of memory available to this process (MemAvailable, else physical memory)."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def needed_memory(module: Any, batch: int) -> int:
    """An estimate of the bytes a run of ``batch`` inputs needs: the largest per-sample value of
    the module (8 bytes per element: int64 accumulators) times the batch and a few copies."""
    largest = 1
    for op in module.walk():
        for res in op.results:
            shape = getattr(res.type, "get_shape", lambda: ())()
            if shape:
                per_sample = math.prod(max(d, 1) for d in shape[1:])
                largest = max(largest, per_sample)
    return largest * 8 * batch * ACTIVATION_COPIES


def check_memory(module: Any, batch: int, what: str) -> None:
    """Refuse a run that would need more memory than the machine has available."""
    need, have = needed_memory(module, batch), available_memory()
    if need > have:
        raise ExecutionError(
            f"{what}: a batch of {batch:,} needs about {human_bytes(need)}; this machine has "
            f"{human_bytes(have)} available"
        )
