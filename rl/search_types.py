"""What a bit-width search walks over (:class:`EnvSpec`) and what it returns (:class:`SearchResult`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cimc.rl.env import LayerInfo

AccuracyFn = Callable[[np.ndarray], Any]
"""``accuracy_fn(policy) -> top-1 %`` (or a :class:`~cimc.rl.parallel.Evaluation`)."""


@dataclass(frozen=True)
class EnvSpec:
    """The layers the search walks over, plus labels for the outputs."""

    layers: tuple[LayerInfo, ...]
    model: str = ""
    dataset: str = ""

    @property
    def names(self) -> list[str]:
        return [layer.name or f"layer{i}" for i, layer in enumerate(self.layers)]


def as_env_spec(spec: EnvSpec | Sequence[LayerInfo]) -> EnvSpec:
    if isinstance(spec, EnvSpec):
        return spec
    return EnvSpec(layers=tuple(spec))


@dataclass
class SearchResult:
    """The outcome of :func:`run_search`."""

    best_policy: np.ndarray
    best_reward: float
    best_accuracy: float
    best_latency_us: float
    best_speedup: float
    best_episode: int
    acc_8bit: float
    baseline_latency_us: float
    episodes: int
    out_dir: Path
    history: list[dict[str, Any]] = field(default_factory=list, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "best_policy": self.best_policy.tolist(),
            "best_reward": self.best_reward,
            "best_accuracy": self.best_accuracy,
            "best_latency_us": self.best_latency_us,
            "best_speedup": self.best_speedup,
            "best_episode": self.best_episode,
            "acc_8bit": self.acc_8bit,
            "baseline_latency_us": self.baseline_latency_us,
            "episodes": self.episodes,
            "out_dir": str(self.out_dir),
        }
