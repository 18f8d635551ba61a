"""Shared set-up of the tests that run ``cimc-rl search`` end to end."""

from __future__ import annotations

from pathlib import Path


def lenet_q8(tmp_path: Path, steps: int = 1) -> Path:
    """An 8-bit LeNet checkpoint for the digits data set, trained ``steps`` steps on 64 images
    (enough to initialise the activation scales), at ``tmp_path/q8/model.pt``."""
    from cimc.models import build
    from cimc.training import save_checkpoint, train

    model = build("lenet", seed=0)
    train(model, "digits", steps=steps, limit=64, progress=False)
    return save_checkpoint(tmp_path / "q8" / "model.pt", model,
                           {"model": "lenet", "float": False, "policy": None})


def tiny_search(ckpt: Path, out: Path, *extra: str) -> list[str]:
    """``cimc-rl search`` arguments of a tiny LeNet search on digits (3 episodes, 1 warm-up,
    any accuracy accepted, 2 final QAT steps), plus ``extra``."""
    return ["search", "--model", "lenet", "--dataset", "digits", "--ckpt", str(ckpt), "--episodes", "3",
            "--warmup", "1", "--train-limit", "64", "--eval-limit", "50", "--final-steps", "2",
            "--no-first-last", "--out", str(out), "--no-progress", "--acc-drop", "100", *extra]
