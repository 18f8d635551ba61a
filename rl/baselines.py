"""Baselines for the bit-width search: random search and uniform policies.

Both use the same environment, constraints, cost model and accuracy function as the DDPG search,
so their numbers compare directly with :func:`cimc.rl.search.run_search`.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from cimc.rl.env import LayerInfo, SearchConfig, constrain, reward, uniform_policy
from cimc.rl.parallel import evaluate_policy
from cimc.rl.search import AccuracyFn, CostModel, EnvSpec, SearchResult, as_env_spec, run_search

DEFAULT_UNIFORM_BITS = (8, 6, 4, 2)


def random_search(config: SearchConfig, env_spec: EnvSpec | Sequence[LayerInfo],
                  cost_model: CostModel, accuracy_fn: AccuracyFn,
                  out_dir: str | os.PathLike[str], *, resume: bool = False,
                  progress: bool = True) -> SearchResult:
    """Uniform random actions for every episode of ``config.episodes``; no learning."""
    cfg = dataclasses.replace(config, method="random")
    return run_search(cfg, env_spec, cost_model, accuracy_fn, out_dir, resume=resume,
                      progress=progress)


@dataclass(frozen=True)
class UniformResult:
    """One uniform policy evaluated like a search episode."""

    label: str
    policy: np.ndarray
    latency_us: float
    speedup: float
    accuracy: float
    reward: float

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "policy": self.policy.tolist(), "latency_us": self.latency_us,
                "speedup": self.speedup, "accuracy": self.accuracy, "reward": self.reward}


def uniform_policies(config: SearchConfig, env_spec: EnvSpec | Sequence[LayerInfo],
                     cost_model: CostModel, accuracy_fn: AccuracyFn,
                     bits: Sequence[int | tuple[int, int]] = DEFAULT_UNIFORM_BITS,
                     *, acc_8bit: float | None = None) -> list[UniformResult]:
    """Evaluate W8A8, W6A6, W4A4, W2A2 (or ``bits``: ints or ``(w, a)`` pairs).

    The first/last constraint of ``config`` is applied (so with it on, "W4A4" keeps the first and
    last layers at 8/8, as the search would); the cell constraint is not (a uniform policy is
    given, not chosen). The reward uses ``acc_8bit`` (or ``config.acc_8bit``, or the W8A8 result)
    and the cost ratio of the cost model's objective (``latency`` unless it has an ``objective``).
    """
    spec = as_env_spec(env_spec)
    n = len(spec.layers)
    measured = bool(getattr(cost_model, "measured", False))

    def run(pol: np.ndarray) -> tuple[float, float]:
        ev = evaluate_policy(accuracy_fn, pol)
        if measured:
            cost_model.note(pol, ev.latency_us)  # type: ignore[attr-defined]
        return float(cost_model.latency(pol)), ev.accuracy

    if measured:
        run(uniform_policy(n, 8))
    base = float(cost_model.baseline_latency())
    rows: list[tuple[str, np.ndarray, float, float]] = []
    for b in bits:
        w, a = (b, b) if isinstance(b, int) else b
        pol = constrain(uniform_policy(n, w, a), config)
        rows.append((f"W{w}A{a}", pol, *run(pol)))
    ref = acc_8bit if acc_8bit is not None else config.acc_8bit
    if ref is None:
        ref = next((acc for label, _, _, acc in rows if label == "W8A8"), None)
    if ref is None:
        ref = run(uniform_policy(n, 8))[1]
    objective = getattr(cost_model, "objective", "latency")

    def ratio(pol: np.ndarray, lat: float) -> float:  # the reward's cost ratio (the objective's)
        if objective == "latency":
            return lat / base
        return float(cost_model.value(pol)) / float(cost_model.baseline_value())  # type: ignore[attr-defined]

    return [UniformResult(label, pol, lat, base / lat, acc,
                          reward(acc, ref, config.allowed_drop, ratio(pol, lat)))
            for label, pol, lat, acc in rows]
