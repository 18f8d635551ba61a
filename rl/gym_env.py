"""The bit-width environment through the gymnasium API, for agents of other RL libraries.

:class:`BitWidthGymEnv` wraps :class:`cimc.rl.env.BitWidthEnv`: an episode is ``2L`` steps (weight
bits, then input bits, per crossbar layer); the observation is the 10 state features of
:mod:`cimc.rl.env` (all in ``[0, 1]``); the action is one number in ``[0, 1]`` that the
environment turns into bits exactly as cimc's own agent's action is. The reward is 0 until the
last step, which returns CIM-AQ's episode reward (accuracy-gated latency) from ``score``; with
a discount of 1 every step's return is then that reward, which is what CIM-AQ gives every
transition.

``score(episode, raw_policy, actions) -> record`` does the expensive part (constraints, cost,
accuracy, reward) and records the episode; cimc's search passes its own, so an episode of an
external agent is costed, cached, logged and plotted exactly like one of cimc's DDPG.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from cimc.rl.env import N_STATE, BitWidthEnv, LayerInfo, SearchConfig

ScoreFn = Callable[[int, np.ndarray, list[float]], dict[str, Any]]


class BitWidthGymEnv(gym.Env):
    """CIM-AQ's bit-width search as a ``gymnasium.Env`` (see the module docstring).

    ``info`` of the last step holds the episode's ``record`` (policy, latency, accuracy, reward,
    ...). ``episode`` counts the episodes started so far (the first is 0).
    """

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, layers: Sequence[LayerInfo], config: SearchConfig, score: ScoreFn,
                 first_episode: int = 0):
        super().__init__()
        self.inner = BitWidthEnv(layers, config)
        self.score = score
        self.observation_space = gym.spaces.Box(0.0, 1.0, shape=(N_STATE,), dtype=np.float32)
        self.action_space = gym.spaces.Box(0.0, 1.0, shape=(1,), dtype=np.float32)
        self.episode = first_episode - 1
        self._actions: list[float] = []

    @property
    def n_steps(self) -> int:
        """Steps per episode, ``2L``."""
        return self.inner.n_steps

    def _obs(self, state: np.ndarray) -> np.ndarray:
        return np.clip(np.asarray(state, dtype=np.float32), 0.0, 1.0)

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self.episode += 1
        self._actions = []
        return self._obs(self.inner.reset()), {"episode": self.episode}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        u = float(np.clip(np.asarray(action, dtype=np.float64).reshape(-1)[0], 0.0, 1.0))
        self._actions.append(u)
        state, done = self.inner.step(u)
        if not done:
            return self._obs(state), 0.0, False, False, {}
        record = self.score(self.episode, self.inner.raw_policy, list(self._actions))
        return self._obs(state), float(record["reward"]), True, False, {"record": record}
