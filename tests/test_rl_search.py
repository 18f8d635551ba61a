"""Tests of cimc.rl.search and cimc.rl.baselines with a synthetic accuracy and the closed-form cost.

No training here: accuracy = 90 - 0.1 * sum over layers of (8 - w) + (8 - a).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from cimc.target import LayerDesc
from cimc.errors import CimcError
from cimc.target.hw import Hardware
from cimc.rl.baselines import random_search, uniform_policies
from cimc.rl.env import SearchConfig, layer_info_from_desc, uniform_policy
from cimc.rl.search import (
    KILL_ENV,
    ClosedFormCost,
    CostModel,
    EnvSpec,
    FunctionCost,
    read_episodes,
    run_search,
)

DESCS = [
    LayerDesc("conv1", 6, 25, 576, 1, "conv"),
    LayerDesc("conv2", 16, 150, 1024, 1, "conv"),
    LayerDesc("conv3", 32, 400, 256, 1, "conv"),
    LayerDesc("fc1", 120, 512, 1, 1, "linear"),
    LayerDesc("fc2", 10, 120, 1, 1, "linear"),
]


def synthetic_accuracy(policy: np.ndarray) -> float:
    return float(90.0 - 0.1 * np.sum(8 - np.asarray(policy)))


def _spec() -> EnvSpec:
    return EnvSpec(tuple(layer_info_from_desc(d, i) for i, d in enumerate(DESCS)), model="toy")


def _config(**kw) -> SearchConfig:
    cfg = SearchConfig(episodes=kw.pop("episodes", 24), warmup=kw.pop("warmup", 6), seed=kw.pop("seed", 0),
                       allowed_drop=kw.pop("allowed_drop", 2.0), **kw)
    cfg.ddpg.batch_size = 16
    return cfg


def _strip(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "time"} for r in records]


# -- cost model ----------------------------------------------------------------------------------


def test_closed_form_cost_matches_table_t1_t2() -> None:
    cost = ClosedFormCost([LayerDesc("t", 64, 576, 3136, 1, "conv")], Hardware())
    assert isinstance(cost, CostModel)
    assert cost.baseline_latency() == pytest.approx(105537.6)
    assert cost.latency(np.array([[4, 4]])) == pytest.approx(52852.8)
    assert cost.layer_latencies(np.array([[4, 4]])).tolist() == pytest.approx([52852.8])
    with pytest.raises(CimcError):
        cost.latency(np.array([[4, 4], [8, 8]]))


def test_function_cost_wraps_a_callable() -> None:
    calls = []

    def fn(pol):
        calls.append(1)
        return float(np.sum(pol))

    cost = FunctionCost(fn, n_layers=3)
    assert cost.baseline_latency() == 48.0
    assert cost.latency(uniform_policy(3, 8)) == 48.0
    assert len(calls) == 1  # memoised
    assert cost.layer_latencies(uniform_policy(3, 8)) is None


# -- end to end ----------------------------------------------------------------------------------


def test_tiny_search_end_to_end(tmp_path: Path) -> None:
    cost = ClosedFormCost(DESCS, Hardware())
    res = run_search(_config(), _spec(), cost, synthetic_accuracy, tmp_path, progress=False)
    recs = read_episodes(tmp_path / "episodes.jsonl")
    assert [r["episode"] for r in recs] == list(range(24))
    for key in ("policy", "latency_us", "cost_ratio", "speedup", "accuracy", "reward"):
        assert key in recs[0]
    assert set(recs[0]["time"]) == {"agent_s", "cost_s", "accuracy_s", "wall_s"}
    best = max(recs, key=lambda r: r["reward"])
    assert res.best_reward == best["reward"] and res.best_policy.tolist() == best["policy"]
    assert res.acc_8bit == pytest.approx(90.0)
    assert np.load(tmp_path / "best_policy.npy").tolist() == best["policy"]
    doc = json.loads((tmp_path / "best_policy.json").read_text())
    assert doc["layers"] == [d.name for d in DESCS] and doc["reward"] == best["reward"]
    assert (tmp_path / "search.png").stat().st_size > 1000
    assert (tmp_path / "checkpoint.zip").exists()
    for r in recs:
        pol = np.array(r["policy"])
        assert pol[0].tolist() == [8, 8] and pol[-1].tolist() == [8, 8]  # first/last
        assert set(pol[:, 0].tolist()) <= {4, 8}  # cell constraint, c = 4
        assert r["latency_us"] == pytest.approx(cost.latency(pol))
        assert r["accuracy"] == pytest.approx(synthetic_accuracy(pol))
        assert r["speedup"] == pytest.approx(res.baseline_latency_us / r["latency_us"])
    # updates start after the warm-up: one per stored transition (2L = 10)
    assert [r["updates"] for r in recs[:5]] == [0] * 5
    assert all(r["updates"] == 10 for r in recs[5:])
    assert recs[10]["sigma"] == pytest.approx(0.5 * 0.1 ** (4 / 17))  # 0.5 -> 0.05 over episodes 6..23


def test_same_seed_identical_other_seed_differs(tmp_path: Path) -> None:
    cost = ClosedFormCost(DESCS, Hardware())
    outs = []
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        run_search(_config(seed=seed, episodes=16), _spec(), cost, synthetic_accuracy,
                   tmp_path / name, progress=False)
        outs.append(_strip(read_episodes(tmp_path / name / "episodes.jsonl")))
    assert outs[0] == outs[1]
    assert outs[0] != outs[2]


def test_refuses_existing_checkpoint_and_changed_config(tmp_path: Path) -> None:
    cost = ClosedFormCost(DESCS, Hardware())
    run_search(_config(episodes=3, warmup=1), _spec(), cost, synthetic_accuracy, tmp_path, progress=False)
    with pytest.raises(CimcError, match="resume"):
        run_search(_config(episodes=3, warmup=1), _spec(), cost, synthetic_accuracy, tmp_path,
                   progress=False)
    with pytest.raises(CimcError, match="different search configuration"):
        run_search(_config(episodes=3, warmup=1, allowed_drop=0.1), _spec(), cost, synthetic_accuracy,
                   tmp_path, resume=True, progress=False)
    # more episodes on resume is allowed and continues the numbering
    res = run_search(_config(episodes=5, warmup=1), _spec(), cost, synthetic_accuracy, tmp_path,
                     resume=True, progress=False)
    assert res.episodes == 5
    assert [r["episode"] for r in read_episodes(tmp_path / "episodes.jsonl")] == list(range(5))


def test_accuracy_cache_skips_repeated_policies(tmp_path: Path) -> None:
    seen = []

    def acc(pol):
        seen.append(pol.tobytes())
        return synthetic_accuracy(pol)

    cost = ClosedFormCost(DESCS, Hardware())
    run_search(_config(episodes=20), _spec(), cost, acc, tmp_path, progress=False)
    recs = read_episodes(tmp_path / "episodes.jsonl")
    assert len(seen) == len(set(seen))
    assert len(seen) == 1 + sum(not r["acc_cached"] for r in recs)  # + the W8A8 reference


def test_budget_mode(tmp_path: Path) -> None:
    cost = ClosedFormCost(DESCS, Hardware())
    cfg = _config(episodes=8, reward_mode="budget", latency_budget=0.6, cell_constraint=False)
    res = run_search(cfg, _spec(), cost, synthetic_accuracy, tmp_path, progress=False)
    for r in read_episodes(tmp_path / "episodes.jsonl"):
        assert r["cost_ratio"] <= 0.6 + 1e-12
        assert r["reward"] == pytest.approx(0.1 * (r["accuracy"] - 90.0))
    assert res.best_latency_us <= 0.6 * res.baseline_latency_us
    with pytest.raises(CimcError, match="unreachable"):
        run_search(_config(episodes=2, reward_mode="budget", latency_budget=0.01), _spec(), cost,
                   synthetic_accuracy, tmp_path / "x", progress=False)


def test_baselines(tmp_path: Path) -> None:
    cost = ClosedFormCost(DESCS, Hardware())
    res = random_search(_config(episodes=10), _spec(), cost, synthetic_accuracy, tmp_path, progress=False)
    recs = read_episodes(tmp_path / "episodes.jsonl")
    assert len(recs) == 10 and all(r["updates"] == 0 and r["sigma"] is None for r in recs)
    assert res.best_reward == max(r["reward"] for r in recs)
    rows = uniform_policies(_config(), _spec(), cost, synthetic_accuracy)
    assert [r.label for r in rows] == ["W8A8", "W6A6", "W4A4", "W2A2"]
    assert rows[0].speedup == pytest.approx(1.0) and rows[0].reward == pytest.approx(0.2)
    assert rows[2].policy[1].tolist() == [4, 4] and rows[2].policy[0].tolist() == [8, 8]
    assert rows[2].speedup > 1.0
    assert rows[3].accuracy < rows[2].accuracy < rows[0].accuracy


# -- kill and resume -------------------------------------------------------------------------------

SCRIPT = textwrap.dedent(
    """
    import sys
    import numpy as np
    from cimc.target import LayerDesc
    from cimc.target.hw import Hardware
    from cimc.rl.env import SearchConfig, layer_info_from_desc
    from cimc.rl.search import ClosedFormCost, EnvSpec, run_search

    DESCS = [LayerDesc(*d) for d in {descs!r}]
    spec = EnvSpec(tuple(layer_info_from_desc(d, i) for i, d in enumerate(DESCS)))
    cfg = SearchConfig.from_json({config!r})

    def acc(p):
        return float(90.0 - 0.1 * np.sum(8 - np.asarray(p)))

    run_search(cfg, spec, ClosedFormCost(DESCS, Hardware()), acc, sys.argv[1],
               resume=sys.argv[2] == "resume", progress=False)
    """
)


def _run(script: Path, out: Path, mode: str, kill: str | None) -> int:
    env = dict(os.environ)
    env.pop(KILL_ENV, None)
    if kill is not None:
        env[KILL_ENV] = kill
    proc = subprocess.run([sys.executable, str(script), str(out), mode], env=env,
                          capture_output=True, text=True, timeout=120)
    if proc.returncode not in (0, -signal.SIGKILL):
        raise AssertionError(proc.stderr)
    return proc.returncode


def test_kill_and_resume_matches_uninterrupted_run(tmp_path: Path) -> None:
    cfg = _config(episodes=16, warmup=4)
    script = tmp_path / "run.py"
    descs = [(d.name, d.m, d.n, d.P, d.H, d.kind) for d in DESCS]
    script.write_text(SCRIPT.format(descs=descs, config=cfg.to_json()))

    assert _run(script, tmp_path / "full", "fresh", None) == 0
    full = _strip(read_episodes(tmp_path / "full" / "episodes.jsonl"))
    assert len(full) == 16

    out = tmp_path / "killed"
    # killed in the middle of episode index 3 (warm-up; accuracy measured, nothing written)
    assert _run(script, out, "fresh", "3:mid") == -signal.SIGKILL
    assert len(read_episodes(out / "episodes.jsonl")) == 3
    # killed after the 11th episode's checkpoint (agent learning), before its jsonl line
    assert _run(script, out, "resume", "11") == -signal.SIGKILL
    assert len(read_episodes(out / "episodes.jsonl")) == 10
    assert _run(script, out, "resume", None) == 0
    resumed = _strip(read_episodes(out / "episodes.jsonl"))
    assert [r["episode"] for r in resumed] == list(range(16))
    assert resumed == full
    assert np.load(out / "best_policy.npy").tolist() == np.load(tmp_path / "full" / "best_policy.npy").tolist()


# -- the command line, wired to the real model / data / training / cost modules ------------------


def test_describe_model_lenet() -> None:
    from cimc.rl.search_model import describe_model

    infos, descs = describe_model("lenet")
    assert [d.name for d in descs] == [i.name for i in infos]
    from cimc.models import layer_names

    assert [d.name for d in descs] == layer_names("lenet")
    conv1 = descs[0]
    assert conv1.kind == "conv" and conv1.n == 1 * 5 * 5 and conv1.P > 1
    assert descs[-1].kind == "linear" and descs[-1].m == 10 and descs[-1].P == 1
    assert infos[0].kernel == 5 and infos[-1].type == 2


def test_describe_model_vit_small_attention() -> None:
    from cimc.rl.search_model import describe_model

    infos, descs = describe_model("vit_small")
    qk = next(d for d in descs if d.name.endswith(".qk"))
    av = next(d for d in descs if d.name.endswith(".av"))
    # Q @ K^T per head: (T, head_dim, T, heads); A @ V: (head_dim, T, T, heads)
    assert qk.kind == "matmul" and qk.m == qk.P == av.n and qk.n == av.m and qk.H == av.H > 1
    assert any(i.type == 3 for i in infos)


def _run_cli(argv: list[str], monkeypatch, capsys) -> tuple[int, str, str]:
    from cimc.rl import cli

    monkeypatch.setattr(sys, "argv", ["cimc-rl", *argv])
    with pytest.raises(SystemExit) as exc:
        cli.main()
    out = capsys.readouterr()
    return int(exc.value.code or 0), out.out, out.err


@pytest.mark.slow
def test_cli_search_end_to_end(tmp_path: Path, monkeypatch, capsys) -> None:
    """A tiny search (digits, lenet, compiler cost, non-default hardware) then the exported best
    model run bit-serially at batch 1: its counted latency is the latency the search recorded."""
    pytest.importorskip("sklearn", reason="the digits data set needs scikit-learn")
    from cimc.data import load_dataset
    from cimc.exec.xbar_exec import run_xbar
    from cimc.frontend import import_onnx
    from cimc.pipeline import lower
    from search_helpers import lenet_q8, tiny_search

    ckpt = lenet_q8(tmp_path)
    out = tmp_path / "search"
    code, stdout, err = _run_cli(tiny_search(ckpt, out, "--finetune-steps", "1", "--hw-set", "rows=128,cell_bits=2"),
                                 monkeypatch, capsys)
    assert code == 0, err
    assert "best policy" in stdout and "searched" in stdout and "exported" in stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["cost"] == "compiler"
    assert summary["episodes"] == 3 and len(summary["best_policy"]) == 5
    assert summary["best_speedup"] >= 1.0
    assert summary["final_steps"] == 2 and 0.0 <= summary["final_test_accuracy"] <= 100.0
    assert (out / "best_model.onnx").stat().st_size > 0
    assert (out / "best_report.png").stat().st_size > 1000
    report = json.loads((out / "best_report.json").read_text())
    assert [[r["w_bits"], r["a_bits"]] for r in report["layers"]] == summary["best_policy"]
    recs = read_episodes(out / "episodes.jsonl")
    assert len(recs) == 3
    best = json.loads((out / "best_policy.json").read_text())
    searched = next(r for r in recs if r["episode"] == best["episode"])["latency_us"]
    assert best["latency_us"] == searched == summary["best_latency_us"]
    assert summary["report_latency_us"] == pytest.approx(searched, rel=1e-12)
    assert summary["report_speedup"] == pytest.approx(summary["best_speedup"], rel=1e-12)

    # the exported model, bit-serially on the search's hardware, batch 1
    hw = Hardware.from_dict(summary["hw"])
    assert (hw.rows, hw.cell_bits) == (128, 2)
    module = import_onnx(out / "best_model.onnx").module
    lower(module, "xbar", hw=hw)
    x = load_dataset("digits", "test", limit=1)[0]
    res = run_xbar(module, [x], hw=hw, fast=False)
    rows = res.report["layers"]
    assert [[r["w_bits"], r["a_bits"]] for r in rows] == summary["best_policy"]
    counted = sum(r["writes"] * hw.t_write_us + r["executes"] * hw.t_exec_us for r in rows)
    assert counted == pytest.approx(searched, rel=1e-12)

    # running again without --resume is refused with one line
    code, _, err = _run_cli(["search", "--model", "lenet", "--dataset", "digits", "--ckpt", str(ckpt),
                             "--episodes", "3", "--warmup", "1", "--out", str(out), "--no-progress"],
                            monkeypatch, capsys)
    assert code == 1 and err.startswith("error:") and "--resume" in err and len(err.strip().splitlines()) == 1


def test_cli_search_errors(tmp_path: Path, monkeypatch, capsys) -> None:
    code, _, err = _run_cli(["search", "--model", "lenet", "--dataset", "digits", "--out",
                             str(tmp_path / "a"), "--no-progress"], monkeypatch, capsys)
    assert code != 0 and "--ckpt" in err and len(err.strip().splitlines()) == 1
    code, _, err = _run_cli(["search", "--model", "nope", "--dataset", "digits", "--ckpt",
                             str(tmp_path / "none.pt"), "--out", str(tmp_path / "b")], monkeypatch, capsys)
    assert code != 0 and "unknown model" in err
    code, _, err = _run_cli(["search", "--model", "lenet", "--dataset", "digits", "--cost", "compiler",
                             "--method", "ppo", "--ckpt", str(tmp_path / "none.pt"), "--out", str(tmp_path / "c")],
                            monkeypatch, capsys)
    assert code != 0 and "method" in err
    code, _, err = _run_cli(["search", "--model", "lenet", "--dataset", "digits", "--final-steps", "0",
                             "--ckpt", str(tmp_path / "none.pt"), "--out", str(tmp_path / "d")], monkeypatch, capsys)
    assert code != 0 and "--final-steps" in err and len(err.strip().splitlines()) == 1
    code, _, err = _run_cli(["search", "--model", "lenet", "--dataset", "digits", "--cost", "table",
                             "--ckpt", str(tmp_path / "none.pt"), "--out", str(tmp_path / "e")],
                            monkeypatch, capsys)
    assert code != 0 and "--cost" in err and len(err.strip().splitlines()) == 1
