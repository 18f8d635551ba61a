"""Constants kept outside the IR text: blobs owned by the module that uses them.

A ``cimq.const`` (or any op) refers to large data with ``#cimq.blob<"name", "digest">``. The
attribute holds a :class:`Blob`: the read-only array, its content digest (computed when first
asked), and the forms derived from it by later steps (cells, float copies), built once and
dropped with the blob. A blob belongs to the modules whose attributes hold it (clones share it),
so two models in one process cannot mix and memory goes with the module; nothing is global.

On disk a module is ``model.mlir`` plus ``model.weights.npz`` beside it (one ``<digest>.npy``
member per blob): :func:`save_blobs` writes the blobs a module uses, :class:`WeightStore` reads
such a file back, and :func:`cimc.ir_io.bind_blobs` fills the blobs of a freshly parsed module from it. Small
constants stay inline (``dense<...>``).
"""

from __future__ import annotations

import hashlib
import io
import os
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

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


class Blob:
    """One constant array (read-only), named by its content digest, with derived forms cached.

    A blob parsed from IR text knows only its digest until :meth:`fill` gives it the array
    (:func:`bind_blobs`); reading :attr:`array` before that is a one-line error. Blobs compare
    and hash by digest.
    """

    __slots__ = ("_array", "_digest", "_derived", "__weakref__")

    def __init__(self, array: np.ndarray | None = None, digest: str | None = None) -> None:
        if array is None and digest is None:
            raise ValueError("a Blob needs an array or a digest")
        self._array: np.ndarray | None = None
        self._digest = digest
        self._derived: dict[Any, Any] = {}
        if array is not None:
            self._set(array)

    def _set(self, array: np.ndarray) -> None:
        arr = np.ascontiguousarray(array)
        arr.setflags(write=False)
        self._array = arr

    @property
    def digest(self) -> str:
        if self._digest is None:
            assert self._array is not None
            self._digest = digest_of(self._array)
        return self._digest

    @property
    def loaded(self) -> bool:
        return self._array is not None

    @property
    def array(self) -> np.ndarray:
        if self._array is None:
            raise InputFileError(
                f"constant data with digest {self._digest} is not loaded: keep the .weights.npz "
                "file next to the .mlir file (or pass --weights)"
            )
        return self._array

    def fill(self, array: np.ndarray) -> None:
        """Give a digest-only blob its data (checked against the digest)."""
        if digest_of(array) != self.digest:
            raise InputFileError(f"array does not match the digest {self.digest}")
        if self._array is None:
            self._set(array)

    def derived(self, key: Any, make: Callable[[np.ndarray], Any]) -> Any:
        """``make(array)``, computed once per ``key`` for this blob and kept with it."""
        if key not in self._derived:
            self._derived[key] = make(self.array)
        return self._derived[key]

    def __eq__(self, other: object) -> bool:
        return self is other or (isinstance(other, Blob) and other.digest == self.digest)

    def __hash__(self) -> int:
        return hash(self.digest)

    def __repr__(self) -> str:
        shape = None if self._array is None else self._array.shape
        return f"Blob({self._digest or '?'}, shape={shape})"


class WeightStore:
    """Arrays read from a ``.weights.npz`` file, by digest (the I/O side of blobs)."""

    def __init__(self) -> None:
        self._arrays: dict[str, np.ndarray] = {}

    def __contains__(self, digest: str) -> bool:
        return digest in self._arrays

    def __len__(self) -> int:
        return len(self._arrays)

    def put(self, array: np.ndarray) -> str:
        """Keep ``array`` (read-only) under its digest; returns the digest."""
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

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> WeightStore:
        """Read an .npz written by :func:`save_blobs` (every array checked against its digest;
        size-checked, never unpickled: :func:`cimc.safe_read.load_array`)."""
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
        store = cls()
        for key, arr in data.items():
            if digest_of(arr) != key:
                raise InputFileError(f"{p}: array {key} does not match its digest")
            arr.setflags(write=False)
            store._arrays[key] = arr
        return store


def blobs_npz_bytes(blobs: Iterable[Blob]) -> bytes:
    """The bytes of an (uncompressed) .npz file with one ``<digest>.npy`` member per blob."""
    buf = io.BytesIO()
    unique = {b.digest: b for b in blobs}
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        for d in sorted(unique):
            member = io.BytesIO()
            np.save(member, unique[d].array, allow_pickle=False)
            zf.writestr(f"{d}.npy", member.getvalue())
    return buf.getvalue()


def save_blobs(path: str | os.PathLike[str], blobs: Iterable[Blob]) -> None:
    """Write the blobs to an .npz file (one ``<digest>.npy`` member each), atomically."""
    from cimc.cli_util import atomic_write_bytes

    atomic_write_bytes(path, blobs_npz_bytes(blobs))


def sidecar_path(mlir_path: str | os.PathLike[str]) -> Path:
    """``model.mlir`` -> ``model.weights.npz``."""
    p = Path(mlir_path)
    return p.with_name(p.stem + ".weights.npz")
