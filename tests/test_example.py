"""The bundled example the set-up's main job shows (``scripts/make_example.py``, ``scripts/demo.sh``):
a LeNet at the policy ``cimc-rl search`` found, against the same LeNet at W8A8."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from cimc.data import dataset_available, load_dataset
from cimc.frontend import import_onnx
from cimc.report import xbar_report
from cimc.target.hw import Hardware

ROOT = Path(__file__).resolve().parents[1]
EX = ROOT / "examples"
SEARCHED, W8A8 = EX / "lenet_fmnist_searched.onnx", EX / "lenet_fmnist_w8a8.onnx"


def _summary() -> dict:
    return json.loads((EX / "lenet_fmnist_searched.summary.json").read_text())


def test_example_is_the_searched_policy_at_2x_within_one_point():
    summary = _summary()
    policy = json.loads((EX / "lenet_fmnist_searched.json").read_text())
    searched = xbar_report(import_onnx(SEARCHED).module, Hardware())
    w8a8 = xbar_report(import_onnx(W8A8).module, Hardware())
    bits = [[layer["w_bits"], layer["a_bits"]] for layer in policy["layers"]]
    assert bits == summary["policy"]
    assert [[r["w_bits"], r["a_bits"]] for r in searched["layers"]] == bits
    assert all(r["w_bits"] == r["a_bits"] == 8 for r in w8a8["layers"])
    # the speedup is cimc report's: the all-8/8 baseline is the W8A8 file's own latency
    assert searched["baseline"]["latency_us"] == pytest.approx(w8a8["total"]["latency_us"])
    assert searched["speedup"] == pytest.approx(summary["speedup"]) and summary["speedup"] >= 2.0
    assert summary["search"]["first_last_8bit"] is False and summary["search"]["allowed_drop"] == 1.0
    for where in ("brevitas", "xbar"):
        assert summary["searched_test_top1"][where] >= summary["w8a8_test_top1"][where] - 1.0


@pytest.mark.skipif(not dataset_available("fashion_mnist"), reason="Fashion-MNIST is not installed")
def test_bundled_images_are_the_first_test_images():
    d = np.load(EX / "fmnist_test1000.npz")
    x, y = load_dataset("fashion_mnist", "test", limit=len(d["y"]))
    assert d["x"].dtype == np.uint8 and np.array_equal((d["x"].astype(np.float32) / 255.0) * 2.0 - 1.0, x)
    assert np.array_equal(d["y"], y)


@pytest.mark.slow
def test_demo_prints_both_models_side_by_side(tmp_path):
    """The demo (what ``scripts/setup.sh`` ends with) runs; its accuracies on the bundled images
    come from cimc's crossbar runs and equal those recorded by make_example.py."""
    env = dict(os.environ, CIMC_DEMO_OUT=str(tmp_path))
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "demo.sh")], capture_output=True, text=True,
                          env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = _summary()
    top1 = summary["bundled_top1"]
    y = np.load(tmp_path / "test_y.npy")
    for model in ("w8a8", "searched"):
        logits = np.load(tmp_path / f"logits_{model}.npy")
        assert 100.0 * (logits.argmax(1) == y).mean() == pytest.approx(top1[model])
    rep = json.loads((tmp_path / "report.json").read_text())
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("speedup over W8A8"))
    assert line.split()[-1] == f"{rep['speedup']:.2f}x"
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("top-1 %, 1000 bundled images"))
    assert line.split()[-2:] == [f"{top1['w8a8']:.2f}", f"{top1['searched']:.2f}"]
