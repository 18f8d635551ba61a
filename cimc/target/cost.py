"""The paper's closed-form cost of a layer and of a network (cim-model.md section 3).

Built from the one geometry (:func:`cimc.target.geometry.layer_geometry`), the one closed form of
the counters (:func:`cimc.target.counters.layer_counters`) and the one latency
(:func:`cimc.target.counters.latency_us`); nothing is derived again here. ``writes`` and
``executes`` are totals over the ``H`` repeats, so ``writes * t_w + executes * t_e ==
latency_us``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cimc.errors import CimcError
from cimc.target.counters import Counters, latency_us, layer_counters
from cimc.target.geometry import LayerDesc, LayerGeometry, layer_geometry
from cimc.target.hw import Hardware


@dataclass(frozen=True)
class LayerCost:
    """One layer at given bits on given hardware: geometry, counters (batch 1), latency."""

    geometry: LayerGeometry
    counters: Counters
    latency_us: float
    lossless_adc_bits: int

    def __getattr__(self, name: str):  # geometry and counter fields read through
        if name in ("geometry", "counters"):
            raise AttributeError(name)
        for part in (self.counters, self.geometry):
            if hasattr(part, name):
                return getattr(part, name)
        raise AttributeError(f"LayerCost has no attribute '{name}'")


@dataclass(frozen=True)
class NetworkCost:
    """Per-layer costs and their totals."""

    layers: tuple[LayerCost, ...]
    counters: Counters
    latency_us: float

    @property
    def writes(self) -> int:
        return self.counters.writes

    @property
    def executes(self) -> int:
        return self.counters.executes

    @property
    def adc_conversions(self) -> int:
        return self.counters.adc_conversions

    @property
    def dac_activations(self) -> int:
        return self.counters.dac_activations


def layer_cost(desc: LayerDesc, w_bits: int, a_bits: int, hw: Hardware) -> LayerCost:
    """The paper's latency of one layer plus every counter, at batch 1."""
    geom = layer_geometry(desc, w_bits, a_bits, hw)
    counters = layer_counters(geom, hw)
    return LayerCost(geom, counters, latency_us(counters, hw), hw.lossless_adc_bits(geom.tallest_rows))


def _policy_pairs(descs: Sequence[LayerDesc], policy: object) -> list[tuple[int, int]]:
    pairs = [tuple(int(b) for b in row) for row in policy]  # type: ignore[union-attr]
    if len(pairs) != len(descs):
        raise CimcError(f"policy has {len(pairs)} rows but the network has {len(descs)} crossbar layers")
    for i, pair in enumerate(pairs):
        if len(pair) != 2:
            raise CimcError(f"policy row {i} is {pair!r}, expected [w_bits, a_bits]")
    return pairs  # type: ignore[return-value]


def network_cost(descs: Sequence[LayerDesc], policy: object, hw: Hardware) -> NetworkCost:
    """Per-layer costs and totals; ``policy`` is an ``(L, 2)`` array-like of ``[w_bits, a_bits]``."""
    layers = tuple(
        layer_cost(desc, w, a, hw) for desc, (w, a) in zip(descs, _policy_pairs(descs, policy))
    )
    total = Counters()
    for c in layers:
        total += c.counters
    return NetworkCost(layers=layers, counters=total, latency_us=sum(c.latency_us for c in layers))


def uniform_policy(descs: Sequence[LayerDesc], w_bits: int = 8, a_bits: int = 8) -> list[list[int]]:
    """The same ``[w_bits, a_bits]`` for every layer (the 8-bit baseline by default)."""
    return [[w_bits, a_bits] for _ in descs]


def speedup(descs: Sequence[LayerDesc], policy: object, hw: Hardware) -> float:
    """``L(all W8A8) / L(policy)`` on the same hardware."""
    base = network_cost(descs, uniform_policy(descs), hw).latency_us
    cost = network_cost(descs, policy, hw).latency_us
    if cost <= 0:
        raise CimcError("policy latency is zero (all timings 0?): speedup undefined")
    return base / cost
