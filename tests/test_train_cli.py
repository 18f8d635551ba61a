"""``cimc-rl train / finetune / export / evaluate`` end to end on sklearn digits."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from cimc.cli_util import run_guarded
from cimc.data import dataset_available
from cimc.errors import CimcError
from cimc.models import save_policy
from cimc.rl import train_cli
from onnx_bits import recover_bits

needs_digits = pytest.mark.skipif(not dataset_available("digits"),
                                  reason="sklearn digits unavailable (pip install scikit-learn)")


def make_app() -> typer.Typer:
    app = typer.Typer(pretty_exceptions_enable=False)
    train_cli.register(app)
    return app


def invoke(args: list[str]):
    result = CliRunner().invoke(make_app(), args)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.output
    return result


@needs_digits
def test_pipeline(tmp_path: Path) -> None:
    common = ["--model", "lenet", "--dataset", "digits", "--no-progress"]
    invoke(["train", *common, "--float", "--epochs", "2", "--out", str(tmp_path / "f"),
            "--json", str(tmp_path / "f.json")])
    res = json.loads((tmp_path / "f.json").read_text())
    assert res["mode"] == "float" and res["test_accuracy"] > 50.0
    out = invoke(["train", *common, "--bits", "8", "--epochs", "0.3", "--lr", "5e-4",
                  "--init", str(tmp_path / "f" / "model.pt"), "--out", str(tmp_path / "q8")])
    assert "W8A8" in out.output and "test_accuracy" in out.output
    policy = np.array([[8, 8], [3, 5], [6, 2], [4, 4], [8, 8]])
    save_policy(tmp_path / "p.json", policy, model="lenet")
    invoke(["finetune", *common, "--policy", str(tmp_path / "p.json"),
            "--ckpt", str(tmp_path / "q8" / "model.pt"), "--steps", "2",
            "--out", str(tmp_path / "ft"), "--json", str(tmp_path / "ft.json")])
    meta = json.loads((tmp_path / "ft" / "model.json").read_text())
    assert meta["policy"] == policy.tolist()
    # export takes the policy from the checkpoint
    invoke(["export", "--model", "lenet", "--ckpt", str(tmp_path / "ft" / "model.pt"),
            "-o", str(tmp_path / "ft.onnx")])
    np.testing.assert_array_equal(recover_bits(tmp_path / "ft.onnx")[1], policy)
    out = invoke(["evaluate", "--model", "lenet", "--dataset", "digits", "--limit", "50",
                  "--ckpt", str(tmp_path / "ft" / "model.pt"), "--json", str(tmp_path / "e.json")])
    acc = json.loads((tmp_path / "e.json").read_text())["accuracy"]
    assert 0.0 <= acc <= 100.0 and "accuracy" in out.output
    # on crossbars: ideal, and on devices with programming noise (2 seeds)
    invoke(["evaluate", "--model", "lenet", "--dataset", "digits", "--limit", "20",
            "--ckpt", str(tmp_path / "ft" / "model.pt"), "--noise", "ideal",
            "--noise-set", "programming_sigma=0.5", "--seeds", "2", "--json", str(tmp_path / "n.json")])
    res = json.loads((tmp_path / "n.json").read_text())
    assert 0.0 <= res["crossbar_accuracy"] <= 100.0 and len(res["noisy_accuracy_per_seed"]) == 2
    assert res["noisy_accuracy_mean"] == pytest.approx(np.mean(res["noisy_accuracy_per_seed"]))


def test_export_random_weights_with_policy(tmp_path: Path) -> None:
    policy = np.random.default_rng(4).integers(2, 9, size=(18, 2))
    np.save(tmp_path / "p.npy", policy)
    invoke(["export", "--model", "vit_small", "--policy", str(tmp_path / "p.npy"),
            "-o", str(tmp_path / "v.onnx")])
    np.testing.assert_array_equal(recover_bits(tmp_path / "v.onnx")[1], policy)


@pytest.mark.parametrize("args,match", [
    (["export", "--model", "alexnet", "-o", "x.onnx"], "unknown model 'alexnet'"),
    (["export", "--model", "lenet", "--policy", "missing.npy", "-o", "x.onnx"], "not found"),
    (["evaluate", "--model", "lenet", "--ckpt", "missing.pt"], "checkpoint not found"),
    (["evaluate", "--model", "lenet", "--ckpt", "m.pt", "--noise-set", "read_sigma=0.1"], "need --noise"),
    (["evaluate", "--model", "lenet", "--ckpt", "m.pt", "--noise", "ideal", "--seeds", "0"], "--seeds"),
])
def test_errors_are_one_line(tmp_path: Path, monkeypatch, capsys, args, match) -> None:
    monkeypatch.chdir(tmp_path)
    app = make_app()
    code = run_guarded(lambda: app(args, standalone_mode=True), argv=[])
    err = capsys.readouterr().err.strip()
    assert code == 1 and err.startswith("error:") and match in err and "\n" not in err


def test_policy_for_another_model(tmp_path: Path) -> None:
    save_policy(tmp_path / "p.json", np.full((5, 2), 4), model="lenet")
    result = CliRunner().invoke(make_app(), ["export", "--model", "vit_small", "--policy",
                                             str(tmp_path / "p.json"), "-o", str(tmp_path / "x.onnx")])
    assert isinstance(result.exception, CimcError)
    assert "policy is for model 'lenet', not 'vit_small'" in str(result.exception)


def test_wrong_policy_length(tmp_path: Path) -> None:
    np.save(tmp_path / "p.npy", np.full((3, 2), 4))
    result = CliRunner().invoke(make_app(), ["export", "--model", "lenet", "--policy",
                                             str(tmp_path / "p.npy"), "-o", str(tmp_path / "x.onnx")])
    assert isinstance(result.exception, CimcError)
    assert "3 layers, the model has 5" in str(result.exception)
    assert not (tmp_path / "x.onnx").exists()


@pytest.mark.skipif(importlib.util.find_spec("cimc.rl.search_cli") is None,
                    reason="cimc.rl.search_cli (the search commands) is not written yet")
def test_installed_script_help() -> None:
    exe = Path(sys.executable).with_name("cimc-rl")
    out = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    for cmd in ("train", "finetune", "export", "evaluate"):
        assert cmd in out.stdout
