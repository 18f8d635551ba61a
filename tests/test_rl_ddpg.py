"""Tests of cimc.rl.ddpg: networks, buffer, noise schedule, updates, exact state round trip."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cimc.rl.ddpg import Actor, Critic, DDPGAgent, ReplayBuffer, truncated_normal
from cimc.rl.env import CIMAQ_DDPG, N_STATE, DDPGConfig
from cimc.state_file import dumps_state, loads_state


def _fill(agent: DDPGAgent, n: int, seed: int = 1) -> None:
    rng = np.random.default_rng(seed)
    for i in range(n):
        s, s2 = rng.random(N_STATE), rng.random(N_STATE)
        agent.observe(s, float(rng.random()), float(rng.normal(5, 2)), s2, i % 7 == 6)


def test_network_shapes() -> None:
    actor, critic = Actor(), Critic()
    s = torch.rand(4, N_STATE)
    u = actor(s)
    assert u.shape == (4, 1) and bool(((u > 0) & (u < 1)).all())
    assert critic(s, u).shape == (4, 1)
    assert actor.fc1.out_features == 300 and actor.fc2.out_features == 300
    assert critic.fc_s.out_features == 300 and critic.fc_a.in_features == 1


def test_default_hyperparameters() -> None:
    agent = DDPGAgent(n_layers=5, config=DDPGConfig(**CIMAQ_DDPG))
    assert agent.buffer.capacity == 128 * 5
    assert agent.actor_optim.param_groups[0]["lr"] == pytest.approx(5e-5)
    assert agent.critic_optim.param_groups[0]["lr"] == pytest.approx(1e-3)
    cfg = agent.config
    assert (cfg.tau, cfg.discount, cfg.batch_size, agent.warmup) == (0.01, 1.0, 64, 30)
    assert (cfg.sigma0, cfg.sigma_decay, cfg.sigma_end, cfg.reward_norm) == (0.6, 0.997, None, "ma")
    # cimc's departures from CIM-AQ (README, search section)
    mine = DDPGConfig()
    assert (mine.discount, mine.reward_norm, mine.sigma0, mine.sigma_end) == (0.0, "buffer", 0.5, 0.05)
    assert mine.actor_grad == "inverting"
    assert {k for k in CIMAQ_DDPG if getattr(mine, k) != CIMAQ_DDPG[k]} == {
        "discount", "reward_norm", "sigma0", "sigma_end", "actor_grad"}


def test_inverted_gradients_do_not_vanish_at_a_saturated_actor() -> None:
    """An actor at u ~ 1 whose critic says lower is better: through the sigmoid the logit's
    gradient has all but vanished (and Adam, whose second moment remembers the larger gradients
    of before, barely moves it); the inverted gradient is the critic's, scaled by u ~ 1."""
    agent = DDPGAgent(n_layers=2, config=DDPGConfig(batch_size=16), warmup=0, seed=0)
    with torch.no_grad():
        agent.actor.fc3.bias.fill_(9.0)  # sigmoid(9) = 0.9999
    _fill(agent, 32)
    s = torch.as_tensor(agent.buffer.s[:16], dtype=torch.float32)
    u = agent.actor(s).detach().requires_grad_(True)
    (dq_du,) = torch.autograd.grad(agent.critic(s, u).sum(), u)
    grads = {}
    for mode in ("sigmoid", "inverting"):
        agent.actor.zero_grad()
        if mode == "sigmoid":
            (-agent.critic(s, agent.actor(s)).mean()).backward()
        else:
            agent._inverting_actor_loss(s)
        grads[mode] = float(agent.actor.fc3.bias.grad.detach())
    assert float(u.detach().min()) > 0.999
    expected = -float(torch.where(dq_du > 0, dq_du * (1 - u), dq_du * u).detach().mean())
    assert grads["inverting"] == pytest.approx(expected, rel=1e-5)
    assert abs(grads["inverting"]) > 1000 * abs(grads["sigmoid"])


def test_replay_buffer_ring() -> None:
    buf = ReplayBuffer(capacity=5)
    for i in range(8):
        buf.add(np.full(N_STATE, i), i / 10, float(i), np.zeros(N_STATE), False)
    assert len(buf) == 5
    assert sorted(buf.r[:, 0].tolist()) == [3.0, 4.0, 5.0, 6.0, 7.0]
    s, a, r, s2, d = buf.sample(np.random.default_rng(0), 3)
    assert s.shape == (3, N_STATE) and a.shape == (3, 1) and r.shape == (3, 1)


@pytest.mark.parametrize("episode, sigma", [(30, 0.6), (31, 0.6 * 0.997), (130, 0.6 * 0.997**100)])
def test_noise_schedule(episode: int, sigma: float) -> None:
    agent = DDPGAgent(n_layers=3, config=DDPGConfig(**CIMAQ_DDPG), warmup=30, episodes=600)
    assert agent.sigma(episode) == pytest.approx(sigma)
    assert agent.sigma(29) == 0.0


