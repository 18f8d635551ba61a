"""Where a search's policies are evaluated: in the learner's process, or on K Ray workers.

The learner (:mod:`cimc.rl.search`) plays ``K`` episodes per round: it draws each episode's
actions from the actor with that episode's own noise stream, looks the policies up in its
caches, and hands the policies still to be evaluated to an executor, which returns one
:class:`Evaluation` per policy, in order. The replay buffer, the updates and every file stay with
the learner, so the results depend on the seed and ``K`` alone, not on where or how fast the
evaluations ran.

- :class:`LocalExecutor` evaluates one policy after the other in this process;
- :class:`RayExecutor` keeps ``K`` Ray actors, each built once from a picklable ``factory()``
  (which loads the model, the data, the checkpoint) and evaluates up to ``K`` policies at once.
  An actor whose process dies is restarted by Ray (``max_restarts=-1``) and the evaluation it
  was running is run again (``max_task_retries=-1``); evaluations are deterministic, so the re-run
  gives what the lost one would have, and the learner records each episode exactly once.

Ray: a local instance is started unless ``address`` names a running cluster (``ray start --head``;
its nodes need cimc installed). A local instance uses Ray's default token authentication;
throw-away instances in tests set ``RAY_AUTH_MODE=disabled``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from cimc.errors import CimcError


@dataclass(frozen=True)
class Evaluation:
    """What one policy evaluation returns: top-1 %, and the latency when the evaluator measures
    the cost itself (``--cost measured``), with the seconds each took."""

    accuracy: float
    latency_us: float | None = None
    accuracy_s: float = 0.0
    cost_s: float = 0.0


EvalFn = Callable[[np.ndarray], Any]
"""``fn(policy)`` returning top-1 % (a float) or an :class:`Evaluation`."""


def evaluate_policy(fn: EvalFn, policy: np.ndarray) -> Evaluation:
    """Run ``fn`` on ``policy`` and wrap its answer as an :class:`Evaluation` (timed)."""
    t0 = time.perf_counter()
    out = fn(np.asarray(policy, dtype=np.int64).copy())
    if isinstance(out, Evaluation):
        result = out
    else:
        result = Evaluation(float(out), None, time.perf_counter() - t0, 0.0)
    if not np.isfinite(result.accuracy):
        raise CimcError(f"search: the accuracy function returned {result.accuracy} for policy "
                        f"{np.asarray(policy).tolist()}")
    return result


class Executor(Protocol):
    """Evaluates policies; ``map`` returns one :class:`Evaluation` per policy, in order."""

    workers: int

    def map(self, policies: Sequence[np.ndarray]) -> list[Evaluation]: ...

    def close(self) -> None: ...


class LocalExecutor:
    """Evaluates in this process, one policy after the other."""

    def __init__(self, fn: EvalFn, workers: int = 1):
        self.fn = fn
        self.workers = workers

    def map(self, policies: Sequence[np.ndarray]) -> list[Evaluation]:
        return [evaluate_policy(self.fn, p) for p in policies]

    def close(self) -> None:
        pass


class _Worker:
    """The body of a Ray actor: builds the evaluator once, then evaluates policies."""

    def __init__(self, factory: Callable[[], EvalFn], threads: int):
        os.environ["CIMC_THREADS"] = str(threads)
        os.environ.setdefault("NUMBA_NUM_THREADS", str(threads))
        import torch

        torch.set_num_threads(threads)
        self.fn = factory()

    def evaluate(self, policy: np.ndarray) -> Evaluation:
        return evaluate_policy(self.fn, policy)

    def pid(self) -> int:
        return os.getpid()


class RayExecutor:
    """``workers`` Ray actors built from ``factory``; see the module docstring."""

    def __init__(self, factory: Callable[[], EvalFn], workers: int, address: str | None = None,
                 threads: int = 1):
        if workers < 1:
            raise CimcError(f"--workers: expected >= 1, got {workers}")
        try:
            import ray
        except ImportError:
            raise CimcError("--workers needs Ray (pip install ray); it is part of cimc's "
                            "dependencies, re-run the set-up") from None
        self.workers = workers
        self._started = False
        if not ray.is_initialized():
            try:
                if address is None:
                    ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False,
                             configure_logging=False)
                else:
                    ray.init(address=address, log_to_driver=False, configure_logging=False)
            except Exception as exc:  # Ray raises many kinds (connection, auth, resources)
                where = f"the Ray cluster at {address}" if address else "a local Ray instance"
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise CimcError(f"--workers: cannot start {where}: {first}") from None
            self._started = True
        remote = ray.remote(num_cpus=1, max_restarts=-1, max_task_retries=-1)(_Worker)
        self.actors = [remote.remote(factory, threads) for _ in range(workers)]

    def map(self, policies: Sequence[np.ndarray]) -> list[Evaluation]:
        import ray

        refs = [self.actors[i % self.workers].evaluate.remote(np.asarray(p, dtype=np.int64))
                for i, p in enumerate(policies)]
        try:
            return list(ray.get(refs))
        except ray.exceptions.RayTaskError as exc:
            cause = exc.cause if getattr(exc, "cause", None) is not None else exc
            if isinstance(cause, CimcError):
                raise cause from None
            first = str(cause).strip().splitlines()[-1] if str(cause).strip() else type(cause).__name__
            raise CimcError(f"search worker failed: {first}") from None

    def pids(self) -> list[int]:
        """The process ids of the workers (for tests and diagnostics)."""
        import ray

        return list(ray.get([a.pid.remote() for a in self.actors]))

    def close(self) -> None:
        import ray

        for actor in self.actors:
            ray.kill(actor, no_restart=True)
        self.actors = []
        if self._started:
            ray.shutdown()
            self._started = False


def make_executor(fn: EvalFn | None, factory: Callable[[], EvalFn] | None, workers: int,
                  *, ray: bool | None = None, address: str | None = None) -> Executor:
    """A :class:`RayExecutor` when ``ray`` (default: ``workers > 1`` or an ``address``), else a
    :class:`LocalExecutor` around ``fn`` (built from ``factory`` when ``fn`` is None)."""
    use_ray = (workers > 1 or address is not None) if ray is None else ray
    if use_ray:
        if factory is None:
            raise CimcError("--workers: the evaluator cannot be sent to workers (no factory)")
        return RayExecutor(factory, workers, address)
    if fn is None:
        if factory is None:
            raise CimcError("search: neither an accuracy function nor a factory for one")
        fn = factory()
    return LocalExecutor(fn, workers)
