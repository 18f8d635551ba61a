"""DDPG agent of the bit-width search (HAQ / CIM-AQ settings).

Actor ``10 -> 300 -> 300 -> 1`` (ReLU, sigmoid out); critic adds ``fc_s(state) + fc_a(action)``
in its first hidden layer (300), ReLU, ``300 -> 300``, ReLU, ``300 -> 1`` (HAQ's layout). Adam
(actor 5e-5, critic 1e-3), soft target updates (tau 0.01), discount 1.0, batch 64, replay buffer of
``128 * L`` transitions. Exploration: uniform actions for the warm-up episodes, then a truncated
normal on ``[0, 1]`` around the actor's output with ``sigma = sigma0 * decay ** (episode - warmup)``.
Batch rewards are centred by a moving average (``ma += 0.5 * (mean - ma)``).

All randomness after construction comes from a numpy ``Generator`` owned by the agent, and
:meth:`DDPGAgent.state_dict` holds everything needed to resume bit for bit.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

from cimc.rl.env import N_STATE, DDPGConfig


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """Run torch on one thread inside the block (the agent's nets are tiny; threads only add
    contention with whatever else runs), restoring the previous setting afterwards."""
    before = torch.get_num_threads()
    if before == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class Actor(nn.Module):
    """``state -> u`` in ``[0, 1]``."""

    def __init__(self, n_states: int = N_STATE, hidden: int = 300):
        super().__init__()
        self.fc1 = nn.Linear(n_states, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.fc3 = nn.Linear(hidden, 1)

    def logit(self, s: torch.Tensor) -> torch.Tensor:
        """The output before the sigmoid."""
        x = torch.relu(self.fc1(s))
        x = torch.relu(self.fc2(x))
        return self.fc3(x)

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logit(s))


class Critic(nn.Module):
    """``(state, action) -> Q``; state and action meet in the first hidden layer."""

    def __init__(self, n_states: int = N_STATE, hidden: int = 300):
        super().__init__()
        self.fc_s = nn.Linear(n_states, hidden)
        self.fc_a = nn.Linear(1, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.fc3 = nn.Linear(hidden, 1)

    def forward(self, s: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.fc_s(s) + self.fc_a(a))
        x = torch.relu(self.fc2(x))
        return self.fc3(x)


class ReplayBuffer:
    """A ring buffer of ``(s, a, r, s', done)`` transitions in preallocated numpy arrays."""

    def __init__(self, capacity: int, n_states: int = N_STATE):
        self.capacity = int(capacity)
        self.s = np.zeros((self.capacity, n_states), dtype=np.float64)
        self.a = np.zeros((self.capacity, 1), dtype=np.float64)
        self.r = np.zeros((self.capacity, 1), dtype=np.float64)
        self.s2 = np.zeros((self.capacity, n_states), dtype=np.float64)
        self.done = np.zeros((self.capacity, 1), dtype=np.float64)
        self.ptr = 0
        self.size = 0

    def __len__(self) -> int:
        return self.size

    def add(self, s: np.ndarray, a: float, r: float, s2: np.ndarray, done: bool) -> None:
        i = self.ptr
        self.s[i], self.a[i, 0], self.r[i, 0], self.s2[i], self.done[i, 0] = s, a, r, s2, float(done)
        self.ptr = (i + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def sample(self, rng: np.random.Generator, batch: int) -> tuple[np.ndarray, ...]:
        idx = rng.choice(self.size, size=batch, replace=self.size < batch)
        return self.s[idx], self.a[idx], self.r[idx].copy(), self.s2[idx], self.done[idx]

    def state_dict(self) -> dict[str, Any]:
        return {"capacity": self.capacity, "s": self.s.copy(), "a": self.a.copy(),
                "r": self.r.copy(), "s2": self.s2.copy(), "done": self.done.copy(),
                "ptr": self.ptr, "size": self.size}

    def load_state_dict(self, sd: dict[str, Any]) -> None:
        self.capacity = int(sd["capacity"])
        for key in ("s", "a", "r", "s2", "done"):
            setattr(self, key, np.array(sd[key], dtype=np.float64, copy=True))
        self.ptr, self.size = int(sd["ptr"]), int(sd["size"])


def truncated_normal(rng: np.random.Generator, mu: float, sigma: float,
                     lower: float = 0.0, upper: float = 1.0, max_tries: int = 10_000) -> float:
    """One sample of ``N(mu, sigma)`` truncated to ``[lower, upper]`` (rejection sampling).

    ``mu`` is clipped into the interval first; with ``sigma <= 0`` the result is ``mu``.
    """
    mu = float(min(max(mu, lower), upper))
    if sigma <= 0:
        return mu
    for _ in range(max_tries):
        x = float(rng.normal(mu, sigma))
        if lower <= x <= upper:
            return x
    return mu  # practically unreachable: acceptance is >= ~1/2 for mu inside the interval


class DDPGAgent:
    """The DDPG agent; ``n_layers`` sets the replay buffer size (``buffer_per_layer * L``)."""

    def __init__(self, n_layers: int, config: DDPGConfig | None = None, *, warmup: int = 30,
                 seed: int = 0, n_states: int = N_STATE, episodes: int | None = None):
        self.config = config or DDPGConfig()
        self.warmup = int(warmup)
        self.episodes = episodes
        self.seed = int(seed)
        self.n_states = n_states
        cfg = self.config
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.actor = Actor(n_states, cfg.hidden)
            self.critic = Critic(n_states, cfg.hidden)
        self.actor_target = copy.deepcopy(self.actor)
        self.critic_target = copy.deepcopy(self.critic)
        self.actor_optim = torch.optim.Adam(self.actor.parameters(), lr=cfg.lr_actor)
        self.critic_optim = torch.optim.Adam(self.critic.parameters(), lr=cfg.lr_critic)
        self.buffer = ReplayBuffer(cfg.buffer_per_layer * n_layers, n_states)
        self.rng = np.random.default_rng(np.random.SeedSequence([seed, 0xDD96]))
        self.moving_average: float | None = None
        self._buffer_stats: tuple[float, float] | None = None
        self.value_loss = 0.0
        self.policy_loss = 0.0
        self.n_updates = 0

    # ---- acting -------------------------------------------------------------------------------

    def sigma(self, episode: int) -> float:
        """Exploration width of ``episode`` (0 during the warm-up).

        ``sigma0 * decay ** (episode - warmup)``, with ``decay = sigma_decay`` or, when
        ``sigma_end`` and the number of episodes are set, the decay that reaches ``sigma_end`` at
        the last episode.
        """
        if episode < self.warmup:
            return 0.0
        cfg = self.config
        decay = cfg.sigma_decay
        if cfg.sigma_end is not None and self.episodes is not None:
            span = max(1, self.episodes - 1 - self.warmup)
            decay = (cfg.sigma_end / cfg.sigma0) ** (1.0 / span)
        return cfg.sigma0 * decay ** (episode - self.warmup)

    def episode_rng(self, episode: int) -> np.random.Generator:
        """The exploration noise stream of ``episode``: a function of (seed, episode) alone, so
        an episode draws the same actions whichever worker runs it and whenever."""
        return np.random.default_rng(np.random.SeedSequence([self.seed, 0xE915, int(episode)]))

    def actor_output(self, state: np.ndarray) -> float:
        with torch.no_grad():
            s = torch.as_tensor(np.asarray(state, dtype=np.float32)).reshape(1, -1)
            return float(self.actor(s).item())

    def select_action(self, state: np.ndarray, episode: int,
                      rng: np.random.Generator | None = None) -> float:
        """Uniform in the warm-up, then the truncated normal around the actor's output; the noise
        comes from ``rng`` (default: the agent's own stream)."""
        rng = self.rng if rng is None else rng
        if episode < self.warmup:
            return float(rng.uniform(0.0, 1.0))
        return truncated_normal(rng, self.actor_output(state), self.sigma(episode))

    def random_action(self, rng: np.random.Generator | None = None) -> float:
        return float((self.rng if rng is None else rng).uniform(0.0, 1.0))

    # ---- learning -----------------------------------------------------------------------------

    def observe(self, s: np.ndarray, a: float, r: float, s2: np.ndarray, done: bool) -> None:
        self.buffer.add(s, a, r, s2, done)
        self._buffer_stats = None

    def update(self) -> tuple[float, float]:
        """One DDPG step on a sampled batch; returns ``(value_loss, policy_loss)``."""
        if len(self.buffer) == 0:
            return 0.0, 0.0
        cfg = self.config
        s, a, r, s2, done = self.buffer.sample(self.rng, cfg.batch_size)
        r = self._normalise(r)

        ts, ta, tr, ts2, tdone = (torch.as_tensor(x, dtype=torch.float32) for x in (s, a, r, s2, done))
        with torch.no_grad():
            next_q = self.critic_target(ts2, self.actor_target(ts2))
            target = tr + cfg.discount * (1.0 - tdone) * next_q

        self.critic_optim.zero_grad()
        value_loss = nn.functional.mse_loss(self.critic(ts, ta), target)
        value_loss.backward()
        self.critic_optim.step()

        self.actor_optim.zero_grad()
        if cfg.actor_grad == "inverting":
            policy_loss = self._inverting_actor_loss(ts)
        else:
            policy_loss = -self.critic(ts, self.actor(ts)).mean()
            policy_loss.backward()
        self.actor_optim.step()

        self._soft_update(self.actor_target, self.actor)
        self._soft_update(self.critic_target, self.critic)
        self.value_loss, self.policy_loss = float(value_loss.item()), float(policy_loss.item())
        self.n_updates += 1
        return self.value_loss, self.policy_loss

    def _inverting_actor_loss(self, ts: torch.Tensor) -> torch.Tensor:
        """Actor step with inverted gradients on the bounded action (Hausknecht & Stone, 2016).

        The critic's gradient ``dQ/du`` at ``u = sigmoid(logit)`` moves the logit directly
        (not through the sigmoid's derivative, which vanishes when ``u`` nears 0 or 1), scaled by
        the room left towards the bound it pushes to: ``(1 - u)`` upwards, ``u`` downwards. An
        actor that ran to a bound therefore comes back as soon as the critic says so. Leaves the
        gradients in the actor and returns ``-Q`` (the usual policy loss, for the record).
        """
        logit = self.actor.logit(ts)
        u = torch.sigmoid(logit).detach().requires_grad_(True)
        q = self.critic(ts, u)
        (dq_du,) = torch.autograd.grad(q.sum(), u)
        step = torch.where(dq_du > 0, dq_du * (1.0 - u), dq_du * u).detach()
        (-(step * logit).sum() / len(ts)).backward()
        self.critic_optim.zero_grad()  # the critic's gradients of this step are not used
        return -q.detach().mean()

    def _normalise(self, r: np.ndarray) -> np.ndarray:
        """The batch rewards as the critic sees them (see ``DDPGConfig.reward_norm``)."""
        cfg = self.config
        if cfg.reward_norm == "buffer":
            if self._buffer_stats is None:
                held = self.buffer.r[: len(self.buffer), 0]
                self._buffer_stats = (float(held.mean()), max(float(held.std()), 1e-6))
            mean, std = self._buffer_stats
            return (r - mean) / std
        mean = float(np.mean(r))
        if self.moving_average is None:
            self.moving_average = mean
        else:
            self.moving_average += cfg.ma_alpha * (mean - self.moving_average)
        return r - self.moving_average

    def update_many(self, n: int) -> int:
        """``n`` updates on one thread; returns ``n``."""
        self._buffer_stats = None  # the buffer changed since the last call
        with single_thread():
            for _ in range(n):
                self.update()
        return n

    def updates_for(self, n_transitions: int) -> int:
        """Updates to run after an episode that stored ``n_transitions``."""
        return int(round(self.config.updates_per_step * n_transitions))

    def _soft_update(self, target: nn.Module, source: nn.Module) -> None:
        tau = self.config.tau
        with torch.no_grad():
            tps, ps = list(target.parameters()), list(source.parameters())
            torch._foreach_mul_(tps, 1.0 - tau)
            torch._foreach_add_(tps, ps, alpha=tau)

    # ---- checkpointing ------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Networks, targets, optimisers, buffer, moving average and RNG states."""
        return {
            "actor": self.actor.state_dict(),
            "critic": self.critic.state_dict(),
            "actor_target": self.actor_target.state_dict(),
            "critic_target": self.critic_target.state_dict(),
            "actor_optim": self.actor_optim.state_dict(),
            "critic_optim": self.critic_optim.state_dict(),
            "buffer": self.buffer.state_dict(),
            "moving_average": self.moving_average,
            "rng": self.rng.bit_generator.state,
            "torch_rng": torch.get_rng_state(),
            "value_loss": self.value_loss,
            "policy_loss": self.policy_loss,
            "n_updates": self.n_updates,
            "warmup": self.warmup,
        }

    def load_state_dict(self, sd: dict[str, Any]) -> None:
        self.actor.load_state_dict(sd["actor"])
        self.critic.load_state_dict(sd["critic"])
        self.actor_target.load_state_dict(sd["actor_target"])
        self.critic_target.load_state_dict(sd["critic_target"])
        self.actor_optim.load_state_dict(sd["actor_optim"])
        self.critic_optim.load_state_dict(sd["critic_optim"])
        self.buffer.load_state_dict(sd["buffer"])
        self.moving_average = sd["moving_average"]
        self.rng.bit_generator.state = sd["rng"]
        torch.set_rng_state(sd["torch_rng"])
        self.value_loss, self.policy_loss = sd["value_loss"], sd["policy_loss"]
        self.n_updates = int(sd["n_updates"])
        self.warmup = int(sd["warmup"])
