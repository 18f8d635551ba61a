"""Training pipeline on sklearn digits (small and fast): float -> 8-bit QAT -> policy fine-tune."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cimc import training
from cimc.data import dataset_available
from cimc.errors import CimcError, InputFileError
from cimc.models import build

pytestmark = pytest.mark.skipif(not dataset_available("digits"),
                                reason="sklearn digits unavailable (pip install scikit-learn)")


@pytest.fixture(scope="module")
def float_lenet():
    model = build("lenet", quant=False, seed=0)
    stats = training.train(model, "digits", epochs=3, lr=3e-3, batch_size=64, progress=False)
    return model, stats


def test_float_training_learns(float_lenet) -> None:
    model, stats = float_lenet
    assert stats["steps"] == 3 * 21 and stats["epoch_seconds"] > 0
    assert training.evaluate(model, "digits", "val") > 80.0


def test_qat_pipeline(float_lenet) -> None:
    fmodel, _ = float_lenet
    q8 = training.quantize_from_float("lenet", fmodel.state_dict())
    training.train(q8, "digits", steps=10, lr=5e-4, batch_size=64, progress=False)
    acc8 = training.evaluate(q8, "digits", "val")
    assert acc8 > 70.0
    policy = np.array([[8, 8], [4, 4], [3, 4], [4, 3], [8, 8]])
    tuned = training.finetune("lenet", policy, q8.state_dict(), "digits", steps=3,
                              batch_size=32, limit=96)
    assert not tuned.training
    assert 0.0 <= training.evaluate(tuned, "digits", "val", limit=100) <= 100.0
    # fine-tuning changed the weights but kept the learned activation scale keys
    assert set(tuned.state_dict()) == set(q8.state_dict())
    assert not torch.equal(tuned.state_dict()["conv2.weight"], q8.state_dict()["conv2.weight"])


def test_load_float_weights_rejects_other_models(float_lenet) -> None:
    fmodel, _ = float_lenet
    with pytest.raises(CimcError, match="float weights do not fit"):
        training.load_float_weights(build("vit_small"), fmodel.state_dict())


def test_finetune_rejects_foreign_state() -> None:
    with pytest.raises(CimcError, match="does not fit model 'lenet'"):
        training.finetune("lenet", None, build("resnet_small").state_dict(), "digits", steps=0)


def test_training_is_deterministic() -> None:
    x = np.random.default_rng(0).standard_normal((32, 1, 28, 28)).astype(np.float32)
    y = np.arange(32) % 10
    states = []
    for _ in range(2):
        model = build("lenet", np.full((5, 2), 4), seed=1)
        training.train(model, (x, y), steps=3, batch_size=16, seed=5, progress=False)
        states.append(model.state_dict())
    for key, value in states[0].items():
        assert torch.equal(value, states[1][key]), key


def test_checkpoint_roundtrip(tmp_path) -> None:
    model = build("lenet", seed=2)
    meta = {"model": "lenet", "float": False, "policy": np.full((5, 2), 8)}
    path = training.save_checkpoint(tmp_path / "m" / "model.pt", model, meta)
    state, got = training.load_checkpoint(path)
    assert got["model"] == "lenet" and got["policy"] == [[8, 8]] * 5
    assert torch.equal(state["fc1.weight"], model.state_dict()["fc1.weight"])
    with pytest.raises(InputFileError, match="not found"):
        training.load_checkpoint(tmp_path / "none.pt")
    (tmp_path / "bad.pt").write_text("no")
    with pytest.raises(InputFileError, match="not a readable checkpoint"):
        training.load_checkpoint(tmp_path / "bad.pt")


def test_empty_data() -> None:
    empty = (np.zeros((0, 1, 28, 28), np.float32), np.zeros(0, np.int64))
    with pytest.raises(CimcError, match="empty"):
        training.evaluate(build("lenet", quant=False), empty)
