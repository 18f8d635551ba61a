"""``cimc-rl search --objective energy|edp``: the search minimises the compiled program's energy
(or energy-delay product) under an energy preset, and its best policy's energy is the energy
``cimc report --energy`` gives for the exported model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cimc.errors import CimcError
from cimc.rl.search import read_episodes
from cli_helpers import assert_one_line_error
from search_helpers import lenet_q8, tiny_search

BIN = Path(sys.executable).parent
PRESET = "neurosim-22nm"  # not the default: the option must reach the cost model
HW_SET = "rows=128,cell_bits=2"


def _run_cli(argv: list[str], monkeypatch, capsys) -> tuple[int, str, str]:
    from cimc.rl import cli

    monkeypatch.setattr(sys, "argv", ["cimc-rl", *argv])
    with pytest.raises(SystemExit) as exc:
        cli.main()
    out = capsys.readouterr()
    return int(exc.value.code or 0), out.out, out.err


def _report_json(model: Path, out: Path, *extra: str) -> dict:
    proc = subprocess.run([str(BIN / "cimc"), "report", str(model), "--hw-set", HW_SET, "--json", str(out),
                           *extra], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return json.loads(out.read_text())


@pytest.mark.slow
def test_search_energy_objective_end_to_end(tmp_path: Path, monkeypatch, capsys) -> None:
    """A tiny energy search (digits, lenet, compiler cost, non-default hardware and preset): the
    reward's cost ratio is energy over W8A8's, and the best policy's energy and EDP are what
    ``cimc report --energy PRESET`` gives for the exported best model."""
    pytest.importorskip("sklearn", reason="the digits data set needs scikit-learn")
    ckpt = lenet_q8(tmp_path)
    out = tmp_path / "search"
    code, stdout, err = _run_cli(tiny_search(ckpt, out, "--finetune-steps", "1", "--hw-set", HW_SET,
                                             "--objective", "energy", "--energy", PRESET), monkeypatch, capsys)
    assert code == 0, err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["objective"] == "energy" and summary["energy_preset"] == PRESET
    assert f"energy (preset {PRESET}): best policy" in stdout
    recs = read_episodes(out / "episodes.jsonl")
    assert len(recs) == 3
    base_e = summary["baseline_energy_uj"]
    assert base_e > 0
    for r in recs:
        assert r["objective"] == "energy"
        assert r["cost_ratio"] == pytest.approx(r["energy_uj"] / base_e, rel=1e-12)
        assert r["objective_gain"] == pytest.approx(base_e / r["energy_uj"], rel=1e-12)
        assert r["edp_uj_us"] > 0 and r["latency_us"] > 0
    best = json.loads((out / "best_policy.json").read_text())
    searched = next(r for r in recs if r["episode"] == best["episode"])
    assert best["energy_uj"] == searched["energy_uj"] == summary["best_energy_uj"]
    assert best["baseline_energy_uj"] == base_e
    assert best["policy"] == summary["best_policy"]

    # the exported best model through `cimc report --energy PRESET --json`, on the search's hardware
    report = _report_json(out / "best_model.onnx", tmp_path / "report.json", "--energy", PRESET)
    assert report["energy"]["preset"] == PRESET
    assert [[r["w_bits"], r["a_bits"]] for r in report["layers"]] == summary["best_policy"]
    assert summary["best_energy_uj"] == pytest.approx(report["total"]["energy_uj"], rel=1e-9)
    assert summary["best_edp_uj_us"] == pytest.approx(report["total"]["edp_uj_us"], rel=1e-9)
    assert base_e == pytest.approx(report["baseline"]["energy_uj"], rel=1e-9)
    assert summary["report_energy_uj"] == pytest.approx(report["total"]["energy_uj"], rel=1e-12)
    assert summary["best_objective_gain"] == pytest.approx(report["energy_saving"], rel=1e-9)
    best_report = json.loads((out / "best_report.json").read_text())
    assert best_report["objective"] == "energy" and best_report["energy"]["preset"] == PRESET

    # the other preset gives another energy for the same model: the preset is not ignored
    other = _report_json(out / "best_model.onnx", tmp_path / "other.json")
    assert other["total"]["energy_uj"] != pytest.approx(summary["best_energy_uj"], rel=1e-3)


def test_compiler_cost_edp_is_the_reports(tmp_path: Path) -> None:
    """The compiler cost's EDP objective at a mixed policy and at W8A8 is ``cimc report``'s EDP of
    the same compiled model (default hardware and preset); latency stays the latency."""
    from cimc.frontend import import_onnx
    from cimc.models import build, export_onnx
    from cimc.report import xbar_report
    from cimc.rl.compiler_cost import CompilerCost
    from cimc.target.energy import energy_model, load_preset
    from cimc.target.hw import Hardware

    hw = Hardware()
    preset = load_preset(None)
    cost = CompilerCost("lenet", hw, energy=energy_model(preset, hw), objective="edp")
    latency_only = CompilerCost("lenet", hw)
    policy = np.array([[8, 8], [4, 6], [2, 3], [6, 4], [8, 8]], dtype=np.int64)
    path = export_onnx(build("lenet", policy, seed=0), tmp_path / "m.onnx")
    report = xbar_report(import_onnx(path).module, hw, energy=preset)
    assert cost.value(policy) == pytest.approx(report["total"]["edp_uj_us"], rel=1e-9)
    assert cost.figures(policy)["energy_uj"] == pytest.approx(report["total"]["energy_uj"], rel=1e-9)
    assert cost.baseline_value() == pytest.approx(report["baseline"]["edp_uj_us"], rel=1e-9)
    assert cost.latency(policy) == latency_only.latency(policy)
    assert cost.value(policy) < cost.baseline_value()


def test_objective_option_errors() -> None:
    from cimc.rl.search_cli import check_search_options
    from cimc.rl.search_model import make_cost_model

    common = dict(episodes=3, warmup=1, acc_drop=1.0, budget=None, finetune_steps=0, eval_limit=None,
                  train_limit=None, final_steps=None, final_epochs=None, method=None)
    with pytest.raises(CimcError, match="--objective: 'speed' is not one of latency, energy, edp"):
        check_search_options(cost="compiler", objective="speed", **common)
    with pytest.raises(CimcError, match="--objective energy: needs --cost compiler"):
        check_search_options(cost="closed-form", objective="energy", **common)
    with pytest.raises(CimcError, match="--objective edp: needs --cost compiler"):
        make_cost_model("measured", "lenet", [], None, objective="edp")


@pytest.mark.parametrize("extra, needle", [
    (["--objective", "speed"], "speed"),
    (["--objective", "energy", "--cost", "measured"], "--cost compiler"),
    (["--objective", "edp", "--energy", "no-such-preset"], "no-such-preset"),
])
def test_search_objective_bad_input_one_line(tmp_path: Path, extra: list[str], needle: str) -> None:
    proc = subprocess.run([str(BIN / "cimc-rl"), "search", "-m", "lenet", "-d", "digits", "--ckpt",
                           str(tmp_path / "q8.pt"), "--out", str(tmp_path / "s"), *extra],
                          capture_output=True, text=True, timeout=300)
    assert_one_line_error(proc, needle)
    assert not (tmp_path / "s").exists()


class _BitOpsEnergy:
    """A static energy for the search loop's own test: the closed-form latency, and an energy of
    one unit per weight bit x input bit x MAC (not proportional to the latency)."""

    objective = "energy"

    def __init__(self) -> None:
        from cimc.rl.costs import ClosedFormCost
        from cimc.target.hw import Hardware
        from test_rl_search import DESCS

        self.inner = ClosedFormCost(DESCS, Hardware())
        self.macs = np.array([d.m * d.n * d.P * d.H for d in DESCS], dtype=np.float64)

    def latency(self, policy: np.ndarray) -> float:
        return self.inner.latency(policy)

    def baseline_latency(self) -> float:
        return self.inner.baseline_latency()

    def figures(self, policy: np.ndarray) -> dict[str, float]:
        pol = np.asarray(policy, dtype=np.float64)
        energy = float((pol[:, 0] * pol[:, 1] * self.macs).sum() * 1e-6)
        return {"energy_uj": energy, "edp_uj_us": energy * self.latency(policy)}

    def value(self, policy: np.ndarray) -> float:
        return self.figures(policy)["energy_uj"]

    def baseline_value(self) -> float:
        return self.value(np.full((len(self.macs), 2), 8, dtype=np.int64))


def test_energy_budget_mode(tmp_path: Path) -> None:
    """HAQ's budget mode bounds the objective: every episode's energy is within the budget, the
    cost ratio is energy over W8A8's and latency / speedup keep their meaning."""
    from test_rl_search import _config, _spec, synthetic_accuracy

    from cimc.rl.search import run_search

    cost = _BitOpsEnergy()
    cfg = _config(episodes=6, reward_mode="budget", latency_budget=0.3, cell_constraint=False)
    res = run_search(cfg, _spec(), cost, synthetic_accuracy, tmp_path, progress=False)
    base = cost.baseline_value()
    for r in read_episodes(tmp_path / "episodes.jsonl"):
        assert r["objective"] == "energy"
        assert r["energy_uj"] <= 0.3 * base * (1 + 1e-12)
        assert r["cost_ratio"] == pytest.approx(r["energy_uj"] / base, rel=1e-12)
        assert r["latency_us"] == cost.latency(np.array(r["policy"]))
        assert r["speedup"] == pytest.approx(res.baseline_latency_us / r["latency_us"], rel=1e-12)
    with pytest.raises(CimcError, match="energy budget 0.001 x W8A8 is unreachable"):
        run_search(_config(episodes=2, reward_mode="budget", latency_budget=0.001), _spec(), cost,
                   synthetic_accuracy, tmp_path / "x", progress=False)


