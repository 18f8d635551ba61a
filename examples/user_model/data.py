"""A user's own data set for ``cimc-rl --dataset examples/user_model/data.py:load``.

scikit-learn's 1,797 8x8 digits as the arrays cimc takes: ``x_*`` uint8 images ``(N, 1, 8, 8)``
(cimc maps uint8 pixels to [-1, 1]), ``y_*`` integer labels; a seeded split 1,297 / 250 / 250.
``python examples/user_model/data.py digits8.npz`` writes the same arrays as an ``.npz``, which
``--dataset digits8.npz`` reads as plain data.
"""

import sys

import numpy as np


def load() -> dict[str, np.ndarray]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = np.round(digits.images * (255 / 16)).astype(np.uint8)[:, None]  # 0..16 -> 0..255
    y = digits.target.astype(np.int64)
    order = np.random.default_rng(0).permutation(len(x))
    parts = {"train": order[:1297], "val": order[1297:1547], "test": order[1547:]}
    arrays = {}
    for split, idx in parts.items():
        arrays[f"x_{split}"], arrays[f"y_{split}"] = x[idx], y[idx]
    return arrays


if __name__ == "__main__":
    np.savez_compressed(sys.argv[1], **load())
