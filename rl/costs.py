"""Static cost models of the search: the latency of a policy, in microseconds, and of W8A8.

- :class:`ClosedFormCost`: the paper's closed form (``cimc.target.layer_cost``) over ``LayerDesc``;
- :class:`FunctionCost`: any ``cost_fn(policy) -> latency_us``, memoised per policy;
- ``cimc.rl.compiler_cost.CompilerCost``: read off the compiled ``xbar`` program (the default);
- ``cimc.rl.measured_cost.MeasuredCost``: counted by the interpreter on a calibration batch
  (filled by the evaluations, not by this protocol's calls).

:func:`prefill` asks a per-layer-cached cost model for every uniform ``(w, a)`` the search can
choose, so that every ``(layer, w, a)`` is known before the first episode (one compile each for
the compiler's cost) and no episode pays for a compile.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from cimc.errors import CimcError
from cimc.rl.env import SearchConfig, uniform_policy, weight_choices


OBJECTIVES = ("latency", "energy", "edp", "chip")
"""What a search can minimise (``--objective``): the paper's latency (the sum of the layers'
single-array times), the compiled program's energy or energy-delay product, or its time per
inference in the chip schedule (``chip``: arrays, replication, residency and pipelining of the
hardware, e.g. ``--hw-set arrays=64``)."""

OBJECTIVE_FIGURE = {"latency": "latency_us", "energy": "energy_uj", "edp": "edp_uj_us", "chip": "chip_us"}
"""The report's figure (key and unit) of each objective."""


@runtime_checkable
class CostModel(Protocol):
    """The latency of a policy, in microseconds, and of the W8A8 baseline."""

    def latency(self, policy: np.ndarray) -> float: ...

    def baseline_latency(self) -> float: ...


class FunctionCost:
    """A :class:`CostModel` around ``cost_fn(policy) -> latency_us`` (e.g. the compiler's).

    ``layer_fn(policy) -> per-layer latencies`` is optional. Results are memoised per policy.
    """

    def __init__(self, cost_fn: Callable[[np.ndarray], float], n_layers: int,
                 layer_fn: Callable[[np.ndarray], Sequence[float]] | None = None,
                 baseline_bits: int = 8):
        self.cost_fn = cost_fn
        self.layer_fn = layer_fn
        self.n_layers = int(n_layers)
        self.baseline_bits = baseline_bits
        self._memo: dict[bytes, float] = {}

    def latency(self, policy: np.ndarray) -> float:
        pol = np.asarray(policy, dtype=np.int64)
        key = pol.tobytes()
        if key not in self._memo:
            self._memo[key] = float(self.cost_fn(pol))
        return self._memo[key]

    def baseline_latency(self) -> float:
        return self.latency(uniform_policy(self.n_layers, self.baseline_bits))

    def layer_latencies(self, policy: np.ndarray) -> np.ndarray | None:
        if self.layer_fn is None:
            return None
        return np.asarray(self.layer_fn(np.asarray(policy, dtype=np.int64)), dtype=np.float64)


def _latency_of(result: Any) -> float:
    """The latency in us of whatever ``cimc.target.layer_cost``/``network_cost`` returns."""
    for attr in ("latency_us", "latency", "total_latency_us", "total_us"):
        if hasattr(result, attr):
            return float(getattr(result, attr))
    if isinstance(result, dict):
        for key in ("latency_us", "latency"):
            if key in result:
                return float(result[key])
    return float(result)


class ClosedFormCost:
    """The paper's closed-form latency (``cimc.target.layer_cost``) over a list of ``LayerDesc``."""

    def __init__(self, descs: Sequence[Any], hw: Any = None):
        try:
            from cimc.target import cost as cost_mod
        except ImportError as exc:
            raise CimcError(f"closed-form cost: cimc.target.cost is not available ({exc})") from None
        if hw is None:
            from cimc.target.hw import Hardware

            hw = Hardware()
        self.descs = list(descs)
        self.hw = hw
        self._layer_cost = cost_mod.layer_cost
        self._memo: dict[tuple[int, int, int], float] = {}

    @property
    def n_layers(self) -> int:
        return len(self.descs)

    def _one(self, i: int, w: int, a: int) -> float:
        key = (i, w, a)
        if key not in self._memo:
            self._memo[key] = _latency_of(self._layer_cost(self.descs[i], w, a, self.hw))
        return self._memo[key]

    def layer_latencies(self, policy: np.ndarray) -> np.ndarray:
        pol = np.asarray(policy, dtype=np.int64)
        if pol.shape != (self.n_layers, 2):
            raise CimcError(f"closed-form cost: policy shape {pol.shape} != ({self.n_layers}, 2)")
        return np.array([self._one(i, int(w), int(a)) for i, (w, a) in enumerate(pol)])

    def latency(self, policy: np.ndarray) -> float:
        return float(self.layer_latencies(policy).sum())

    def baseline_latency(self) -> float:
        return self.latency(uniform_policy(self.n_layers, 8))


def search_bit_pairs(config: SearchConfig) -> list[tuple[int, int]]:
    """Every ``(w, a)`` a layer can get in a search with ``config`` (8/8 included)."""
    ws = (weight_choices(config.b_min, config.b_max, config.cell_bits) if config.cell_constraint
          else list(range(config.b_min, config.b_max + 1)))
    pairs = {(w, a) for w in ws for a in range(config.b_min, config.b_max + 1)}
    pairs.add((8, 8))
    return sorted(pairs, reverse=True)


def prefill(cost: Any, n_layers: int, config: SearchConfig) -> int:
    """Cost every uniform policy of :func:`search_bit_pairs` once (fills a per-layer cache);
    returns how many were costed. A cost model measured by the evaluations is left alone."""
    if getattr(cost, "measured", False):
        return 0
    pairs = search_bit_pairs(config)
    for w, a in pairs:
        cost.latency(uniform_policy(n_layers, w, a))
    return len(pairs)
