"""The gymnasium face of the bit-width environment, and Stable-Baselines3's TD3 driving a search."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

gym = pytest.importorskip("gymnasium", reason="gymnasium is installed by the set-up (pyproject)")

from cimc.target.cost import LayerDesc  # noqa: E402
from cimc.target.hw import Hardware  # noqa: E402
from cimc.rl.costs import ClosedFormCost  # noqa: E402
from cimc.rl.env import SearchConfig, layer_info_from_desc  # noqa: E402
from cimc.rl.gym_env import BitWidthGymEnv  # noqa: E402
from cimc.rl.search import read_episodes, run_search  # noqa: E402

DESCS = [
    LayerDesc("conv1", 6, 25, 576, 1, "conv"),
    LayerDesc("conv2", 16, 150, 1024, 1, "conv"),
    LayerDesc("fc1", 120, 512, 1, 1, "linear"),
    LayerDesc("fc2", 10, 120, 1, 1, "linear"),
]
LAYERS = tuple(layer_info_from_desc(d, i) for i, d in enumerate(DESCS))


def synthetic_accuracy(policy: np.ndarray) -> float:
    return float(90.0 - 0.1 * np.sum(8 - np.asarray(policy)))


def _scorer(calls: list):
    def score(ep, raw, actions):
        calls.append((ep, raw.copy(), list(actions)))
        return {"reward": float(raw.sum())}

    return score


def test_env_passes_gymnasiums_checker() -> None:
    from gymnasium.utils.env_checker import check_env

    env = BitWidthGymEnv(LAYERS, SearchConfig(), _scorer([]))
    check_env(env, skip_render_check=True)
    assert env.observation_space.shape == (10,) and env.action_space.shape == (1,)


def test_episode_has_2l_steps_and_rewards_only_at_the_end() -> None:
    calls: list = []
    cfg = SearchConfig(cell_constraint=False)
    env = BitWidthGymEnv(LAYERS, cfg, _scorer(calls))
    obs, info = env.reset(seed=0)
    assert info == {"episode": 0} and env.observation_space.contains(obs)
    actions = np.linspace(0.0, 1.0, env.n_steps)
    rewards, done = [], False
    for i, u in enumerate(actions):
        assert not done
        obs, r, done, trunc, info = env.step(np.array([u], dtype=np.float32))
        assert not trunc and env.observation_space.contains(obs)
        rewards.append(r)
    assert done and env.n_steps == 2 * len(LAYERS)
    assert rewards[:-1] == [0.0] * (env.n_steps - 1)
    ep, raw, acts = calls[0]
    assert ep == 0 and acts == pytest.approx(actions.tolist())
    assert rewards[-1] == float(raw.sum()) == info["record"]["reward"]
    # the same action -> bits mapping as cimc's own environment
    from cimc.rl.env import BitWidthEnv

    inner = BitWidthEnv(LAYERS, cfg)
    inner.reset()
    for u in actions:
        inner.step(float(np.float32(u)))
    assert np.array_equal(inner.raw_policy, raw)
    env.reset()
    assert env.episode == 1


def _td3(tmp_path: Path, name: str, seed: int = 0):
    cfg = SearchConfig(episodes=6, warmup=2, seed=seed, method="td3", allowed_drop=2.0)
    cfg.ddpg.batch_size = 16
    cost = ClosedFormCost(DESCS, Hardware())
    res = run_search(cfg, LAYERS, cost, synthetic_accuracy, tmp_path / name, progress=False)
    return res, read_episodes(tmp_path / name / "episodes.jsonl"), cost


def test_td3_from_stable_baselines3_runs_a_search(tmp_path: Path) -> None:
    pytest.importorskip("stable_baselines3", reason="stable-baselines3 is installed by the set-up")
    res, recs, cost = _td3(tmp_path, "a")
    assert [r["episode"] for r in recs] == list(range(6))
    for r in recs:
        pol = np.array(r["policy"])
        assert pol[0].tolist() == [8, 8] and pol[-1].tolist() == [8, 8]
        assert set(pol[:, 0].tolist()) <= {4, 8}
        assert r["latency_us"] == pytest.approx(cost.latency(pol))
        assert r["accuracy"] == pytest.approx(synthetic_accuracy(pol))
        assert len(r["actions"]) == 2 * len(LAYERS)
    assert res.best_reward == max(r["reward"] for r in recs)
    assert (tmp_path / "a" / "search.png").stat().st_size > 1000
    # seeded: the same run twice
    _, again, _ = _td3(tmp_path, "b")
    strip = [{k: v for k, v in r.items() if k != "time"} for r in recs]
    assert strip == [{k: v for k, v in r.items() if k != "time"} for r in again]
