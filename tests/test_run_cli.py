"""``cimc run`` at crossbar levels: fast / bit-serial, labels, lossy-ADC comparison, bad inputs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cli_helpers import assert_one_line_error

BIN = Path(sys.executable).parent
HW = "rows=64,cols=64,cell_bits=2,dac_bits=2"


def cimc(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "cimc"), *args, "--no-progress"] if args[0] == "run" else
                          [str(BIN / "cimc"), *args], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def lenet(tmp_path_factory) -> dict[str, Path]:
    """LeNet at an examples-like mixed policy (first/last 8/8), 16 random inputs."""
    pytest.importorskip("brevitas")
    from cimc.models import build, export_onnx

    d = tmp_path_factory.mktemp("lenet")
    policy = np.array([[8, 8], [4, 3], [4, 6], [8, 5], [8, 8]])
    onnx = export_onnx(build("lenet", policy, seed=2), d / "lenet.onnx")  # its top-1 answers move at 3 ADC bits
    rng = np.random.default_rng(0)
    np.save(d / "x.npy", rng.standard_normal((16, 1, 28, 28)).astype(np.float32))
    return {"dir": d, "onnx": onnx, "x": d / "x.npy"}


def test_fast_and_bit_serial_agree(lenet):
    d = lenet["dir"]
    reports = {}
    for flag in ("--fast", "--bit-serial"):
        out, rep = d / f"y{flag}.npy", d / f"r{flag}.json"
        proc = cimc("run", str(lenet["onnx"]), "--level", "xbar", "--input", str(lenet["x"]),
                    "--hw-set", HW, flag, "--output", str(out), "--report", str(rep))
        assert proc.returncode == 0, proc.stderr
        for head in ("writes", "cycles", "ADC", "latency"):
            assert head in proc.stdout
        reports[flag] = json.loads(rep.read_text())
        reports[flag]["y"] = np.load(out)
    fast, slow = reports["--fast"], reports["--bit-serial"]
    assert {r["path"] for r in fast["layers"]} == {"exact"}
    assert {r["path"] for r in slow["layers"]} == {"bit-serial"}
    assert np.array_equal(fast["y"], slow["y"])
    assert fast["total"] == slow["total"] and fast["total"]["writes"] > 0


def test_labels_accuracy(lenet):
    d = lenet["dir"]
    out = d / "y_cimq.npy"
    assert cimc("run", str(lenet["onnx"]), "--input", str(lenet["x"]), "--output", str(out)).returncode == 0
    pred = np.load(out).argmax(axis=1)
    labels = pred.copy()
    labels[:4] = (labels[:4] + 1) % 10  # 12 of 16 right
    np.save(d / "labels.npy", labels)
    rep = d / "acc.json"
    proc = cimc("run", str(lenet["onnx"]), "--level", "xbar", "--input", str(lenet["x"]), "--hw-set", HW,
                "--labels", str(d / "labels.npy"), "--report", str(rep))
    assert proc.returncode == 0, proc.stderr
    assert "top-1 accuracy 75.00% (12/16)" in proc.stdout
    assert json.loads(rep.read_text())["accuracy_top1"] == pytest.approx(75.0)


def test_lossy_adc_comparison(lenet):
    """A 3-bit ADC saturates, changes the outputs and the top-1 answers of the lossless run."""
    d = lenet["dir"]
    exact = d / "y_exact.npy"
    proc = cimc("run", str(lenet["onnx"]), "--level", "xbar", "--input", str(lenet["x"]),
                "--hw-set", HW, "--output", str(exact))
    assert proc.returncode == 0, proc.stderr
    np.save(d / "lossless_labels.npy", np.load(exact).argmax(axis=1))
    rep = d / "lossy.json"
    proc = cimc("run", str(lenet["onnx"]), "--level", "xbar", "--input", str(lenet["x"]),
                "--hw-set", HW + ",adc_bits=3", "--compare-lossless",
                "--labels", str(d / "lossless_labels.npy"), "--report", str(rep))
    assert proc.returncode == 0, proc.stderr
    assert "ADC against a lossless ADC" in proc.stdout
    data = json.loads(rep.read_text())
    cmp = data["compare_lossless"]
    assert cmp["adc_bits"] == 3
    assert cmp["saturations"] > 0 and cmp["saturations"] == data["total"]["adc_saturations"]
    assert all(r["adc_saturations"] > 0 for r in cmp["layers"])
    assert [r["adc_saturations"] for r in cmp["layers"]] == [r["adc_saturations"] for r in data["layers"]]
    assert cmp["outputs"][0]["max_abs_error"] > 0 and cmp["outputs"][0]["changed_fraction"] > 0
    assert cmp["accuracy_top1_lossless"] == 100.0
    assert cmp["top1_changed"] > 0
    assert cmp["accuracy_top1_lossy"] == pytest.approx(100.0 * (1 - cmp["top1_changed"] / 16))
    assert {r["path"] for r in data["layers"]} == {"bit-serial"}


def _assert_no_outputs(d: Path, *names: str) -> None:
    for n in names:
        assert not (d / n).exists(), n


@pytest.mark.parametrize(
    "case",
    ["shape", "dtype", "missing", "past_level", "hw_set", "labels_length", "fast_lossy", "compare_lossless"],
)
def test_bad_inputs_one_line_error_no_output(lenet, case, tmp_path):
    d = lenet["dir"]
    x, model = str(lenet["x"]), str(lenet["onnx"])
    extra: list[str] = ["--level", "xbar", "--hw-set", HW]
    needles: tuple[str, ...]
    if case == "shape":
        np.save(tmp_path / "bad.npy", np.zeros((2, 1, 27, 28), np.float32))
        x, needles = str(tmp_path / "bad.npy"), ("shape [2, 1, 27, 28]",)
    elif case == "dtype":
        np.save(tmp_path / "bad.npy", np.zeros((2, 1, 28, 28), np.int64))
        x, needles = str(tmp_path / "bad.npy"), ("dtype int64",)
    elif case == "missing":
        x, needles = str(tmp_path / "nope.npy"), ("not found",)
    elif case == "past_level":
        mlir = tmp_path / "lenet_xbar.mlir"
        proc = cimc("lower", model, "--to", "xbar", "--hw-set", HW, "-o", str(mlir))
        assert proc.returncode == 0, proc.stderr
        model, extra, needles = str(mlir), ["--level", "cimq"], ("past the asked level 'cimq'",)
    elif case == "hw_set":
        extra, needles = ["--level", "xbar", "--hw-set", "adc_bits=lots"], ("adc_bits",)
    elif case == "labels_length":
        np.save(tmp_path / "labels.npy", np.zeros(5, np.int64))
        extra += ["--labels", str(tmp_path / "labels.npy")]
        needles = ("5 labels for a batch of 16",)
    elif case == "fast_lossy":
        extra = ["--level", "xbar", "--hw-set", HW + ",adc_bits=3", "--fast"]
        needles = ("lossless ADC",)
    else:
        needles = ("lossy ADC",)
        extra += ["--compare-lossless"]
    out, rep = tmp_path / "y.npy", tmp_path / "r.json"
    proc = cimc("run", model, "--input", x, *extra, "--output", str(out), "--report", str(rep))
    assert_one_line_error(proc, *needles)
    assert proc.stdout == ""
    _assert_no_outputs(tmp_path, "y.npy", "r.json")
    assert d.exists()
