"""Exported W8A8 and mixed-precision models give the same top-1 in cimc as in Brevitas.

A LeNet is trained briefly on Fashion-MNIST (float -> W8A8 QAT -> fine-tune at a mixed policy),
exported to ONNX QCDQ, and run by cimc on the whole 10,000-image test split at the ``cimq`` level
and at the ``xbar`` level (fast path, which tests/test_xbar_exec.py proves identical to the
bit-serial path). The number of images whose top-1 differs from Brevitas' own forward pass is
printed; differences can only come from rounding ties (Brevitas accumulates in float32), so at
most a handful are allowed.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cimc import data, models, training
from cimc.exec import run_at_level
from cimc.frontend import import_onnx

pytestmark = pytest.mark.skipif(
    not data.dataset_available("fashion_mnist"),
    reason="Fashion-MNIST is not installed (run: bash scripts/get_data.sh)",
)

MIXED = np.array([[8, 8], [4, 4], [4, 6], [2, 4], [8, 8]])


@pytest.fixture(scope="module")
def trained() -> dict[str, torch.nn.Module]:
    fp = models.build("lenet", quant=False, seed=0)
    training.train(fp, "fashion_mnist", epochs=1, limit=8000, lr=2e-3, seed=0, progress=False)
    q8 = training.quantize_from_float("lenet", fp.state_dict(), seed=0)
    training.train(q8, "fashion_mnist", steps=40, limit=8000, lr=5e-4, seed=0, progress=False)
    mixed = training.finetune("lenet", MIXED, q8.state_dict(), "fashion_mnist", steps=40, limit=8000)
    return {"w8a8": q8.eval(), "mixed": mixed.eval()}


def _brevitas_top1(model: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return np.concatenate(
            [model(torch.from_numpy(x[i : i + 1000])).argmax(1).numpy() for i in range(0, len(x), 1000)]
        )


@pytest.mark.slow
@pytest.mark.parametrize("which", ["w8a8", "mixed"])
def test_cimc_top1_equals_brevitas(trained, which: str, tmp_path, capsys) -> None:
    model = trained[which]
    x, y = data.load_dataset("fashion_mnist", "test")
    path = models.export_onnx(model, tmp_path / f"{which}.onnx")
    module = import_onnx(path).module
    ref = _brevitas_top1(model, x)
    for level in ("cimq", "xbar"):
        preds = np.concatenate([
            run_at_level(module, level, [x[i : i + 2000]]).outputs[0].argmax(1)
            for i in range(0, len(x), 2000)
        ])
        disagree = int((preds != ref).sum())
        acc_cimc = float((preds == y).mean() * 100)
        acc_brevitas = float((ref == y).mean() * 100)
        with capsys.disabled():
            print(f"\n[{which} @ {level}] top-1 cimc {acc_cimc:.2f}% vs Brevitas {acc_brevitas:.2f}% "
                  f"on {len(x)} test images; {disagree} disagreements", end="")
        assert disagree <= 5, (which, level, disagree)
        assert acc_cimc > 60.0
