"""The mixed-precision search loop (CIM-AQ): episodes, rounds, checkpoints, results.

An episode chooses ``2L`` actions (cimc's DDPG, uniform random for ``method="random"``, or
Stable-Baselines3's TD3 through :mod:`cimc.rl.gym_env` for ``method="td3"``), turns them into an
``(L, 2)`` policy, applies the constraints, costs it (the injected :class:`CostModel`, or the
counted latency that comes back with the evaluation for ``--cost measured``), measures its
accuracy (the injected ``accuracy_fn(policy) -> top-1 %``, cached per policy: a policy is never
evaluated twice), computes the reward and stores the transitions.

Episodes are played in **rounds** of ``K = config.workers``: the actions of the K episodes come
from the actor as it is at the start of the round, each episode with its own noise stream (a
function of the seed and the episode index); the distinct new policies are evaluated together by
an :class:`~cimc.rl.parallel.Executor` (in this process, or on K Ray workers); then the
transitions are stored in episode order and the updates run (one per stored transition). The
results depend on the seed and K only. K = 1 is CIM-AQ's sequential loop.

Before the first episode the static cost model is filled for every uniform ``(w, a)`` the search
can choose (:func:`cimc.rl.costs.prefill`), so episodes only look costs up.

Files in ``out_dir``:

- ``config.json``: the :class:`~cimc.rl.env.SearchConfig` of the run;
- ``episodes.jsonl``: one JSON object per episode (policy, latency, cost ratio, speedup, accuracy,
  reward, exploration sigma, and ``time`` = ``{accuracy_s, cost_s, agent_s, wall_s}``: the only
  fields that differ between two runs with the same seed and K);
- ``best_policy.npy`` / ``best_policy.json``: the best policy so far (highest reward);
- ``checkpoint.zip``: everything needed to resume (agent, buffer, RNG states, history, episode
  counter, accuracy and measured-cost caches) as JSON plus raw arrays (:mod:`cimc.state_file`:
  loading it never unpickles, so a shared search folder cannot run code), written atomically
  after every round; ``episodes.jsonl`` is rebuilt from it on resume, so a kill at any moment
  loses or repeats no episode (a round cut by the kill is played again, identically);
- ``search.png``: reward and speedup over the episodes and the best policy's bits per layer.

The objective (``--objective``) is the cost model's ``objective`` attribute (``latency`` when it
has none). For ``energy`` or ``edp`` the reward's ``cost_ratio`` is the policy's energy (or
energy-delay product) over W8A8's, from the cost model's ``value(policy)``; the records then also
hold ``objective``, ``energy_uj``, ``edp_uj_us`` and ``objective_gain`` (1 / cost ratio), while
``latency_us`` and ``speedup`` keep their latency meaning. A latency search writes exactly what it
wrote before.

The environment variable ``CIMC_SEARCH_KILL_AT`` makes the process SIGKILL itself (for tests):
``K`` right after the checkpoint of the round that finishes episode ``K - 1`` is written (before
its lines are appended to ``episodes.jsonl``), ``K:mid`` in the round of episode index ``K``
(after its evaluations, before anything is written).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cimc.cli_util import atomic_output
from cimc.errors import CimcError
from cimc.rl.costs import OBJECTIVE_FIGURE, ClosedFormCost, CostModel, FunctionCost  # noqa: F401  (re-exported)
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
from cimc.rl.parallel import Executor, LocalExecutor
from cimc.rl.plots import plot_search
from cimc.rl.search_files import (  # noqa: F401  (KILL_ENV, read_episodes, time_split re-exported)
    KILL_ENV,
    LEGACY_CHECKPOINT,
    TIME_KEYS,
    dump_line,
    kill_point,
    load_checkpoint,
    policy_key,
    read_episodes,
    rewrite_jsonl,
    save_checkpoint,
    self_kill,
    time_split,
    write_best,
)
from cimc.rl.search_state import restore_search, search_payload
from cimc.rl.search_types import AccuracyFn, EnvSpec, SearchResult, as_env_spec  # noqa: F401  (re-exported)

# --------------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------------


Step = tuple[np.ndarray, float, np.ndarray, bool]


class _Search:
    """State of one search run; :func:`run_search` is the public entry."""

    def __init__(self, config: SearchConfig, spec: EnvSpec, cost_model: CostModel,
                 executor: Executor, out_dir: Path):
        from cimc.rl.ddpg import DDPGAgent

        self.config = config
        self.spec = spec
        self.cost = cost_model
        self.measured = bool(getattr(cost_model, "measured", False))
        self.objective: str = getattr(cost_model, "objective", "latency")
        self.baseline_value = 0.0  # the objective's figure at W8A8
        self.executor = executor
        self.out_dir = out_dir
        self.env = BitWidthEnv(spec.layers, config)
        self.agent = DDPGAgent(self.env.n_layers, config.ddpg, warmup=config.warmup, seed=config.seed,
                               episodes=config.episodes)
        self.history: list[dict[str, Any]] = []
        self.best: dict[str, Any] | None = None
        self.acc_cache: dict[str, float] = {}
        self.cost_cache: dict[str, float] = {}  # measured latencies, per policy
        self.acc_8bit: float | None = config.acc_8bit
        self.baseline_us: float = 0.0
        self.next_episode = 0
        self.ckpt_path = out_dir / "checkpoint.zip"
        self.jsonl_path = out_dir / "episodes.jsonl"

    # ---- evaluations with caches ----------------------------------------------------------------

    def evaluate(self, policies: list[np.ndarray]) -> list[tuple[float, float, bool]]:
        """``(accuracy, accuracy_s, cached)`` per policy; the uncached ones (each distinct policy
        once) go to the executor together, and their measured costs into the cost model."""
        keys = [policy_key(p) for p in policies]
        use_cache = self.config.cache_accuracy
        todo: dict[str, np.ndarray] = {}
        for k, p in zip(keys, policies):
            if not (use_cache and k in self.acc_cache) and k not in todo:
                todo[k] = p
        fresh = dict(zip(todo, self.executor.map(list(todo.values()))))
        seen: dict[str, float] = {}
        for k, ev in fresh.items():
            if self.measured:
                if ev.latency_us is None:
                    raise CimcError("--cost measured: the evaluator returned no latency")
                self.cost_cache[k] = float(ev.latency_us)
                self.cost.note(todo[k], ev.latency_us)  # type: ignore[attr-defined]
            if use_cache:
                self.acc_cache[k] = ev.accuracy
        out = []
        for k in keys:
            if k in fresh:
                ev = fresh.pop(k)  # a policy twice in one round: evaluated once, then cached
                out.append((ev.accuracy, ev.accuracy_s + ev.cost_s, False))
                seen[k] = ev.accuracy
            else:
                out.append((seen.get(k, self.acc_cache.get(k)), 0.0, True))
        return out

    # ---- checkpoint -----------------------------------------------------------------------------

    def save(self) -> None:
        save_checkpoint(self.ckpt_path, search_payload(self))

    # ---- setup ----------------------------------------------------------------------------------

    def start_fresh(self) -> None:
        w8a8 = uniform_policy(self.env.n_layers, 8)
        if self.acc_8bit is None or self.measured:
            acc, _, _ = self.evaluate([w8a8])[0]
            if self.acc_8bit is None:
                self.acc_8bit = acc
        self.baseline_us = float(self.cost.baseline_latency())
        if not self.baseline_us > 0:
            raise CimcError(f"search: the W8A8 baseline latency is {self.baseline_us}; it must be > 0")
        self.baseline_value = self.objective_baseline()
        if self.config.reward_mode == "budget":
            cheapest = self.value(min_policy(self.env.n_layers, self.config))
            if cheapest > self.config.latency_budget * self.baseline_value:
                raise CimcError(
                    f"search: {self.objective} budget {self.config.latency_budget:g} x W8A8 is unreachable; "
                    f"the cheapest policy costs {cheapest / self.baseline_value:.3f} x W8A8")
        self.save()

    # ---- the objective --------------------------------------------------------------------------

    def objective_baseline(self) -> float:
        if self.objective == "latency":
            return self.baseline_us
        base = float(self.cost.baseline_value())  # type: ignore[attr-defined]
        if not base > 0:
            raise CimcError(f"search: the W8A8 baseline {self.objective} is {base}; it must be > 0")
        return base

    def value(self, policy: np.ndarray) -> float:
        """The figure the search minimises for ``policy`` (latency in us, or the objective's)."""
        if self.objective == "latency":
            return float(self.cost.latency(policy))
        return float(self.cost.value(policy))  # type: ignore[attr-defined]

    def cost_ratio(self, policy: np.ndarray, latency: float) -> float:
        if self.objective == "latency":
            return latency / self.baseline_us
        return self.value(policy) / self.baseline_value

    # ---- one round of K episodes ----------------------------------------------------------------

    def rollout(self, ep: int) -> list[Step]:
        """The ``2L`` steps of episode ``ep`` with its own noise stream (one torch thread)."""
        from cimc.rl.ddpg import single_thread

        rng = self.agent.episode_rng(ep)
        with single_thread():
            s = self.env.reset()
            steps = []
            for _ in range(self.env.n_steps):
                if self.config.method == "random":
                    u = self.agent.random_action(rng)
                else:
                    u = self.agent.select_action(s, ep, rng)
                s2, done = self.env.step(u)
                steps.append((s, u, s2, done))
                s = s2
        return steps

    def constrained(self, raw: np.ndarray) -> np.ndarray:
        policy = constrain(raw, self.config)
        if self.config.reward_mode == "budget":
            policy = enforce_latency_budget(policy, self.value,
                                            self.config.latency_budget * self.baseline_value, self.config)
        return policy

    def score(self, acc: float, ratio: float) -> float:
        assert self.acc_8bit is not None
        if self.config.reward_mode == "budget":
            return budget_reward(acc, self.acc_8bit)
        return reward(acc, self.acc_8bit, self.config.allowed_drop, ratio)

    def play_round(self, eps: list[int], kill: tuple[int, str] | None) -> list[dict[str, Any]]:
        """Episodes ``eps`` with the actor as it is now; then the transitions and the updates."""
        t0 = time.perf_counter()
        rolls, raws, agent_s = [], [], []
        for ep in eps:
            ta = time.perf_counter()
            rolls.append(self.rollout(ep))
            raws.append(self.env.raw_policy)
            agent_s.append(time.perf_counter() - ta)
        tc = time.perf_counter()
        policies = [self.constrained(raw) for raw in raws]
        static = [None if self.measured else float(self.cost.latency(p)) for p in policies]
        cost_s = (time.perf_counter() - tc) / len(eps)
        evals = self.evaluate(policies)
        if kill is not None and kill[1] == "mid" and kill[0] in eps:
            self_kill()
        recs = []
        for ep, steps, raw, pol, lat, (acc, acc_s, cached), t_a in zip(
                eps, rolls, raws, policies, static, evals, agent_s):
            tc = time.perf_counter()  # the objective's cost (a compile per new policy for energy, chip)
            latency = float(self.cost.latency(pol)) if lat is None else lat
            ratio = self.cost_ratio(pol, latency)
            late_cost_s = time.perf_counter() - tc
            r = self.score(acc, ratio)
            if self.config.method == "ddpg":
                for s, u, s2, done in steps:
                    self.agent.observe(s, u, r, s2, done)
            recs.append(self.record(ep, [u for _, u, _, _ in steps], raw, pol, latency, ratio, acc,
                                    cached, r, {"agent_s": t_a, "cost_s": cost_s + late_cost_s,
                                                "accuracy_s": acc_s}))
        tu = time.perf_counter()
        n_upd = 0
        if self.config.method == "ddpg":
            n_upd = sum(self.agent.updates_for(len(rolls[i])) for i, ep in enumerate(eps)
                        if ep >= self.config.warmup - 1)
            self.agent.update_many(n_upd)
        upd_s = (time.perf_counter() - tu) / len(eps)
        wall = (time.perf_counter() - t0) / len(eps)
        for rec in recs:
            rec["updates"] = n_upd if rec is recs[-1] else 0
            rec["value_loss"], rec["policy_loss"] = self.agent.value_loss, self.agent.policy_loss
            rec["time"]["agent_s"] += upd_s
            rec["time"]["wall_s"] = wall
        return recs

    def score_single(self, ep: int, raw: np.ndarray, actions: list[float],
                     agent_s: float) -> dict[str, Any]:
        """Score one episode whose actions an external agent chose (``--method td3``)."""
        t0 = time.perf_counter()
        policy = self.constrained(raw)
        latency = None if self.measured else float(self.cost.latency(policy))
        cost_s = time.perf_counter() - t0
        acc, acc_s, cached = self.evaluate([policy])[0]
        tc = time.perf_counter()
        if latency is None:
            latency = float(self.cost.latency(policy))
        ratio = self.cost_ratio(policy, latency)
        cost_s += time.perf_counter() - tc
        rec = self.record(ep, actions, raw, policy, latency, ratio, acc, cached, self.score(acc, ratio),
                          {"agent_s": agent_s, "cost_s": cost_s, "accuracy_s": acc_s})
        rec["updates"], rec["value_loss"], rec["policy_loss"] = 0, None, None
        rec["time"]["wall_s"] = agent_s + (time.perf_counter() - t0)
        return rec

    def record(self, ep: int, actions: list[float], raw: np.ndarray, policy: np.ndarray,
               latency: float, ratio: float, acc: float, cached: bool, r: float,
               times: dict[str, float]) -> dict[str, Any]:
        rec = {
            "episode": ep,
            "policy": policy.tolist(),
            "raw_policy": raw.tolist(),
            "actions": [float(u) for u in actions],
            "latency_us": latency,
            "cost_ratio": ratio,
            "speedup": self.baseline_us / latency if self.objective != "latency" else 1.0 / ratio,
            "accuracy": acc,
            "acc_cached": cached,
            "reward": r,
            "sigma": self.agent.sigma(ep) if self.config.method != "random" else None,
            "time": dict(times),
        }
        if self.objective != "latency":
            figures = self.cost.figures(policy)  # type: ignore[attr-defined]
            rec.update(objective=self.objective, energy_uj=figures["energy_uj"],
                       edp_uj_us=figures["edp_uj_us"], objective_gain=1.0 / ratio)
            if "chip_us" in figures:  # the compiler cost's chip schedule (a user's cost may not have one)
                rec["chip_us"] = figures["chip_us"]
        return rec

    def note_best(self, rec: dict[str, Any]) -> bool:
        if self.best is not None and rec["reward"] <= self.best["reward"]:
            return False
        self.best = {k: rec[k] for k in ("episode", "policy", "latency_us", "cost_ratio", "speedup",
                                          "accuracy", "reward")}
        self.best["acc_8bit"] = self.acc_8bit
        self.best["baseline_latency_us"] = self.baseline_us
        if self.objective != "latency":
            self.best.update({k: rec[k] for k in OBJECTIVE_KEYS if k in rec})
            self.best[f"baseline_{OBJECTIVE_FIGURE[self.objective]}"] = self.baseline_value
        return True

    # ---- driver ---------------------------------------------------------------------------------

    def open(self, resume: bool) -> None:
        """Restore or start; rewrite ``episodes.jsonl`` and ``config.json``."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if (self.out_dir / LEGACY_CHECKPOINT).exists():
            raise CimcError(f"{self.out_dir / LEGACY_CHECKPOINT}: a pickled checkpoint of an older cimc; "
                            "it is not loaded (unpickling can run code): use another output folder")
        if self.ckpt_path.exists() and not resume:
            raise CimcError(f"{self.out_dir}: holds a search checkpoint; pass --resume to continue "
                            "it or choose another output folder")
        from cimc.rl.costs import prefill

        prefill(self.cost, self.env.n_layers, self.config)  # fresh or resumed: no episode compiles
        if resume and self.ckpt_path.exists():
            restore_search(self, load_checkpoint(self.ckpt_path))
            rewrite_jsonl(self.jsonl_path, self.history)
        else:
            rewrite_jsonl(self.jsonl_path, [])
            self.start_fresh()
        with atomic_output(self.out_dir / "config.json") as fh:
            fh.write(self.config.to_json() + "\n")  # type: ignore[attr-defined]
        if self.best is not None:
            write_best(self.out_dir, self.best, self.spec.names)

    def commit(self, recs: list[dict[str, Any]], kill: tuple[int, str] | None) -> None:
        """Record a finished round: history, best, checkpoint, then the ``episodes.jsonl`` lines."""
        first = self.next_episode
        self.history.extend(recs)
        improved = [self.note_best(rec) for rec in recs]
        if any(improved):
            write_best(self.out_dir, self.best, self.spec.names)  # type: ignore[arg-type]
        self.next_episode = recs[-1]["episode"] + 1
        self.save()
        if kill is not None and kill[1] == "post" and first < kill[0] <= self.next_episode:
            self_kill()
        with open(self.jsonl_path, "a") as fh:
            for rec in recs:
                fh.write(dump_line(rec))

    def run(self, resume: bool, progress: bool) -> SearchResult:
        from tqdm import tqdm

        self.open(resume)
        kill = kill_point()
        k = self.config.workers
        bar = tqdm(total=self.config.episodes, initial=self.next_episode, disable=not progress,
                   desc=f"search[{self.config.method}]", unit="ep", dynamic_ncols=True)
        try:
            while self.next_episode < self.config.episodes:
                eps = list(range(self.next_episode, min(self.next_episode + k, self.config.episodes)))
                recs = self.play_round(eps, kill)
                self.commit(recs, kill)
                bar.update(len(recs))
                self.show(bar)
        finally:
            bar.close()
        plot_search(self.history, self.best, self.spec.names, self.out_dir / "search.png")
        return self.result()

    def show(self, bar: Any) -> None:
        """Best so far and the mean time split of the last 10 episodes on the progress bar."""
        if self.best is None:
            return
        last = self.history[-10:]
        mean = {k: sum(r["time"][k] for r in last) / len(last) for k in TIME_KEYS}
        bar.set_postfix(best_R=f"{self.best['reward']:.2f}", speedup=f"{self.best['speedup']:.2f}x",
                        acc=f"{self.best['accuracy']:.2f}",
                        s_ep=" ".join(f"{k[0]}{mean[k]:.2f}" for k in TIME_KEYS), refresh=False)

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


OBJECTIVE_KEYS = ("objective", "energy_uj", "edp_uj_us", "chip_us", "objective_gain")
"""What a record of an energy / EDP search holds beyond a latency search's."""


def run_search(config: SearchConfig, env_spec: EnvSpec | Sequence[LayerInfo], cost_model: CostModel,
               accuracy_fn: AccuracyFn | None, out_dir: str | os.PathLike[str], *,
               resume: bool = False, progress: bool = True,
               executor: Executor | None = None) -> SearchResult:
    """Run (or, with ``resume``, continue) a bit-width search; see the module docstring.

    ``accuracy_fn(policy)`` gets the constrained ``(L, 2)`` int64 policy and returns top-1 in
    percent (or a :class:`~cimc.rl.parallel.Evaluation` with the measured latency); ``executor``
    (e.g. a :class:`~cimc.rl.parallel.RayExecutor`) evaluates instead of calling it here. With
    ``resume`` and no checkpoint in ``out_dir`` the search starts fresh; the number of episodes
    may be raised on resume, every other setting (``workers`` too) must match.
    """
    config.validate()
    spec = as_env_spec(env_spec)
    if executor is None:
        if accuracy_fn is None:
            raise CimcError("search: give an accuracy function or an executor")
        executor = LocalExecutor(accuracy_fn, config.workers)
    if getattr(cost_model, "measured", False) and config.reward_mode == "budget":
        raise CimcError("--cost measured: the latency budget mode needs a static cost "
                        "(the budget is enforced before the policy is run)")
    search = _Search(config, spec, cost_model, executor, Path(out_dir))
    if config.method == "td3":
        from cimc.rl.sb3_agents import run_td3

        return run_td3(search, resume, progress)
    return search.run(resume, progress)
