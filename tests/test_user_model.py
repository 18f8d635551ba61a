"""A user's own model (``--model FILE.py:FUNCTION``) and data (``--dataset FILE.npz|FILE.py:FUNCTION``).

The model and data files are the example's (``examples/user_model/``), copied outside the
package into a temporary folder and named by relative paths, as a new user would. Bad inputs of
both are in the bad-input corpus (``tests/bad_input_cases.py``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cimc.data import dataset_available, load_dataset
from cimc.models import build, export_onnx, layer_names, num_classes, resolve_model
from cimc.models.user import load_user_model
from onnx_bits import recover_bits

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "user_model"
needs_sklearn = pytest.mark.skipif(not dataset_available("digits"),
                                   reason="the example's data needs scikit-learn")

TINY = """
from torch import nn

class Net(nn.Module):
    input_shape = (1, 8, 8)

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.spare = nn.Linear(3, 3)  # never runs: left float, no policy row
        self.fc = nn.Linear(4 * 64, {classes})

    def forward(self, x):
        return self.fc(self.conv(x).relu().flatten(1))

def make():
    return Net()
"""


@pytest.fixture
def mine(tmp_path: Path, monkeypatch) -> Path:
    """The example's two files in ``tmp_path/mine``, the working directory ``tmp_path``."""
    (tmp_path / "mine").mkdir()
    for name in ("model.py", "data.py"):
        shutil.copy(EXAMPLE / name, tmp_path / "mine" / name)
    monkeypatch.chdir(tmp_path)
    return tmp_path / "mine"


def run_cli(argv: list[str], monkeypatch, capsys) -> tuple[int, str, str]:
    from cimc.rl import cli

    monkeypatch.setattr(sys, "argv", ["cimc-rl", *argv])
    with pytest.raises(SystemExit) as exc:
        cli.main()
    out = capsys.readouterr()
    return int(exc.value.code or 0), out.out, out.err