def test_uniform_policies_reward_the_objective() -> None:
    """``--uniform`` rows of an energy search are rewarded with the energy ratio."""
    from test_rl_search import _config, _spec, synthetic_accuracy

    from cimc.rl.baselines import uniform_policies
    from cimc.rl.env import reward

    cost = _BitOpsEnergy()
    cfg = _config(first_last_8bit=False)
    rows = uniform_policies(cfg, _spec(), cost, synthetic_accuracy, acc_8bit=90.0)
    w4 = next(r for r in rows if r.label == "W4A4")
    assert w4.reward == pytest.approx(reward(w4.accuracy, 90.0, cfg.allowed_drop, 0.25), rel=1e-12)
    assert w4.speedup == pytest.approx(cost.baseline_latency() / w4.latency_us, rel=1e-12)


CHIP_SET = "rows=128,cell_bits=2,arrays=16"


def test_compiler_cost_chip_is_the_reports_time_per_inference(tmp_path: Path) -> None:
    """``--objective chip``: the compiler cost's figure is ``cimc report``'s chip time per
    inference of the same compiled model on a 16-array chip, which is not the paper's latency
    (the arrays run tiles side by side; the paper's latency does not change with them); on one
    array the two agree."""
    from cimc.frontend import import_onnx
    from cimc.models import build, export_onnx
    from cimc.report import xbar_report
    from cimc.rl.compiler_cost import CompilerCost
    from cimc.target.energy import energy_model, load_preset
    from cimc.target.hw import Hardware

    preset = load_preset(None)
    policy = np.array([[8, 8], [4, 6], [2, 3], [6, 4], [8, 8]], dtype=np.int64)
    path = export_onnx(build("lenet", policy, seed=0), tmp_path / "m.onnx")
    paper = None
    for arrays in (1, 16):
        hw = Hardware(rows=128, cell_bits=2, arrays=arrays)
        cost = CompilerCost("lenet", hw, energy=energy_model(preset, hw), objective="chip")
        report = xbar_report(import_onnx(path).module, hw, energy=preset)
        assert cost.value(policy) == pytest.approx(report["chip"]["time_per_inference_us"], rel=1e-12)
        assert cost.value(policy) < cost.baseline_value()
        if arrays == 1:
            paper = cost.latency(policy)
            assert paper == pytest.approx(report["total"]["latency_us"], rel=1e-12)
            assert cost.value(policy) == pytest.approx(paper, rel=1e-12)
        else:
            assert cost.latency(policy) == paper
            assert cost.value(policy) < 0.5 * paper


