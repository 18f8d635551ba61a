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

    def npz_bytes(self, digests: Iterable[str]) -> bytes:
        """The given blobs as the bytes of an (uncompressed) .npz file."""
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
            for d in sorted(set(digests)):
                member = io.BytesIO()
                np.save(member, self.get(d), allow_pickle=False)
                zf.writestr(f"{d}.npy", member.getvalue())
        return buf.getvalue()

    def save(self, path: str | os.PathLike[str], digests: Iterable[str]) -> None:
        """Write the given blobs to an .npz file, atomically."""
        from cimc.cli_util import atomic_write_bytes

        atomic_write_bytes(path, self.npz_bytes(digests))

    def load(self, path: str | os.PathLike[str]) -> int:
        """Load an .npz written by :meth:`save`; returns the number of arrays (never unpickles)."""
        from cimc.safe_read import load_array

        p = Path(path)
        try:
            data = load_array(p, "weights", npz=True)
        except InputFileError as exc:
            if "not found" in exc.message:
                raise
            raise InputFileError(f"{p}: not a cimc weights file ({exc.message.split(': ', 1)[-1]})") from None
        if not isinstance(data, dict):
            raise InputFileError(f"{p}: not a cimc weights file (a single .npy array)")
        for key, arr in data.items():
            if digest_of(arr) != key:
                raise InputFileError(f"{p}: array {key} does not match its digest")
            arr.setflags(write=False)
            self._arrays[key] = arr
        return len(data)


STORE = WeightStore()


def sidecar_path(mlir_path: str | os.PathLike[str]) -> Path:
    """``model.mlir`` -> ``model.weights.npz``."""
    p = Path(mlir_path)
    return p.with_name(p.stem + ".weights.npz")
