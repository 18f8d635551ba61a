"""Builds the bundled example: a LeNet trained on Fashion-MNIST at a mixed-precision policy.

Float pre-training -> 8-bit QAT -> fine-tuning at the policy -> ONNX QCDQ export, plus 64 test
images with their labels. Writes examples/lenet_fmnist_mixed.{onnx,json} and
examples/fmnist_test64.npz. Run once by the developers (the files are committed); takes a few
minutes on 2 cores: ``.venv/bin/python scripts/make_example.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from cimc import data, models, training
from cimc.models.policy import save_policy

OUT = Path(__file__).resolve().parent.parent / "examples"
POLICY = np.array([[8, 8], [4, 4], [4, 6], [2, 4], [8, 8]])


def main() -> None:
    OUT.mkdir(exist_ok=True)
    fp = models.build("lenet", quant=False, seed=0)
    training.train(fp, "fashion_mnist", epochs=2, lr=2e-3, seed=0, progress=True)
    acc_float = training.evaluate(fp, "fashion_mnist", "test")
    q8 = training.quantize_from_float("lenet", fp.state_dict(), seed=0)
    training.train(q8, "fashion_mnist", epochs=1, lr=5e-4, seed=0, progress=True)
    acc_8 = training.evaluate(q8, "fashion_mnist", "test")
    mixed = training.finetune("lenet", POLICY, q8.state_dict(), "fashion_mnist", epochs=1, progress=True)
    acc_mixed = training.evaluate(mixed, "fashion_mnist", "test")
    models.export_onnx(mixed, OUT / "lenet_fmnist_mixed.onnx", batch=1)
    save_policy(OUT / "lenet_fmnist_mixed.json", POLICY, models.layer_names("lenet"), model="lenet")
    x, y = data.load_dataset("fashion_mnist", "test", limit=64)
    np.savez(OUT / "fmnist_test64.npz", x=x, y=y)
    np.save(OUT / "fmnist_test64_x.npy", x)
    summary = {"float_top1": acc_float, "w8a8_top1": acc_8, "policy_top1": acc_mixed,
               "policy": POLICY.tolist()}
    (OUT / "lenet_fmnist_mixed.accuracy.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
