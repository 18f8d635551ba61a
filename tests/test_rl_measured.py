"""``--cost measured``: a tiny search whose recorded cost of the best policy equals the counted
latency of ``cimc run --level xbar-opt`` on the same calibration batch; and the evaluator."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cimc.rl.search import read_episodes
from search_helpers import lenet_q8

pytest.importorskip("sklearn", reason="the digits data set needs scikit-learn")


def _qat8(tmp_path: Path) -> Path:
    return lenet_q8(tmp_path, steps=2)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    code = "import sys; from {m} import main; sys.argv[0] = '{n}'; main()"
    mod, name = ("cimc.rl.cli", "cimc-rl") if args[0] == "rl" else ("cimc.cli", "cimc")
    argv = list(args[1:]) if args[0] == "rl" else list(args)
    return subprocess.run([sys.executable, "-c", code.format(m=mod, n=name), *argv],
                          capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_measured_cost_equals_the_counted_latency_of_cimc_run(tmp_path: Path) -> None:
    from cimc.rl.accuracy import EvalSettings, EvaluatorFactory
    from cimc.training import load_checkpoint

    ckpt = _qat8(tmp_path)
    out = tmp_path / "search"
    proc = _cli("rl", "search", "--model", "lenet", "--dataset", "digits", "--ckpt", str(ckpt),
                "--episodes", "3", "--warmup", "1", "--cost", "measured", "--cost-batch", "4",
                "--eval-limit", "40", "--calib-images", "32", "--no-first-last", "--acc-drop", "100",
                "--no-export", "--out", str(out), "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert "time per episode" in proc.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["cost"] == "measured" and summary["cost_batch"] == 4
    batch = np.load(out / "cost_batch.npy")
    assert batch.shape == (4, 1, 28, 28)
    recs = read_episodes(out / "episodes.jsonl")
    assert len(recs) == 3 and all(r["time"]["accuracy_s"] > 0 or r["acc_cached"] for r in recs)
    best = np.asarray(summary["best_policy"])

    # the episode's model at the best policy, exported; then cimc's own command line counts it
    state, _ = load_checkpoint(ckpt)
    settings = EvalSettings(**summary["eval"])
    evaluator = EvaluatorFactory("lenet", "digits", state, settings, summary["hw"], 4)()
    onnx = evaluator.export(best, tmp_path / "best.onnx")
    run = _cli("run", str(onnx), "--level", "xbar-opt", "--input", str(out / "cost_batch.npy"),
               "--report", str(tmp_path / "run.json"), "--no-progress")
    assert run.returncode == 0, run.stderr
    counted = json.loads((tmp_path / "run.json").read_text())["total"]["latency_us"]
    assert summary["best_latency_us"] == pytest.approx(counted, rel=1e-12)
    # and the W8A8 reference the same way
    w8 = evaluator.export(np.full_like(best, 8), tmp_path / "w8.onnx")
    run = _cli("run", str(w8), "--level", "xbar-opt", "--input", str(out / "cost_batch.npy"),
               "--report", str(tmp_path / "w8.json"), "--no-progress")
    assert run.returncode == 0, run.stderr
    base = json.loads((tmp_path / "w8.json").read_text())["total"]["latency_us"]
    assert summary["baseline_latency_us"] == pytest.approx(base, rel=1e-12)


def test_evaluator_calibrates_only_batchnorm_and_is_deterministic(tmp_path: Path) -> None:
    import torch

    from cimc.models import build
    from cimc.rl.accuracy import EvalSettings, PolicyEvaluator, recalibrate_bn

    from cimc.training import train

    model = build("resnet_small", seed=0)
    train(model, "digits", steps=1, limit=32, progress=False)  # initialises the activation scales
    state = model.state_dict()
    x = np.random.default_rng(0).standard_normal((64, 1, 28, 28)).astype(np.float32)
    net = build("resnet_small", seed=0)
    net.load_state_dict(state)
    assert recalibrate_bn(net, x, batch_size=16) == 9  # after the 9 convs (fc has none)
    after = net.state_dict()
    changed = {k for k in after if not torch.equal(after[k], state[k])}
    assert changed and {k.rsplit(".", 1)[1] for k in changed} <= {"running_mean", "running_var",
                                                                   "num_batches_tracked"}

    ev = PolicyEvaluator("resnet_small", "digits", state,
                         EvalSettings(calib_images=64, eval_limit=50))
    pol = np.full((10, 2), 4)
    a, b = ev(pol), ev(pol)
    assert a == b and 0.0 <= a <= 100.0
    from cimc.training import evaluate

    assert a == evaluate(ev.model_at(pol), ev.val_data, "val")  # inference mode changes nothing
    assert ev.val_data[0].shape[0] == 50
