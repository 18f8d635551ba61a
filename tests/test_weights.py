"""cimc.weights: blobs owned by modules, content digests, and their .weights.npz files."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest

from cimc.errors import InputFileError
from cimc.weights import Blob, WeightStore, digest_of, save_blobs, sidecar_path


def test_digest_depends_on_dtype_shape_and_bytes() -> None:
    a = np.arange(6, dtype=np.int8)
    assert digest_of(a) == digest_of(a.copy())
    assert digest_of(a) != digest_of(a.reshape(2, 3))
    assert digest_of(a) != digest_of(a.astype(np.int16))
    b = a.copy()
    b[3] = 7
    assert digest_of(a) != digest_of(b)
    assert digest_of(a.reshape(2, 3).T) == digest_of(np.ascontiguousarray(a.reshape(2, 3).T))
    assert len(digest_of(np.zeros((0, 3), np.float32))) == 20


def test_store_save_load_roundtrip(tmp_path: Path) -> None:
    arrays = [np.arange(10, dtype=np.int8), np.linspace(0, 1, 7, dtype=np.float32).reshape(7, 1)]
    blobs = [Blob(a) for a in arrays]
    keys = [b.digest for b in blobs]
    path = tmp_path / "m.weights.npz"
    save_blobs(path, blobs)
    fresh = WeightStore.load(path)
    assert len(fresh) == 2
    for k, a in zip(keys, arrays):
        assert np.array_equal(fresh.get(k), a) and fresh.get(k).dtype == a.dtype
    with pytest.raises(ValueError):
        fresh.get(keys[0])[0] = 1  # stored arrays are read-only


def test_tampered_file_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "w.npz"
    save_blobs(path, [Blob(np.arange(4, dtype=np.int32))])
    with zipfile.ZipFile(path, "a") as zf:
        import io

        buf = io.BytesIO()
        np.save(buf, np.arange(5, dtype=np.int32))
        zf.writestr("00000000000000000000.npy", buf.getvalue())
    with pytest.raises(InputFileError, match="does not match its digest"):
        WeightStore.load(path)


def test_missing_and_bad_files(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="not found"):
        WeightStore.load(tmp_path / "nope.npz")
    bad = tmp_path / "bad.npz"
    bad.write_text("not a zip")
    with pytest.raises(InputFileError, match="not a cimc weights file"):
        WeightStore.load(bad)
    with pytest.raises(InputFileError, match="is not loaded"):
        WeightStore().get("ffffffffffffffffffff")


def test_sidecar_name() -> None:
    assert sidecar_path("dir/model.mlir") == Path("dir/model.weights.npz")


def test_blob_digest_only_until_filled() -> None:
    arr = np.arange(12, dtype=np.int8).reshape(3, 4)
    full = Blob(arr)
    parsed = Blob(digest=full.digest)
    assert parsed == full and hash(parsed) == hash(full) and not parsed.loaded
    with pytest.raises(InputFileError, match="is not loaded"):
        parsed.array  # noqa: B018
    with pytest.raises(InputFileError, match="does not match"):
        parsed.fill(arr + 1)
    parsed.fill(arr)
    assert np.array_equal(parsed.array, arr) and not parsed.array.flags.writeable


def test_derived_forms_are_made_once_per_blob() -> None:
    calls = []
    blob = Blob(np.ones(3, dtype=np.int8))
    make = lambda a: calls.append(1) or a.astype(np.float32)  # noqa: E731
    first = blob.derived("f32", make)
    assert blob.derived("f32", make) is first and len(calls) == 1
    other = Blob(np.ones(3, dtype=np.int8))  # equal content, its own cache
    other.derived("f32", make)
    assert len(calls) == 2