@pytest.mark.slow
def test_search_chip_objective_end_to_end(tmp_path: Path, monkeypatch, capsys) -> None:
    """A tiny search minimising the chip's time per inference on 16 arrays: each episode's cost
    ratio is its chip time over W8A8's, and the best policy's chip time is what ``cimc report``
    gives for the exported best model on the same chip."""
    pytest.importorskip("sklearn", reason="the digits data set needs scikit-learn")
    ckpt = lenet_q8(tmp_path)
    out = tmp_path / "search"
    code, stdout, err = _run_cli(tiny_search(ckpt, out, "--finetune-steps", "0", "--hw-set", CHIP_SET,
                                             "--objective", "chip"), monkeypatch, capsys)
    assert code == 0, err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["objective"] == "chip" and summary["hw"]["arrays"] == 16
    assert "us per inference" in stdout
    recs = read_episodes(out / "episodes.jsonl")
    base = summary["baseline_chip_us"]
    for r in recs:
        assert r["objective"] == "chip"
        assert r["cost_ratio"] == pytest.approx(r["chip_us"] / base, rel=1e-12)
        assert r["chip_us"] < r["latency_us"]
    # each new policy is compiled for its chip time, and the time split says so (the compiles
    # of a LeNet take tenths of a second; a cached per-layer lookup takes microseconds)
    assert sum(r["time"]["cost_s"] for r in recs) > 0.01
    best = json.loads((out / "best_policy.json").read_text())
    assert best["chip_us"] == summary["best_chip_us"]
    proc = subprocess.run([str(BIN / "cimc"), "report", str(out / "best_model.onnx"), "--hw-set", CHIP_SET,
                           "--json", str(tmp_path / "r.json")], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert [[r["w_bits"], r["a_bits"]] for r in report["layers"]] == summary["best_policy"]
    assert summary["best_chip_us"] == pytest.approx(report["chip"]["time_per_inference_us"], rel=1e-9)
