"""The mixed-precision search loop (CIM-AQ): episodes, checkpoints, results.

An episode chooses ``2L`` actions (DDPG, or uniform random for ``method="random"``), turns them into
an ``(L, 2)`` policy, applies the constraints, asks the injected :class:`CostModel` for the latency
and the injected ``accuracy_fn(policy) -> top-1 %`` for the accuracy, computes the reward, stores
the transitions and runs the DDPG updates.

Files in ``out_dir``:

- ``config.json``: the :class:`~cimc.rl.env.SearchConfig` of the run;
- ``episodes.jsonl``: one JSON object per episode (policy, latency, cost ratio, speedup, accuracy,
  reward, exploration sigma, and ``time`` = ``{agent_s, cost_s, accuracy_s}``: the only fields
  that differ between two runs with the same seed);
- ``best_policy.npy`` / ``best_policy.json``: the best policy so far (highest reward);
- ``checkpoint.zip``: everything needed to resume (agent, buffer, RNG states, history, episode
  counter, accuracy cache) as JSON plus raw arrays (:mod:`cimc.state_file`: loading it never
  unpickles, so a shared search folder cannot run code), written atomically after every episode; ``episodes.jsonl`` is rebuilt
  from it on resume, so a kill at any moment loses or repeats no episode;
- ``search.png``: reward and speedup over the episodes and the best policy's bits per layer.

The environment variable ``CIMC_SEARCH_KILL_AT`` makes the process SIGKILL itself (for tests):
``K`` right after the checkpoint of the K-th finished episode is written (before its line is
appended to ``episodes.jsonl``), ``K:mid`` in the middle of episode index ``K`` (after its accuracy
is measured, before anything is written).
"""

from __future__ import annotations

import io
import json
import os
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from cimc.cli_util import atomic_output, atomic_write_bytes
from cimc.errors import CimcError
from cimc.rl.env import (
    BitWidthEnv,
    LayerInfo,
    SearchConfig,
    budget_reward,
    constrain,
    enforce_latency_budget,
    min_policy,
    reward,
    uniform_policy,
)

CHECKPOINT_VERSION = 2
#: The pickled checkpoint of cimc before version 2; never loaded (unpickling can run code).
LEGACY_CHECKPOINT = "checkpoint.pt"
KILL_ENV = "CIMC_SEARCH_KILL_AT"

AccuracyFn = Callable[[np.ndarray], float]


# --------------------------------------------------------------------------------------------
# Cost models
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Spec and result
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------


def _dump_line(record: dict[str, Any]) -> str:
    return json.dumps(record, sort_keys=True) + "\n"


