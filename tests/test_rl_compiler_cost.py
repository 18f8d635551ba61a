"""Tests of cimc.rl.compiler_cost: the search's latency read off the compiled xbar program.

- :class:`CompilerCost` equals the closed-form model (``cimc.target.cost`` via ``ClosedFormCost``) on
  random policies of real zoo models;
- its per-``(layer, w, a)`` cache: an identical policy, or one whose layers were all seen in
  earlier policies, compiles nothing;
- the search fills that cache before its first episode (every uniform ``(w, a)`` it can choose),
  so no episode compiles.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from cimc.target.hw import Hardware
from cimc.rl.compiler_cost import CompilerCost
from cimc.rl.env import SearchConfig
from cimc.rl.search import ClosedFormCost, CostModel, EnvSpec, read_episodes, run_search
from cimc.rl.search_model import describe_model


def _random_policy(rng: np.random.Generator, n: int) -> np.ndarray:
    """Weights in {4, 8} (cell constraint, c = 4), activations in 2..8."""
    return np.stack([rng.choice([4, 8], n), rng.integers(2, 9, n)], axis=1).astype(np.int64)


@pytest.mark.parametrize("model, n_random", [("lenet", 2), pytest.param("resnet_small", 1,
                                                                        marks=pytest.mark.slow)])
def test_compiler_cost_equals_closed_form(model: str, n_random: int) -> None:
    _, descs = describe_model(model)
    hw = Hardware()
    compiler = CompilerCost(model, hw)
    closed = ClosedFormCost(descs, hw)
    assert isinstance(compiler, CostModel)
    assert compiler.baseline_latency() == pytest.approx(closed.baseline_latency(), rel=1e-12)
    rng = np.random.default_rng(7)
    for _ in range(n_random):
        pol = _random_policy(rng, len(descs))
        per_layer = compiler.layer_latencies(pol)
        assert per_layer.tolist() == pytest.approx(closed.layer_latencies(pol).tolist(), rel=1e-12)
        assert compiler.latency(pol) == pytest.approx(closed.latency(pol), rel=1e-12)
        # a cheaper policy than W8A8 somewhere: the numbers are not all the baseline's
        assert compiler.latency(pol) < compiler.baseline_latency()
    assert compiler.compiles == 1 + n_random


def test_compiler_cost_cache() -> None:
    compiler = CompilerCost("lenet", Hardware())
    n = compiler.n_layers
    a = np.tile([4, 3], (n, 1)).astype(np.int64)
    b = np.tile([8, 6], (n, 1)).astype(np.int64)
    lat_a = compiler.latency(a)
    assert compiler.compiles == 1
    assert compiler.latency(a.copy()) == lat_a  # identical policy: no compile
    assert compiler.compiles == 1
    lat_b = compiler.latency(b)
    assert compiler.compiles == 2 and lat_b > lat_a
    # every layer of this mix was seen (in a or in b): costed from the cache
    mix = a.copy()
    mix[::2] = b[::2]
    seconds = compiler.compile_seconds
    lat_mix = compiler.latency(mix)
    assert compiler.compiles == 2 and compiler.compile_seconds == seconds
    rows_a, rows_b = compiler.layer_latencies(a), compiler.layer_latencies(b)
    assert lat_mix == pytest.approx(sum(rows_b[i] if i % 2 == 0 else rows_a[i] for i in range(n)))
    # one unseen layer: compiled once more, and it agrees with the closed form
    new = mix.copy()
    new[1] = [4, 2]
    _, descs = describe_model("lenet")
    assert compiler.latency(new) == pytest.approx(ClosedFormCost(descs, Hardware()).latency(new))
    assert compiler.compiles == 3


def test_search_prefills_the_cost_cache(tmp_path: Path) -> None:
    """Before the first episode the search costs every uniform (w, a) it can choose, so every
    (layer, w, a) is cached and no episode compiles; ``cost_s`` is recorded apart from the
    evaluation time."""
    from cimc.rl.costs import search_bit_pairs

    infos, _ = describe_model("lenet")
    spec = EnvSpec(tuple(infos), model="lenet")
    compiler = CompilerCost("lenet", Hardware())
    sleep_s = 0.05

    def accuracy(policy: np.ndarray) -> float:
        time.sleep(sleep_s)
        return float(90.0 - 0.1 * np.sum(8 - policy))

    cfg = SearchConfig(episodes=3, warmup=3, seed=1, allowed_drop=5.0, first_last_8bit=False)
    run_search(cfg, spec, compiler, accuracy, tmp_path, progress=False)
    recs = read_episodes(tmp_path / "episodes.jsonl")
    pairs = search_bit_pairs(cfg)
    assert len(pairs) == 2 * 7  # weights {4, 8} (cell constraint, c = 4) x activations 2..8
    assert compiler.compiles == len(pairs)
    for r in recs:
        assert r["time"]["cost_s"] < 0.5 * sleep_s  # cache look-ups only
        assert r["time"]["accuracy_s"] >= sleep_s  # the evaluation time is recorded apart
        assert r["latency_us"] == compiler.latency(np.array(r["policy"]))
    compiler.latency(_random_policy(np.random.default_rng(7), 5))
    assert compiler.compiles == len(pairs)
    # resumed in a new process (a new, empty cost model): prefilled again before the episodes
    fresh = CompilerCost("lenet", Hardware())
    cfg.episodes = 5
    run_search(cfg, spec, fresh, accuracy, tmp_path, resume=True, progress=False)
    assert fresh.compiles == len(pairs)
    assert all(r["time"]["cost_s"] < 0.5 * sleep_s for r in read_episodes(tmp_path / "episodes.jsonl"))
