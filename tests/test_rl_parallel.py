"""Episodes on Ray workers: the same results as a sequential run with the same seed and K, a
worker killed mid-episode loses or repeats nothing, and ``--resume`` works with workers.

The accuracy is synthetic (no training) and the cost closed-form, so the tests measure the
search's bookkeeping, not the model. A local throw-away Ray instance (token auth off) is shared
by the tests of this module.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import numpy as np
import pytest

from cimc.target.cost import LayerDesc
from cimc.target.hw import Hardware
from cimc.rl.costs import ClosedFormCost
from cimc.rl.env import SearchConfig, layer_info_from_desc
from cimc.rl.parallel import LocalExecutor, RayExecutor
from cimc.rl.search import KILL_ENV, EnvSpec, read_episodes, run_search

DESCS = [
    LayerDesc("conv1", 6, 25, 576, 1, "conv"),
    LayerDesc("conv2", 16, 150, 1024, 1, "conv"),
    LayerDesc("conv3", 32, 400, 256, 1, "conv"),
    LayerDesc("fc1", 120, 512, 1, 1, "linear"),
    LayerDesc("fc2", 10, 120, 1, 1, "linear"),
]
SPEC = EnvSpec(tuple(layer_info_from_desc(d, i) for i, d in enumerate(DESCS)), model="toy")


def synthetic_accuracy(policy: np.ndarray) -> float:
    return float(90.0 - 0.1 * np.sum(8 - np.asarray(policy)))


class KillOnce:
    """Synthetic accuracy that SIGKILLs its own process at its ``at``-th call, once per
    ``marker`` file (the restarted worker finds the marker and carries on)."""

    def __init__(self, marker: str, at: int):
        self.marker, self.at, self.calls = marker, at, 0

    def __call__(self, policy: np.ndarray) -> float:
        self.calls += 1
        if self.calls == self.at and not os.path.exists(self.marker):
            Path(self.marker).write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)
        return synthetic_accuracy(policy)


def _factory() -> object:
    return synthetic_accuracy


def _config(**kw) -> SearchConfig:
    cfg = SearchConfig(episodes=kw.pop("episodes", 12), warmup=kw.pop("warmup", 4), seed=kw.pop("seed", 5),
                       allowed_drop=2.0, workers=kw.pop("workers", 2), **kw)
    cfg.ddpg.batch_size = 16
    return cfg


def _episodes(path: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "time"} for r in read_episodes(path / "episodes.jsonl")]


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray", reason="Ray is installed by the set-up (pyproject)")
    os.environ["RAY_AUTH_MODE"] = "disabled"  # a local throw-away instance
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield ray
    ray.shutdown()
    os.environ.pop("RAY_AUTH_MODE", None)


def test_two_ray_workers_equal_a_sequential_run(tmp_path: Path, ray_local) -> None:
    cost = ClosedFormCost(DESCS, Hardware())
    run_search(_config(), SPEC, cost, synthetic_accuracy, tmp_path / "seq", progress=False)
    ex = RayExecutor(_factory, 2)
    try:
        run_search(_config(), SPEC, cost, None, tmp_path / "ray", progress=False, executor=ex)
    finally:
        ex.close()
    seq, par = _episodes(tmp_path / "seq"), _episodes(tmp_path / "ray")
    assert [r["episode"] for r in par] == list(range(12))
    assert par == seq
    # K = 2 plays two episodes per actor snapshot: updates after every second episode
    assert [r["updates"] for r in par[:3]] == [0, 0, 0] and par[5]["updates"] == 2 * 2 * len(DESCS)
    # another K gives another (equally valid) run
    run_search(_config(workers=3), SPEC, cost, synthetic_accuracy, tmp_path / "k3", progress=False)
    assert _episodes(tmp_path / "k3") != seq


def test_killed_worker_is_restarted_and_its_episode_rerun(tmp_path: Path, ray_local) -> None:
    cost = ClosedFormCost(DESCS, Hardware())
    run_search(_config(), SPEC, cost, synthetic_accuracy, tmp_path / "seq", progress=False)
    marker = tmp_path / "killed.pid"
    import functools

    ex = RayExecutor(functools.partial(KillOnce, str(marker), 3), 2)
    try:
        before = ex.pids()
        run_search(_config(), SPEC, cost, None, tmp_path / "ray", progress=False, executor=ex)
        after = ex.pids()
    finally:
        ex.close()
    killed = int(marker.read_text())
    assert killed in before and killed not in after  # that worker died and was replaced
    assert len(set(before) & set(after)) == 1
    par = _episodes(tmp_path / "ray")
    assert [r["episode"] for r in par] == list(range(12))  # none lost, none twice
    assert par == _episodes(tmp_path / "seq")


def test_resume_with_workers_matches_uninterrupted(tmp_path: Path, ray_local) -> None:
    """Stopped after 6 episodes (3 rounds of K = 2) and resumed to 12 on Ray workers: the same
    episodes as one run of 12 (a stop inside a round is covered by the kill test below). The
    exploration width follows CIM-AQ's per-episode decay here: cimc's default ties it to the
    episode budget, so raising the budget on resume changes the noise of the later episodes."""
    def config(**kw) -> SearchConfig:
        cfg = _config(**kw)
        cfg.ddpg.sigma_end = None
        return cfg

    cost = ClosedFormCost(DESCS, Hardware())
    run_search(config(), SPEC, cost, synthetic_accuracy, tmp_path / "full", progress=False)
    out = tmp_path / "part"
    ex = RayExecutor(_factory, 2)
    try:
        run_search(config(episodes=6), SPEC, cost, None, out, progress=False, executor=ex)
        assert [r["episode"] for r in read_episodes(out / "episodes.jsonl")] == list(range(6))
        run_search(config(), SPEC, cost, None, out, resume=True, progress=False, executor=ex)
    finally:
        ex.close()
    assert _episodes(out) == _episodes(tmp_path / "full")


def test_resume_refuses_another_k(tmp_path: Path) -> None:
    from cimc.errors import CimcError

    cost = ClosedFormCost(DESCS, Hardware())
    run_search(_config(episodes=4), SPEC, cost, synthetic_accuracy, tmp_path, progress=False)
    with pytest.raises(CimcError, match="different search configuration"):
        run_search(_config(episodes=6, workers=3), SPEC, cost, synthetic_accuracy, tmp_path,
                   resume=True, progress=False)


def test_kill_points_with_rounds(tmp_path: Path, monkeypatch) -> None:
    """The learner killed in a round (``K:mid``) keeps the rounds before; resumed, it equals the
    uninterrupted run (rounds are re-played whole)."""
    import subprocess
    import textwrap

    cfg = _config(episodes=9, workers=2)
    script = tmp_path / "run.py"
    descs = [(d.name, d.m, d.n, d.P, d.H, d.kind) for d in DESCS]
    script.write_text(textwrap.dedent(f"""
        import sys
        import numpy as np
        from cimc.target.cost import LayerDesc
        from cimc.target.hw import Hardware
        from cimc.rl.costs import ClosedFormCost
        from cimc.rl.env import SearchConfig, layer_info_from_desc
        from cimc.rl.search import EnvSpec, run_search
        DESCS = [LayerDesc(*d) for d in {descs!r}]
        spec = EnvSpec(tuple(layer_info_from_desc(d, i) for i, d in enumerate(DESCS)), model="toy")
        acc = lambda p: float(90.0 - 0.1 * np.sum(8 - np.asarray(p)))
        run_search(SearchConfig.from_json({cfg.to_json()!r}), spec, ClosedFormCost(DESCS, Hardware()),
                   acc, sys.argv[1], resume=sys.argv[2] == "resume", progress=False)
    """))

    def run(out: Path, mode: str, kill: str | None) -> int:
        env = {k: v for k, v in os.environ.items() if k != KILL_ENV}
        if kill:
            env[KILL_ENV] = kill
        return subprocess.run([sys.executable, str(script), str(out), mode], env=env,
                              capture_output=True, timeout=120).returncode

    assert run(tmp_path / "full", "fresh", None) == 0
    out = tmp_path / "killed"
    assert run(out, "fresh", "5:mid") == -signal.SIGKILL  # in the round of episodes 4 and 5
    assert [r["episode"] for r in read_episodes(out / "episodes.jsonl")] == [0, 1, 2, 3]
    assert run(out, "resume", None) == 0
    assert _episodes(out) == _episodes(tmp_path / "full")


def test_local_executor_evaluates_in_order() -> None:
    ex = LocalExecutor(synthetic_accuracy, 2)
    pols = [np.full((5, 2), b) for b in (8, 4, 2)]
    assert [e.accuracy for e in ex.map(pols)] == [synthetic_accuracy(p) for p in pols]


@pytest.mark.slow
def test_cli_search_with_two_workers(tmp_path: Path) -> None:
    """``cimc-rl search --workers 2``: the real evaluator, sent to two Ray workers, gives the
    episodes of the same search run sequentially with K = 2 (``--workers`` is part of the
    configuration, so ``--resume`` without it is refused)."""
    import json
    import subprocess

    pytest.importorskip("sklearn", reason="the digits data set needs scikit-learn")
    from cimc.models import build
    from cimc.training import save_checkpoint, train

    model = build("lenet", seed=0)
    train(model, "digits", steps=2, limit=64, progress=False)
    ckpt = save_checkpoint(tmp_path / "q8" / "model.pt", model, {"model": "lenet", "float": False})
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "CIMC_THREADS": "1"}
    code = "import sys; from cimc.rl.cli import main; sys.argv[0] = 'cimc-rl'; main()"
    common = ["search", "--model", "lenet", "--dataset", "digits", "--ckpt", str(ckpt), "--episodes", "4",
              "--warmup", "2", "--eval-limit", "40", "--calib-images", "32", "--cost", "closed-form",
              "--no-export", "--no-progress"]
    ray = subprocess.run([sys.executable, "-c", code, *common, "--workers", "2", "--out", str(tmp_path / "r")],
                         capture_output=True, text=True, timeout=600, env=env)
    assert ray.returncode == 0, ray.stderr
    assert "2 workers" in ray.stdout
    from cimc.rl.accuracy import EvalSettings, EvaluatorFactory
    from cimc.rl.search_model import describe_model

    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    state = {k: v for k, v in model.state_dict().items()}
    factory = EvaluatorFactory("lenet", "digits", state, EvalSettings(**summary["eval"]))
    infos, descs = describe_model("lenet")
    cfg = SearchConfig.from_dict(summary["config"])
    run_search(cfg, EnvSpec(tuple(infos)), ClosedFormCost(descs, Hardware()), factory(),
               tmp_path / "seq", progress=False)
    assert _episodes(tmp_path / "r") == _episodes(tmp_path / "seq")
    again = subprocess.run([sys.executable, "-c", code, *common, "--resume", "--out", str(tmp_path / "r")],
                           capture_output=True, text=True, timeout=600, env=env)
    assert again.returncode != 0 and "different search configuration" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1
