"""A user's own data set: ``--dataset FILE.npz`` or ``--dataset FILE.py:FUNCTION``.

The arrays are ``x_train, y_train, x_val, y_val`` and optionally ``x_test, y_test`` (both or
neither): an ``.npz`` read as data (no pickle, size-checked by :mod:`cimc.safe_read`), or the
``dict`` of arrays that ``FUNCTION()`` returns (which runs the user's code, by design). ``x_*`` are
inputs of one shape per sample, ``(N, C, H, W)`` for images, ``float32`` (used as they are) or
``uint8`` (pixels, mapped to ``[-1, 1]`` like the built-in sets by :func:`cimc.data.load_dataset`);
``y_*`` are integer class labels ``>= 0``, one per sample. Without ``x_test``/``y_test`` the ``val``
split stands in for ``test`` (said once on stderr). Every problem is one line naming the file and
the array. Loaded once per process (again after the file changes).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from cimc.errors import InputFileError
from cimc.user_code import call_function, canonical, is_code_spec

OPTION = "--dataset"
SPLITS = ("train", "val", "test")
REQUIRED = ("x_train", "y_train", "x_val", "y_val")
OPTIONAL = ("x_test", "y_test")
_WARNED: set[str] = set()


def is_user_dataset(name: str) -> bool:
    """Whether ``name`` is ``FILE.npz`` or ``FILE.py:FUNCTION`` rather than a built-in set."""
    return name.endswith(".npz") or is_code_spec(name)


@dataclass(frozen=True)
class UserData:
    """A checked user data set: ``splits[split] = (x, y)``; ``has_test`` is whether the file had
    its own test split."""

    spec: str
    splits: dict[str, tuple[np.ndarray, np.ndarray]]
    has_test: bool

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self.splits["train"][0].shape[1:])

    @property
    def max_label(self) -> tuple[str, int]:
        """``(y_<split>, label)``: the largest label of all splits and its array."""
        return max(((f"y_{s}", int(y.max())) for s, (_, y) in self.splits.items()),
                   key=lambda item: item[1])


def resolve_data_spec(text: str) -> str:
    """The canonical form of a user data set: an absolute ``.npz`` path or ``ABS.py:FUNCTION``."""
    if is_code_spec(text):
        return canonical(text, OPTION)
    return str(Path(text).expanduser().resolve())


def load_user_data(text: str) -> UserData:
    """Read and check a user data set (cached per file version)."""
    spec = resolve_data_spec(text)
    path = Path(spec.rpartition(":")[0] if is_code_spec(spec) else spec)
    try:
        st = path.stat()
    except OSError:
        raise InputFileError(f"{path}: {OPTION} file not found") from None
    return _load(spec, (st.st_mtime_ns, st.st_size))


@cache
def _load(spec: str, stamp: tuple[int, int]) -> UserData:
    del stamp  # part of the cache key only
    if is_code_spec(spec):
        spec, arrays = call_function(spec, OPTION, "data set file")
        if not isinstance(arrays, dict):
            raise InputFileError(f"{spec}: returned a {type(arrays).__name__}, not a dict of arrays "
                                 f"{', '.join(REQUIRED + OPTIONAL)}")
    else:
        from cimc.safe_read import load_array

        arrays = load_array(spec, "data set")
        if not isinstance(arrays, dict):
            raise InputFileError(f"{spec}: a single array; expected an .npz with arrays "
                                 f"{', '.join(REQUIRED)}")
    return _check(spec, arrays)


def _check(where: str, arrays: dict[str, Any]) -> UserData:
    unknown = [k for k in arrays if k not in REQUIRED + OPTIONAL]
    if unknown:
        raise InputFileError(f"{where}: unexpected array '{unknown[0]}'; expected "
                             f"{', '.join(REQUIRED)} (and optionally {', '.join(OPTIONAL)})")
    missing = [k for k in REQUIRED if k not in arrays]
    if missing:
        raise InputFileError(f"{where}: no array '{missing[0]}' (has {', '.join(arrays) or 'none'})")
    if ("x_test" in arrays) != ("y_test" in arrays):
        have, lack = ("x_test", "y_test") if "x_test" in arrays else ("y_test", "x_test")
        raise InputFileError(f"{where}: has '{have}' but no '{lack}'")
    has_test = "x_test" in arrays
    splits = {s: _split(where, s, arrays[f"x_{s}"], arrays[f"y_{s}"])
              for s in SPLITS if s != "test" or has_test}
    shapes = {s: x.shape[1:] for s, (x, _) in splits.items()}
    if len(set(shapes.values())) > 1:
        other = next(s for s in splits if shapes[s] != shapes["train"])
        raise InputFileError(f"{where}: x_{other} has samples of shape {shapes[other]}, x_train of "
                             f"{shapes['train']}")
    if not has_test:
        splits["test"] = splits["val"]
    return UserData(where, splits, has_test)


def _split(where: str, split: str, x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    xn, yn = f"x_{split}", f"y_{split}"
    for name, arr in ((xn, x), (yn, y)):
        if not isinstance(arr, np.ndarray):
            raise InputFileError(f"{where}: '{name}' is a {type(arr).__name__}, not a numpy array")
    if x.dtype not in (np.float32, np.uint8):
        raise InputFileError(f"{where}: {xn} has dtype {x.dtype}; expected float32 or uint8")
    if x.ndim < 2:
        raise InputFileError(f"{where}: {xn} has shape {x.shape}; expected (N, ...) samples, "
                             "e.g. (N, C, H, W) images")
    if len(x) == 0:
        raise InputFileError(f"{where}: {xn} is empty")
    if x.dtype == np.float32 and not np.isfinite(x).all():
        raise InputFileError(f"{where}: {xn} has NaN or infinite values")
    if y.dtype.kind not in "iu":
        raise InputFileError(f"{where}: {yn} has dtype {y.dtype}; labels are integers")
    if y.shape != (len(x),):
        raise InputFileError(f"{where}: {yn} has shape {y.shape}; expected ({len(x)},), one label "
                             f"per sample of {xn}")
    if y.min() < 0:
        raise InputFileError(f"{where}: {yn} has a negative label ({int(y.min())}); labels are "
                             "classes 0, 1, ...")
    return x, y.astype(np.int64)


def user_split(text: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)`` of ``split`` as stored (``x`` float32 or uint8, ``y`` int64)."""
    if split not in SPLITS:
        raise InputFileError(f"unknown split '{split}'; known: {', '.join(SPLITS)}")
    data = load_user_data(text)
    if split == "test" and not data.has_test and data.spec not in _WARNED:
        _WARNED.add(data.spec)
        print(f"warning: {data.spec} has no x_test/y_test; the val split stands in for test",
              file=sys.stderr)
    return data.splits[split]
