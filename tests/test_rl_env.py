"""Tests of cimc.rl.env: action mapping, constraints, reward, state, config."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cimc.errors import CimcError
from cimc.rl.env import (
    LAYER_ATTENTION,
    LAYER_CONV,
    LAYER_LINEAR,
    N_STATE,
    BitWidthEnv,
    LayerInfo,
    SearchConfig,
    action_to_bits,
    apply_first_last,
    budget_reward,
    cell_action_to_bits,
    constrain,
    enforce_latency_budget,
    layer_info_from_desc,
    min_policy,
    reward,
    static_features,
    uniform_policy,
    weight_action_to_bits,
    weight_choices,
)


def _layers() -> list[LayerInfo]:
    return [
        LayerInfo(LAYER_CONV, 1, 6, 1, 5, 150, 784, 0, "conv1"),
        LayerInfo(LAYER_CONV, 6, 16, 1, 5, 2400, 144, 1, "conv2"),
        LayerInfo(LAYER_LINEAR, 256, 120, 1, 1, 30720, 1, 2, "fc1"),
        LayerInfo(LAYER_LINEAR, 120, 84, 1, 1, 10080, 1, 3, "fc2"),
        LayerInfo(LAYER_LINEAR, 84, 10, 1, 1, 840, 1, 4, "fc3"),
    ]


@pytest.mark.parametrize("u, bits", [(0.0, 2), (0.2, 3), (0.5, 5), (0.99, 8), (1.0, 8)])
def test_action_to_bits_examples(u: float, bits: int) -> None:
    assert action_to_bits(u, 2, 8) == bits


def test_action_to_bits_monotone_and_in_bounds() -> None:
    us = np.linspace(0, 1, 1001)
    bits = [action_to_bits(u, 2, 8) for u in us]
    assert bits == sorted(bits)
    assert set(bits) == set(range(2, 9))
    assert action_to_bits(-0.3, 2, 8) == 2 and action_to_bits(1.7, 2, 8) == 8


def test_cell_constraint_c4() -> None:
    choices = weight_choices(2, 8, 4)
    assert choices == [4, 8]
    assert cell_action_to_bits(0.0, choices) == 4
    assert cell_action_to_bits(0.49, choices) == 4
    assert cell_action_to_bits(0.5, choices) == 8
    assert cell_action_to_bits(1.0, choices) == 8


def test_cell_constraint_c2_quarters() -> None:
    choices = weight_choices(2, 8, 2)
    assert choices == [2, 4, 6, 8]
    got = [cell_action_to_bits(u, choices) for u in (0.0, 0.24, 0.25, 0.49, 0.5, 0.74, 0.75, 1.0)]
    assert got == [2, 2, 4, 4, 6, 6, 8, 8]


def test_weight_action_respects_config() -> None:
    on = SearchConfig(cell_bits=4, cell_constraint=True)
    off = SearchConfig(cell_bits=4, cell_constraint=False)
    assert weight_action_to_bits(0.2, on) == 4
    assert weight_action_to_bits(0.2, off) == 3


def test_first_last_forced() -> None:
    pol = uniform_policy(4, 3)
    out = apply_first_last(pol)
    assert out.tolist() == [[8, 8], [3, 3], [3, 3], [8, 8]]
    assert pol.tolist() == [[3, 3]] * 4  # input untouched
    assert constrain(pol, SearchConfig(first_last_8bit=False)).tolist() == pol.tolist()


@pytest.mark.parametrize("acc, ratio, expected", [(69, 0.5, -10.0), (71, 0.5, 100.1), (70, 1.0, 0.0),
                                                  (75, 0.4, 150.5)])
def test_reward_examples(acc: float, ratio: float, expected: float) -> None:
    # acc_t = 70: acc_8bit 71, allowed drop 1
    assert reward(acc, 71.0, 1.0, ratio) == pytest.approx(expected)


def test_budget_reward_is_accuracy_only() -> None:
    assert budget_reward(88.0, 90.0) == pytest.approx(-0.2)


def test_static_features_minmax() -> None:
    feats = static_features(_layers())
    assert feats.shape == (5, 8)
    for col in range(8):
        if feats[:, col].max() > feats[:, col].min():
            assert feats[:, col].min() == 0.0 and feats[:, col].max() == 1.0
    # stride is constant (1) for every layer: left as it is
    assert np.all(feats[:, 3] == 1.0)


def test_env_steps_and_state() -> None:
    cfg = SearchConfig(cell_constraint=True, cell_bits=4)
    env = BitWidthEnv(_layers(), cfg)
    assert env.n_steps == 10
    s = env.reset()
    assert s.shape == (N_STATE,)
    assert s[8] == 1.0 and s[9] == 1.0  # previous bits b_max/b_max, next action: weights
    s, done = env.step(0.2)  # weights -> 4 under c=4
    assert not done and s[9] == 0.0 and s[8] == pytest.approx(4 / 8)
    s, done = env.step(0.2)  # activations -> 3
    assert not done and s[9] == 1.0 and s[8] == pytest.approx(3 / 8)
    assert s[7] == pytest.approx(0.25)  # layer index 1 of 0..4
    for _ in range(8):
        s, done = env.step(1.0)
    assert done
    assert env.raw_policy.tolist() == [[4, 3], [8, 8], [8, 8], [8, 8], [8, 8]]
    with pytest.raises(RuntimeError):
        env.step(0.5)


def _toy_latency(pol: np.ndarray) -> float:
    pol = np.asarray(pol)
    return float(np.sum(np.ceil(pol[:, 0] / 4) * 10 + pol[:, 1] * 5))


def test_budget_enforcement_lowers_from_the_back() -> None:
    cfg = SearchConfig(cell_constraint=False, first_last_8bit=True, b_min=2)
    pol = apply_first_last(uniform_policy(4, 8))
    full = _toy_latency(pol)
    out = enforce_latency_budget(pol, _toy_latency, full - 5, cfg)
    # one activation bit off the last non-fixed layer (layer 2)
    assert out.tolist() == [[8, 8], [8, 8], [8, 7], [8, 8]]
    out = enforce_latency_budget(pol, _toy_latency, 0.7 * full, cfg)
    assert _toy_latency(out) <= 0.7 * full
    assert out[0].tolist() == [8, 8] and out[-1].tolist() == [8, 8]
    # unreachable budget: stops at the minimum
    out = enforce_latency_budget(pol, _toy_latency, 1.0, cfg)
    assert out.tolist() == min_policy(4, cfg).tolist()


def test_budget_enforcement_uses_cell_widths() -> None:
    cfg = SearchConfig(cell_constraint=True, cell_bits=4, first_last_8bit=False)
    out = enforce_latency_budget(uniform_policy(2, 8), _toy_latency, 1.0, cfg)
    assert set(out[:, 0].tolist()) <= {4, 8}
    assert out.tolist() == [[4, 2], [4, 2]]


def test_config_json_roundtrip_and_errors(tmp_path) -> None:
    cfg = SearchConfig(episodes=7, allowed_drop=1.5)
    cfg.ddpg.batch_size = 8
    back = SearchConfig.from_json(cfg.to_json())
    assert back == cfg
    path = tmp_path / "c.json"
    path.write_text(cfg.to_json())
    assert SearchConfig.from_json(path) == cfg
    with pytest.raises(CimcError, match="unknown key"):
        SearchConfig.from_dict({"episodez": 3})
    with pytest.raises(CimcError, match="unknown ddpg key"):
        SearchConfig.from_dict({"ddpg": {"lr": 1}})
    with pytest.raises(CimcError, match="cell_bits"):
        SearchConfig(b_min=2, b_max=8, cell_bits=16).validate()
    with pytest.raises(CimcError, match="method"):
        SearchConfig(method="ppo").validate()
    assert json.loads(cfg.to_json())["ddpg"]["batch_size"] == 8


def test_layer_info_from_desc() -> None:
    class Desc:  # duck-typed LayerDesc
        name, m, n, P, H, kind = "blk.qk", 50, 64, 50, 12, "matmul"

    info = layer_info_from_desc(Desc(), 3)
    assert info.type == LAYER_ATTENTION and info.c_in == 64 and info.c_out == 50
    assert info.n_weights == 50 * 64 * 12 and info.in_fmap == 50 and info.index == 3


def test_empty_layers_is_an_error() -> None:
    with pytest.raises(CimcError):
        BitWidthEnv([], SearchConfig())