def test_example_layers_are_the_closed_form(mine: Path) -> None:
    """conv 3x3 on 8x8 -> 16ch, conv 3x3/2 -> 32ch on 4x4 = 16 tokens of 32, 2 heads of 16."""
    info = load_user_model("mine/model.py:make")
    assert info.spec == f"{mine.resolve()}/model.py:make"
    got = [(r.name, r.desc.kind, r.desc.m, r.desc.n, r.desc.P, r.desc.H) for r in info.layers]
    t, e, h = 16, 32, 2
    assert got == [
        ("conv1", "conv", 16, 1 * 9, 8 * 8, 1),
        ("conv2", "conv", 32, 16 * 9, 4 * 4, 1),
        ("attn.in_proj", "linear", 3 * e, e, t, 1),
        ("attn.qk", "matmul", t, e // h, t, h),
        ("attn.av", "matmul", e // h, t, t, h),
        ("attn.out_proj", "linear", e, e, t, 1),
        ("head", "linear", 10, e, 1, 1),
    ]
    assert info.input_shape == (1, 8, 8) and info.num_classes == 10 and info.float_only == ()
    # the zoo keeps working by name, through the same lookups
    assert resolve_model("lenet") == "lenet" and num_classes("lenet") == 10
    assert layer_names("mine/model.py:make") == [r.name for r in info.layers]


def test_policy_bits_reach_the_onnx_export_in_layer_order(mine: Path, tmp_path: Path) -> None:
    """Brevitas' layerwise quantization puts each row's bits on the node of that layer: the
    export's crossbar nodes, in graph order, carry the policy row by row (attention included)."""
    policy = np.random.default_rng(3).integers(2, 9, size=(7, 2))
    model = build("mine/model.py:make", policy, seed=0)
    export_onnx(model, tmp_path / "m.onnx")
    ops, bits = recover_bits(tmp_path / "m.onnx")
    assert ops == ["Conv", "Conv", "MatMul", "MatMul", "MatMul", "MatMul", "Gemm"]
    np.testing.assert_array_equal(bits, policy)


def test_seeded_build_float_only_and_reload(tmp_path: Path) -> None:
    import torch

    (tmp_path / "tiny.py").write_text(TINY.format(classes=5))
    spec = str(tmp_path / "tiny.py") + ":make"
    info = load_user_model(spec)
    assert info.layer_names == ["conv", "fc"] and info.float_only == ("spare",)
    state = torch.random.get_rng_state()
    a, b, c = (build(spec, seed=s, quant=False).state_dict() for s in (0, 0, 1))
    assert torch.equal(torch.random.get_rng_state(), state)
    assert all(torch.equal(a[k], b[k]) for k in a) and not torch.equal(a["fc.weight"], c["fc.weight"])
    q = build(spec, np.array([[4, 6], [3, 5]]), seed=0)
    assert type(q.spare) is torch.nn.Linear  # the layer that never runs stays float
    assert q.conv.quant_weight().bit_width.item() == 4 and q.fc.quant_weight().bit_width.item() == 3
    assert torch.equal(q.conv.weight, a["conv.weight"])  # same parameters as the float twin
    # a changed file is loaded again
    (tmp_path / "tiny.py").write_text(TINY.format(classes=7) + "\n# changed\n")
    assert num_classes(spec) == 7


@needs_sklearn
def test_user_data_npz_and_function_agree(mine: Path, capsys) -> None:
    subprocess.run([sys.executable, "mine/data.py", "mine/digits8.npz"], check=True, timeout=120)
    for split in ("train", "val", "test"):
        xa, ya = load_dataset("mine/digits8.npz", split)
        xb, yb = load_dataset("mine/data.py:load", split, limit=None)
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    raw = np.load("mine/digits8.npz")
    x, y = load_dataset("mine/digits8.npz", "val", limit=5)
    assert x.dtype == np.float32 and x.shape == (5, 1, 8, 8) and y.dtype == np.int64
    np.testing.assert_allclose(x, raw["x_val"][:5] / 255.0 * 2 - 1, atol=1e-6)  # uint8 pixels
    assert x.min() == -1.0 and x.max() == 1.0
    # float32 inputs are used as they are; without a test split, val stands in (said once)
    arrays = {k: raw[k] for k in ("x_train", "y_train", "x_val", "y_val")}
    arrays["x_val"] = (arrays["x_val"] / 7.0).astype(np.float32)
    np.savez("mine/f.npz", **arrays)
    capsys.readouterr()
    for _ in range(2):
        xt, _ = load_dataset("mine/f.npz", "test")
    np.testing.assert_array_equal(xt, arrays["x_val"])
    assert capsys.readouterr().err.count("val split stands in for test") == 1


def test_layers_command(mine: Path, monkeypatch, capsys) -> None:
    code, out, err = run_cli(["layers", "--model", "mine/model.py:make", "--json", "l.json"],
                             monkeypatch, capsys)
    assert code == 0, err
    rows = json.loads(Path("l.json").read_text())["layers"]
    assert [r["name"] for r in rows] == layer_names("mine/model.py:make")
    assert rows[3] == {"index": 3, "name": "attn.qk", "kind": "matmul", "module": "MultiheadAttention",
                       "m": 16, "n": 16, "P": 16, "H": 2}
    assert "7 crossbar layers" in out
    code, out, _ = run_cli(["layers", "--model", "lenet", "--quiet"], monkeypatch, capsys)
    assert code == 0 and out.split() == layer_names("lenet")


@needs_sklearn
@pytest.mark.slow
def test_user_files_train_evaluate_and_search(mine: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    """Must-show: a model file and a data file outside the package go through ``cimc-rl train``
    (float, then QAT from it), ``evaluate`` and a tiny ``search`` with the compiler cost and export."""
    model, data = "mine/model.py:make", "mine/data.py:load"
    code, out, err = run_cli(["train", "-m", model, "-d", data, "--float", "--epochs", "3", "--lr", "0.005",
                              "--out", "f", "--json", "f.json", "--no-progress"], monkeypatch, capsys)
    assert code == 0, err
    assert json.loads(Path("f.json").read_text())["test_accuracy"] > 20.0  # 10 classes
    code, _, err = run_cli(["train", "-m", model, "-d", data, "--bits", "8", "--init", "f/model.pt",
                            "--epochs", "0.5", "--limit", "256", "--out", "q8", "--no-progress"],
                           monkeypatch, capsys)
    assert code == 0, err
    meta = json.loads(Path("q8/model.json").read_text())
    assert meta["model"] == f"{mine.resolve()}/model.py:make"  # canonical: found from anywhere
    # evaluate from another folder, the files named by other relative paths
    (tmp_path / "elsewhere").mkdir()
    os.chdir(tmp_path / "elsewhere")
    code, _, err = run_cli(["evaluate", "-m", "../mine/model.py:make", "-d", "../mine/data.py:load",
                            "--ckpt", "../q8/model.pt", "--limit", "100", "--json", "e.json"], monkeypatch, capsys)
    assert code == 0, err
    assert 0.0 <= json.loads(Path("e.json").read_text())["accuracy"] <= 100.0
    os.chdir(tmp_path)
    code, out, err = run_cli(
        ["search", "-m", model, "-d", data, "--ckpt", "q8/model.pt", "--episodes", "2", "--warmup", "1",
         "--finetune-steps", "1", "--train-limit", "64", "--eval-limit", "50", "--final-steps", "2",
         "--acc-drop", "100", "--out", "s", "--no-progress"], monkeypatch, capsys)
    assert code == 0, err
    summary = json.loads(Path("s/summary.json").read_text())
    assert summary["cost"] == "compiler" and summary["episodes"] == 2 and len(summary["best_policy"]) == 7
    report = json.loads(Path("s/best_report.json").read_text())
    assert [[r["w_bits"], r["a_bits"]] for r in report["layers"]] == summary["best_policy"]
    np.testing.assert_array_equal(recover_bits("s/best_model.onnx")[1], summary["best_policy"])
    assert summary["report_latency_us"] == pytest.approx(summary["best_latency_us"], rel=1e-12)