def read_episodes(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The records of an ``episodes.jsonl`` file."""
    with open(path) as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    from cimc.state_file import save_state

    save_state(path, payload)


def _load_checkpoint(path: Path) -> dict[str, Any]:
    """The checkpoint's payload; JSON and raw arrays only, nothing is unpickled."""
    from cimc.state_file import load_state

    ck = load_state(path, "search checkpoint")
    if not isinstance(ck, dict):
        raise CimcError(f"{path}: not a search checkpoint (top level is {type(ck).__name__})")
    return ck


def _write_best(out_dir: Path, best: dict[str, Any], names: list[str]) -> None:
    pol = np.asarray(best["policy"], dtype=np.int64)
    buf = io.BytesIO()
    np.save(buf, pol)
    atomic_write_bytes(out_dir / "best_policy.npy", buf.getvalue())
    doc = dict(best)
    doc["layers"] = names
    with atomic_output(out_dir / "best_policy.json") as fh:
        fh.write(json.dumps(doc, indent=2, sort_keys=True) + "\n")  # type: ignore[attr-defined]


def _rewrite_jsonl(path: Path, history: list[dict[str, Any]]) -> None:
    with atomic_output(path) as fh:
        for rec in history:
            fh.write(_dump_line(rec))  # type: ignore[attr-defined]


def _kill_point() -> tuple[int, str] | None:
    raw = os.environ.get(KILL_ENV, "").strip()
    if not raw:
        return None
    num, _, where = raw.partition(":")
    try:
        return int(num), (where or "post")
    except ValueError:
        raise CimcError(f"{KILL_ENV}={raw!r}: expected K or K:mid") from None


def _self_kill() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


# --------------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------------


def _policy_key(policy: np.ndarray) -> str:
    return ",".join(f"{int(w)}/{int(a)}" for w, a in np.asarray(policy))


def _comparable_config(cfg: dict[str, Any]) -> dict[str, Any]:
    out = dict(cfg)
    out.pop("episodes", None)
    return out


class _Search:
    """State of one search run; :func:`run_search` is the public entry."""

    def __init__(self, config: SearchConfig, spec: EnvSpec, cost_model: CostModel,
                 accuracy_fn: AccuracyFn, out_dir: Path):
        from cimc.rl.ddpg import DDPGAgent

        self.config = config
        self.spec = spec
        self.cost = cost_model
        self.accuracy_fn = accuracy_fn
        self.out_dir = out_dir
        self.env = BitWidthEnv(spec.layers, config)
        self.agent = DDPGAgent(self.env.n_layers, config.ddpg, warmup=config.warmup, seed=config.seed)
        self.history: list[dict[str, Any]] = []
        self.best: dict[str, Any] | None = None
        self.acc_cache: dict[str, float] = {}
        self.acc_8bit: float | None = config.acc_8bit
        self.baseline_us: float = 0.0
        self.next_episode = 0
        self.ckpt_path = out_dir / "checkpoint.zip"
        self.jsonl_path = out_dir / "episodes.jsonl"

    # ---- accuracy with cache --------------------------------------------------------------------

    def accuracy(self, policy: np.ndarray) -> tuple[float, bool]:
        key = _policy_key(policy)
        if self.config.cache_accuracy and key in self.acc_cache:
            return self.acc_cache[key], True
        acc = float(self.accuracy_fn(np.asarray(policy, dtype=np.int64).copy()))
        if not np.isfinite(acc):
            raise CimcError(f"search: the accuracy function returned {acc} for policy {key}")
        if self.config.cache_accuracy:
            self.acc_cache[key] = acc
        return acc, False

    # ---- checkpoint -----------------------------------------------------------------------------

    def payload(self) -> dict[str, Any]:
        import torch

        return {
            "version": CHECKPOINT_VERSION,
            "config": self.config.to_dict(),
            "layers": self.spec.names,
            "next_episode": self.next_episode,
            "agent": self.agent.state_dict(),
            "history": self.history,
            "best": self.best,
            "acc_cache": self.acc_cache,
            "acc_8bit": self.acc_8bit,
            "baseline_us": self.baseline_us,
            "global_torch_rng": torch.get_rng_state(),
            "global_numpy_rng": np.random.get_state(),
        }

    def save(self) -> None:
        _save_checkpoint(self.ckpt_path, self.payload())

    def restore(self, ck: dict[str, Any]) -> None:
        try:
            self._restore(ck)
        except (KeyError, TypeError, ValueError, IndexError, AttributeError, RuntimeError) as exc:
            detail = f"{type(exc).__name__}: {str(exc).splitlines()[0][:80]}" if str(exc) else type(exc).__name__
            raise CimcError(f"{self.ckpt_path}: damaged search checkpoint ({detail})") from None

    def _restore(self, ck: dict[str, Any]) -> None:
        import torch

        if ck.get("version") != CHECKPOINT_VERSION:
            raise CimcError(f"{self.ckpt_path}: checkpoint version {ck.get('version')} is not supported")
        if _comparable_config(ck["config"]) != _comparable_config(self.config.to_dict()):
            raise CimcError(f"{self.ckpt_path}: the checkpoint was written with a different search "
                            "configuration; resume with the same options or use another --out")
        if list(ck["layers"]) != self.spec.names:
            raise CimcError(f"{self.ckpt_path}: the checkpoint is for other layers "
                            f"({len(ck['layers'])} vs {len(self.spec.names)})")
        self.agent.load_state_dict(ck["agent"])
        self.history = list(ck["history"])
        self.best = ck["best"]
        self.acc_cache = dict(ck["acc_cache"])
        self.acc_8bit = ck["acc_8bit"]
        self.baseline_us = float(ck["baseline_us"])
        self.next_episode = int(ck["next_episode"])
        torch.set_rng_state(ck["global_torch_rng"])
        np.random.set_state(ck["global_numpy_rng"])

    # ---- setup ----------------------------------------------------------------------------------

    def start_fresh(self) -> None:
        self.baseline_us = float(self.cost.baseline_latency())
        if not self.baseline_us > 0:
            raise CimcError(f"search: the W8A8 baseline latency is {self.baseline_us}; it must be > 0")
        if self.config.reward_mode == "budget":
            cheapest = self.cost.latency(min_policy(self.env.n_layers, self.config))
            if cheapest > self.config.latency_budget * self.baseline_us:
                raise CimcError(
                    f"search: latency budget {self.config.latency_budget:g} x W8A8 is unreachable; "
                    f"the cheapest policy costs {cheapest / self.baseline_us:.3f} x W8A8")
        if self.acc_8bit is None:
            self.acc_8bit, _ = self.accuracy(uniform_policy(self.env.n_layers, 8))
        self.save()

    # ---- one episode ----------------------------------------------------------------------------

    def choose(self, ep: int) -> list[tuple[np.ndarray, float, np.ndarray, bool]]:
        from cimc.rl.ddpg import single_thread

        with single_thread():
            return self._choose(ep)

    def _choose(self, ep: int) -> list[tuple[np.ndarray, float, np.ndarray, bool]]:
        s = self.env.reset()
        steps = []
        for _ in range(self.env.n_steps):
            if self.config.method == "random":
                u = self.agent.random_action()
            else:
                u = self.agent.select_action(s, ep)
            s2, done = self.env.step(u)
            steps.append((s, u, s2, done))
            s = s2
        return steps

    def score(self, policy: np.ndarray, acc: float, latency: float) -> float:
        assert self.acc_8bit is not None
        if self.config.reward_mode == "budget":
            return budget_reward(acc, self.acc_8bit)
        return reward(acc, self.acc_8bit, self.config.allowed_drop, latency / self.baseline_us)

    def episode(self, ep: int, kill: tuple[int, str] | None) -> dict[str, Any]:
        t0 = time.perf_counter()
        steps = self.choose(ep)
        raw = self.env.raw_policy
        t1 = time.perf_counter()
        policy = constrain(raw, self.config)
        if self.config.reward_mode == "budget":
            policy = enforce_latency_budget(policy, self.cost.latency,
                                            self.config.latency_budget * self.baseline_us, self.config)
        latency = float(self.cost.latency(policy))
        t2 = time.perf_counter()
        acc, cached = self.accuracy(policy)
        t3 = time.perf_counter()
        if kill == (ep, "mid"):
            _self_kill()
        r = self.score(policy, acc, latency)
        n_upd = 0
        if self.config.method == "ddpg":
            for s, u, s2, done in steps:
                self.agent.observe(s, u, r, s2, done)
        if self.config.method == "ddpg" and ep >= self.config.warmup - 1:
            n_upd = self.agent.update_many(len(steps))
        t4 = time.perf_counter()
        ratio = latency / self.baseline_us
        return {
            "episode": ep,
            "policy": policy.tolist(),
            "raw_policy": raw.tolist(),
            "actions": [float(u) for _, u, _, _ in steps],
            "latency_us": latency,
            "cost_ratio": ratio,
            "speedup": 1.0 / ratio,
            "accuracy": acc,
            "acc_cached": cached,
            "reward": r,
            "sigma": self.agent.sigma(ep) if self.config.method == "ddpg" else None,
            "updates": n_upd,
            "value_loss": self.agent.value_loss,
            "policy_loss": self.agent.policy_loss,
            "time": {"agent_s": (t1 - t0) + (t4 - t3), "cost_s": t2 - t1, "accuracy_s": t3 - t2},
        }

    def note_best(self, rec: dict[str, Any]) -> bool:
        if self.best is not None and rec["reward"] <= self.best["reward"]:
            return False
        self.best = {k: rec[k] for k in ("episode", "policy", "latency_us", "cost_ratio", "speedup",
                                          "accuracy", "reward")}
        self.best["acc_8bit"] = self.acc_8bit
        self.best["baseline_latency_us"] = self.baseline_us
        return True

    # ---- driver ---------------------------------------------------------------------------------

    def run(self, resume: bool, progress: bool) -> SearchResult:
        from tqdm import tqdm

        self.out_dir.mkdir(parents=True, exist_ok=True)
        if (self.out_dir / LEGACY_CHECKPOINT).exists():
            raise CimcError(f"{self.out_dir / LEGACY_CHECKPOINT}: a pickled checkpoint of an older cimc; "
                            "it is not loaded (unpickling can run code): use another output folder")
        if self.ckpt_path.exists() and not resume:
            raise CimcError(f"{self.out_dir}: holds a search checkpoint; pass --resume to continue "
                            "it or choose another output folder")
        if resume and self.ckpt_path.exists():
            self.restore(_load_checkpoint(self.ckpt_path))
            _rewrite_jsonl(self.jsonl_path, self.history)
        else:
            _rewrite_jsonl(self.jsonl_path, [])
            self.start_fresh()
        with atomic_output(self.out_dir / "config.json") as fh:
            fh.write(self.config.to_json() + "\n")  # type: ignore[attr-defined]
        if self.best is not None:
            _write_best(self.out_dir, self.best, self.spec.names)

        kill = _kill_point()
        bar = tqdm(total=self.config.episodes, initial=self.next_episode, disable=not progress,
                   desc=f"search[{self.config.method}]", unit="ep", dynamic_ncols=True)
        try:
            for ep in range(self.next_episode, self.config.episodes):
                rec = self.episode(ep, kill)
                self.history.append(rec)
                improved = self.note_best(rec)
                if improved:
                    _write_best(self.out_dir, self.best, self.spec.names)  # type: ignore[arg-type]
                self.next_episode = ep + 1
                self.save()
                if kill == (ep + 1, "post"):
                    _self_kill()
                with open(self.jsonl_path, "a") as fh:
                    fh.write(_dump_line(rec))
                bar.update(1)
                if self.best is not None:
                    bar.set_postfix(best_R=f"{self.best['reward']:.2f}",
                                    speedup=f"{self.best['speedup']:.2f}x",
                                    acc=f"{self.best['accuracy']:.2f}", refresh=False)
        finally:
            bar.close()
        plot_search(self.history, self.best, self.spec.names, self.out_dir / "search.png")
        return self.result()

    def result(self) -> SearchResult:
        if self.best is None:
            raise CimcError("search: no episode was run (episodes must be >= 1)")
        b = self.best
        assert self.acc_8bit is not None
        return SearchResult(
            best_policy=np.asarray(b["policy"], dtype=np.int64), best_reward=float(b["reward"]),
            best_accuracy=float(b["accuracy"]), best_latency_us=float(b["latency_us"]),
            best_speedup=float(b["speedup"]), best_episode=int(b["episode"]),
            acc_8bit=float(self.acc_8bit), baseline_latency_us=self.baseline_us,
            episodes=len(self.history), out_dir=self.out_dir, history=self.history)


def run_search(config: SearchConfig, env_spec: EnvSpec | Sequence[LayerInfo], cost_model: CostModel,
               accuracy_fn: AccuracyFn, out_dir: str | os.PathLike[str], *, resume: bool = False,
               progress: bool = True) -> SearchResult:
    """Run (or, with ``resume``, continue) a bit-width search; see the module docstring.

    ``accuracy_fn(policy)`` gets the constrained ``(L, 2)`` int64 policy and returns top-1 in
    percent. With ``resume`` and no checkpoint in ``out_dir`` the search starts fresh; the number
    of episodes may be raised on resume, every other setting must match.
    """
    config.validate()
    spec = as_env_spec(env_spec)
    search = _Search(config, spec, cost_model, accuracy_fn, Path(out_dir))
    return search.run(resume, progress)


# --------------------------------------------------------------------------------------------
# Plot
# --------------------------------------------------------------------------------------------


def plot_search(history: list[dict[str, Any]], best: dict[str, Any] | None, names: list[str],
                path: str | os.PathLike[str]) -> None:
    """``search.png``: reward and speedup per episode, and the best policy's bits per layer."""
    if not history:
        return
    import matplotlib.pyplot as plt

    fig = search_figure(history, best, names)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def search_figure(history: list[dict[str, Any]], best: dict[str, Any] | None, names: list[str]):
    """The figure of :func:`plot_search`: whole-number episode ticks, every axis labelled, the
    legends outside the axes (never over the points)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    eps = [r["episode"] for r in history]
    fig, axes = plt.subplots(3, 1, figsize=(10, 9), constrained_layout=True)
    outside = {"loc": "upper left", "bbox_to_anchor": (1.08, 1.0), "fontsize": 8}
    ax = axes[0]
    ax.plot(eps, [r["reward"] for r in history], ".", ms=3, label="reward")
    ax.plot(eps, np.maximum.accumulate([r["reward"] for r in history]), "-", lw=1.5, label="best so far")
    ax.set_ylabel("reward")
    ax.set_xlabel("episode")
    ax.legend(**outside)
    ax = axes[1]
    speed = ax.plot(eps, [r["speedup"] for r in history], ".", ms=3, color="tab:green", label="speedup")
    ax2 = ax.twinx()
    acc = ax2.plot(eps, [r["accuracy"] for r in history], ".", ms=3, color="tab:red", label="top-1 accuracy")
    ax.set_ylabel("speedup vs W8A8 (x)", color="tab:green")
    ax2.set_ylabel("top-1 accuracy (%)", color="tab:red")
    ax.set_xlabel("episode")
    ax.legend(handles=speed + acc, **outside)
    for a in axes[:2]:
        a.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax = axes[2]
    ax.set_xlabel("crossbar layer")
    ax.set_ylabel("bits")
    if best is not None:
        pol = np.asarray(best["policy"])
        x = np.arange(len(pol))
        ax.bar(x - 0.2, pol[:, 0], width=0.4, label="weight bits")
        ax.bar(x + 0.2, pol[:, 1], width=0.4, label="activation bits")
        ax.set_xticks(x)
        ax.set_xticklabels(names, rotation=60, ha="right", fontsize=7)
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(f"best: episode {best['episode']}, reward {best['reward']:.2f}, "
                     f"{best['speedup']:.2f}x, {best['accuracy']:.2f} %")
        ax.legend(**outside)
    return fig
