"""Constants kept outside the IR text.

A ``cimq.const`` (or ``xbar`` constant) refers to its data with ``#cimq.blob<"name", "digest">``.
The arrays live in a process-wide, content-addressed :class:`WeightStore`; when a module is
written to ``model.mlir`` its blobs go to ``model.weights.npz`` beside it, and reading
``model.mlir`` loads that file back. Small constants can stay inline (``dense<...>``).
"""

from __future__ import annotations

import hashlib
import io
import os
import zipfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from cimc.errors import InputFileError

#: Constants with at most this many elements are printed inline as ``dense<...>``.
INLINE_LIMIT = 16


def digest_of(array: np.ndarray) -> str:
    """A 20-hex-digit content hash over dtype, shape and bytes."""
    arr = np.ascontiguousarray(array)
    h = hashlib.blake2b(digest_size=10)
    h.update(str(arr.dtype).encode())
    h.update(str(arr.shape).encode())
    h.update(arr.reshape(-1).view(np.uint8))  # hashes the buffer in place: no copy of the bytes
    return h.hexdigest()


class WeightStore:
    """Content-addressed arrays, shared by every module of the process."""

    def __init__(self) -> None:
        self._arrays: dict[str, np.ndarray] = {}

    def put(self, array: np.ndarray) -> str:
        arr = np.ascontiguousarray(array)
        arr.setflags(write=False)
        key = digest_of(arr)
        self._arrays.setdefault(key, arr)
        return key

    def get(self, digest: str) -> np.ndarray:
        try:
            return self._arrays[digest]
        except KeyError:
            raise InputFileError(
                f"constant data with digest {digest} is not loaded: keep the .weights.npz file "
                "next to the .mlir file (or pass --weights)"
            ) from None

    def __contains__(self, digest: str) -> bool:
        return digest in self._arrays

    def save(self, path: str | os.PathLike[str], digests: Iterable[str]) -> None:
        """Write the given blobs to an .npz file, atomically."""
        from cimc.cli_util import atomic_output

        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
            for d in sorted(set(digests)):
                member = io.BytesIO()
                np.save(member, self.get(d), allow_pickle=False)
                zf.writestr(f"{d}.npy", member.getvalue())
        with atomic_output(path, "wb") as fh:
            fh.write(buf.getvalue())  # type: ignore[attr-defined]

    def load(self, path: str | os.PathLike[str]) -> int:
        """Load an .npz written by :meth:`save`; returns the number of arrays."""
        p = Path(path)
        if not p.is_file():
            raise InputFileError(f"{p}: weights file not found")
        try:
            with np.load(p, allow_pickle=False) as data:
                for key in data.files:
                    arr = data[key]
                    if digest_of(arr) != key:
                        raise InputFileError(f"{p}: array {key} does not match its digest")
                    arr.setflags(write=False)
                    self._arrays[key] = arr
                return len(data.files)
        except (zipfile.BadZipFile, ValueError, OSError) as exc:
            raise InputFileError(f"{p}: not a cimc weights file ({exc})") from None


STORE = WeightStore()


def sidecar_path(mlir_path: str | os.PathLike[str]) -> Path:
    """``model.mlir`` -> ``model.weights.npz``."""
    p = Path(mlir_path)
    return p.with_name(p.stem + ".weights.npz")
