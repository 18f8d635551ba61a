"""cimc.weights: content-addressed constants and their .weights.npz files."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest

from cimc.errors import InputFileError
from cimc.weights import STORE, WeightStore, digest_of, sidecar_path


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
    store = WeightStore()
    arrays = [np.arange(10, dtype=np.int8), np.linspace(0, 1, 7, dtype=np.float32).reshape(7, 1)]
    keys = [store.put(a) for a in arrays]
    path = tmp_path / "m.weights.npz"
    store.save(path, keys)
    fresh = WeightStore()
    assert fresh.load(path) == 2
    for k, a in zip(keys, arrays):
        assert np.array_equal(fresh.get(k), a) and fresh.get(k).dtype == a.dtype
    with pytest.raises(ValueError):
        fresh.get(keys[0])[0] = 1  # stored arrays are read-only


def test_tampered_file_is_rejected(tmp_path: Path) -> None:
    key = STORE.put(np.arange(4, dtype=np.int32))
    path = tmp_path / "w.npz"
    STORE.save(path, [key])
    with zipfile.ZipFile(path, "a") as zf:
        import io

        buf = io.BytesIO()
        np.save(buf, np.arange(5, dtype=np.int32))
        zf.writestr("00000000000000000000.npy", buf.getvalue())
    with pytest.raises(InputFileError, match="does not match its digest"):
        WeightStore().load(path)


def test_missing_and_bad_files(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="not found"):
        WeightStore().load(tmp_path / "nope.npz")
    bad = tmp_path / "bad.npz"
    bad.write_text("not a zip")
    with pytest.raises(InputFileError, match="not a cimc weights file"):
        WeightStore().load(bad)
    with pytest.raises(InputFileError, match="is not loaded"):
        WeightStore().get("ffffffffffffffffffff")


def test_sidecar_name() -> None:
    assert sidecar_path("dir/model.mlir") == Path("dir/model.weights.npz")
