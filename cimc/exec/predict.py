"""Top-1 predictions of a model output: the one definition used by ``cimc run`` and the noise runs.

An output holds one class vector per input. Its *sample axis* is found from the inputs' batch:
the axis the batch has in the input (``--batch-axis``; 0 for the usual batch-first models) when
it has the batch's size there, else axis 0 when that has it, else the only axis of that size.
Everything else of the output is the class vector (flattened in order), so a sequence-first
model predicts exactly what its batch-first twin predicts.
"""

from __future__ import annotations

import numpy as np

from cimc.errors import ExecutionError


def sample_axis(shape: tuple[int, ...], n: int, axis: int = 0) -> int | None:
    """The axis of an output of ``shape`` that holds its ``n`` inputs (see the module), or None."""
    if 0 <= axis < len(shape) and shape[axis] == n:
        return axis
    if shape and shape[0] == n:
        return 0
    found = [i for i, d in enumerate(shape) if d == n]
    return found[0] if len(found) == 1 else None


def top1(out: np.ndarray, n: int | None = None, axis: int = 0) -> np.ndarray | None:
    """Predicted class ``[n]`` of each of the ``n`` inputs (``n`` None: ``out``'s axis 0 is the
    batch); None when no axis of ``out`` holds ``n`` inputs."""
    n = (int(out.shape[0]) if out.ndim else 1) if n is None else n
    ax = sample_axis(tuple(out.shape), n, axis)
    return None if ax is None else np.moveaxis(out, ax, 0).reshape(n, -1).argmax(axis=1)


def hits(out: np.ndarray, labels: np.ndarray, axis: int = 0, what: str = "output 0") -> int:
    """How many inputs' top-1 in ``out`` equals their label; raises :class:`ExecutionError` when
    ``out`` has no class vector per input."""
    pred = top1(out, len(labels), axis)
    if pred is None:
        raise ExecutionError(f"--labels: {what} has shape {list(out.shape)}, with no axis of "
                             f"{len(labels)} (one class vector per input), so it has no top-1 accuracy")
    return int((pred == labels).sum())


def accuracy(out: np.ndarray, labels: np.ndarray, axis: int = 0, what: str = "output 0") -> float:
    """Top-1 accuracy in percent of ``out`` against one label per input (:func:`hits`)."""
    return 100.0 * hits(out, labels, axis, what) / len(labels)


def changed(a: np.ndarray | None, b: np.ndarray | None) -> tuple[int, float] | tuple[None, None]:
    """How many inputs (count, fraction) have a different top-1 in ``a`` and ``b``."""
    if a is None or b is None or a.size == 0:
        return None, None
    diff = a != b
    return int(diff.sum()), float(diff.mean())
