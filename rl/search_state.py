"""The resumable state of a search run: what ``checkpoint.zip`` holds and how it is restored.

:func:`search_payload` is everything a run needs to continue (agent, replay buffer, RNG states,
history, episode counter, accuracy and measured-cost caches); :func:`restore_search` puts it
back into a freshly built run after checking that the checkpoint belongs to the same search
(version, configuration except the episode count, layers, objective). A damaged checkpoint is
one line naming the file.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from cimc.errors import CimcError
from cimc.rl.search_files import CHECKPOINT_VERSION, key_policy

if TYPE_CHECKING:
    from cimc.rl.search import _Search


def _comparable_config(cfg: dict[str, Any]) -> dict[str, Any]:
    out = dict(cfg)
    out.pop("episodes", None)  # may be raised on resume
    return out


def search_payload(s: _Search) -> dict[str, Any]:
    """The checkpoint's payload (JSON values and arrays only)."""
    import torch

    return {
        "version": CHECKPOINT_VERSION,
        "config": s.config.to_dict(),
        "layers": s.spec.names,
        "next_episode": s.next_episode,
        "agent": s.agent.state_dict(),
        "history": s.history,
        "best": s.best,
        "acc_cache": s.acc_cache,
        "cost_cache": s.cost_cache,
        "acc_8bit": s.acc_8bit,
        "baseline_us": s.baseline_us,
        **({"objective": s.objective} if s.objective != "latency" else {}),
        "global_torch_rng": torch.get_rng_state(),
        "global_numpy_rng": np.random.get_state(),
    }


def restore_search(s: _Search, ck: dict[str, Any]) -> None:
    """Continue ``s`` from checkpoint payload ``ck``; a damaged one is a one-line error."""
    try:
        _restore(s, ck)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError, RuntimeError) as exc:
        detail = f"{type(exc).__name__}: {str(exc).splitlines()[0][:80]}" if str(exc) else type(exc).__name__
        raise CimcError(f"{s.ckpt_path}: damaged search checkpoint ({detail})") from None


def _restore(s: _Search, ck: dict[str, Any]) -> None:
    import torch

    if ck.get("version") != CHECKPOINT_VERSION:
        raise CimcError(f"{s.ckpt_path}: checkpoint version {ck.get('version')} is not supported")
    if _comparable_config(ck["config"]) != _comparable_config(s.config.to_dict()):
        raise CimcError(f"{s.ckpt_path}: the checkpoint was written with a different search "
                        "configuration; resume with the same options or use another --out")
    if list(ck["layers"]) != s.spec.names:
        raise CimcError(f"{s.ckpt_path}: the checkpoint is for other layers "
                        f"({len(ck['layers'])} vs {len(s.spec.names)})")
    s.agent.load_state_dict(ck["agent"])
    s.history = list(ck["history"])
    s.best = ck["best"]
    s.acc_cache = dict(ck["acc_cache"])
    s.cost_cache = dict(ck.get("cost_cache") or {})
    for k, lat in s.cost_cache.items():
        s.cost.note(key_policy(k), lat)  # type: ignore[attr-defined]
    s.acc_8bit = ck["acc_8bit"]
    s.baseline_us = float(ck["baseline_us"])
    if ck.get("objective", "latency") != s.objective:
        raise CimcError(f"{s.ckpt_path}: the checkpoint is of a search for "
                        f"{ck.get('objective', 'latency')}, not {s.objective}; resume with "
                        "the same --objective or use another --out")
    s.baseline_value = s.objective_baseline()
    s.next_episode = int(ck["next_episode"])
    torch.set_rng_state(ck["global_torch_rng"])
    np.random.set_state(ck["global_numpy_rng"])