def test_noise_schedule_reaches_sigma_end_at_the_last_episode() -> None:
    agent = DDPGAgent(n_layers=3, warmup=30, episodes=300)
    assert agent.sigma(29) == 0.0
    assert agent.sigma(30) == pytest.approx(0.5)
    assert agent.sigma(299) == pytest.approx(0.05)
    assert agent.sigma(165) == pytest.approx(0.5 * 0.1 ** (135 / 269))


def test_episode_noise_streams_depend_on_seed_and_episode_only() -> None:
    a, b = DDPGAgent(n_layers=2, seed=4), DDPGAgent(n_layers=2, seed=4)
    a.rng.random(100)  # the agent's own stream does not matter
    assert a.episode_rng(7).random() == b.episode_rng(7).random()
    assert a.episode_rng(7).random() != a.episode_rng(8).random()
    assert DDPGAgent(n_layers=2, seed=5).episode_rng(7).random() != b.episode_rng(7).random()


def test_truncated_normal_in_bounds_and_centred() -> None:
    rng = np.random.default_rng(0)
    xs = np.array([truncated_normal(rng, 0.7, 0.05) for _ in range(2000)])
    assert xs.min() >= 0.0 and xs.max() <= 1.0
    assert abs(xs.mean() - 0.7) < 0.01
    edge = np.array([truncated_normal(rng, 0.0, 0.6) for _ in range(500)])
    assert edge.min() >= 0.0 and edge.max() <= 1.0
    assert truncated_normal(rng, 1.3, 0.0) == 1.0


def test_warmup_actions_uniform_then_actor() -> None:
    agent = DDPGAgent(n_layers=3, warmup=2, seed=3)
    s = np.linspace(0, 1, N_STATE)
    warm = [agent.select_action(s, 0) for _ in range(200)]
    assert 0.4 < float(np.mean(warm)) < 0.6 and float(np.std(warm)) > 0.25
    mu = agent.actor_output(s)
    late = [agent.select_action(s, 10_000) for _ in range(50)]  # sigma ~ 0
    assert np.allclose(late, mu, atol=1e-6)


def test_buffer_normalisation_of_rewards() -> None:
    agent = DDPGAgent(n_layers=2, config=DDPGConfig(batch_size=8), seed=0)
    _fill(agent, 20)
    held = agent.buffer.r[:20, 0]
    r = np.array([[held.mean()], [held.mean() + held.std()]])
    assert agent._normalise(r) == pytest.approx(np.array([[0.0], [1.0]]))
    assert agent.moving_average is None


def test_update_changes_parameters_and_moving_average() -> None:
    agent = DDPGAgent(n_layers=2, config=DDPGConfig(**{**CIMAQ_DDPG, "batch_size": 8}), seed=0)
    _fill(agent, 20)
    before = {k: v.clone() for k, v in agent.actor.state_dict().items()}
    cbefore = {k: v.clone() for k, v in agent.critic.state_dict().items()}
    tbefore = {k: v.clone() for k, v in agent.critic_target.state_dict().items()}
    vl, pl = agent.update()
    assert np.isfinite(vl) and np.isfinite(pl)
    assert any(not torch.equal(before[k], v) for k, v in agent.actor.state_dict().items())
    assert any(not torch.equal(cbefore[k], v) for k, v in agent.critic.state_dict().items())
    assert any(not torch.equal(tbefore[k], v) for k, v in agent.critic_target.state_dict().items())
    first = agent.moving_average
    assert first is not None
    agent.update()
    # ma += 0.5 * (mean - ma): the second value lies strictly between first and the batch mean
    assert agent.moving_average != first
    assert agent.n_updates == 2


def test_state_dict_round_trip_is_exact() -> None:
    a = DDPGAgent(n_layers=2, config=DDPGConfig(batch_size=8), warmup=1, seed=5)
    _fill(a, 30)
    for _ in range(3):
        a.update()
    a.select_action(np.zeros(N_STATE), 4)
    data = dumps_state(a.state_dict())  # the search checkpoint's format: JSON + raw arrays
    b = DDPGAgent(n_layers=2, config=DDPGConfig(batch_size=8), warmup=1, seed=99)
    b.load_state_dict(loads_state(data))
    s = np.linspace(0, 1, N_STATE)
    for step in range(5):
        assert a.select_action(s, 5 + step) == b.select_action(s, 5 + step)
        assert a.update() == b.update()
    for k, v in a.actor.state_dict().items():
        assert torch.equal(v, b.actor.state_dict()[k])
    assert a.moving_average == b.moving_average


def test_seed_makes_agents_identical_and_different_seeds_differ() -> None:
    s = np.linspace(0, 1, N_STATE)
    x = DDPGAgent(n_layers=2, seed=1).actor_output(s)
    assert x == DDPGAgent(n_layers=2, seed=1).actor_output(s)
    assert x != DDPGAgent(n_layers=2, seed=2).actor_output(s)
