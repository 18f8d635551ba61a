"""The files of a search folder: ``episodes.jsonl``, ``checkpoint.zip``, ``best_policy.*``.

Also the test hook ``CIMC_SEARCH_KILL_AT`` (see :mod:`cimc.rl.search`), the text key of a policy
(``"8/8,4/6,..."``, the key of the accuracy and measured-cost caches) and the time split of the
episode records.
"""

from __future__ import annotations

import io
import json
import os
import signal
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cimc.cli_util import atomic_output, atomic_write_bytes
from cimc.errors import CimcError

CHECKPOINT_VERSION = 2
#: The pickled checkpoint of cimc before version 2; never loaded (unpickling can run code).
LEGACY_CHECKPOINT = "checkpoint.pt"
KILL_ENV = "CIMC_SEARCH_KILL_AT"

TIME_KEYS = ("accuracy_s", "cost_s", "agent_s")
"""The time split of an episode, in this order in every printout."""


def dump_line(record: dict[str, Any]) -> str:
    return json.dumps(record, sort_keys=True) + "\n"


def read_episodes(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The records of an ``episodes.jsonl`` file."""
    with open(path) as fh:
        return [json.loads(line) for line in fh if line.strip()]


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    from cimc.state_file import save_state

    save_state(path, payload)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """The checkpoint's payload; JSON and raw arrays only, nothing is unpickled."""
    from cimc.state_file import load_state

    ck = load_state(path, "search checkpoint")
    if not isinstance(ck, dict):
        raise CimcError(f"{path}: not a search checkpoint (top level is {type(ck).__name__})")
    return ck


def write_best(out_dir: Path, best: dict[str, Any], names: list[str]) -> None:
    pol = np.asarray(best["policy"], dtype=np.int64)
    buf = io.BytesIO()
    np.save(buf, pol)
    atomic_write_bytes(out_dir / "best_policy.npy", buf.getvalue())
    doc = dict(best)
    doc["layers"] = names
    with atomic_output(out_dir / "best_policy.json") as fh:
        fh.write(json.dumps(doc, indent=2, sort_keys=True) + "\n")  # type: ignore[attr-defined]


def rewrite_jsonl(path: Path, history: list[dict[str, Any]]) -> None:
    with atomic_output(path) as fh:
        for rec in history:
            fh.write(dump_line(rec))  # type: ignore[attr-defined]


def kill_point() -> tuple[int, str] | None:
    raw = os.environ.get(KILL_ENV, "").strip()
    if not raw:
        return None
    num, _, where = raw.partition(":")
    try:
        return int(num), (where or "post")
    except ValueError:
        raise CimcError(f"{KILL_ENV}={raw!r}: expected K or K:mid") from None


def self_kill() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def policy_key(policy: np.ndarray) -> str:
    """The text key of a policy, ``"w/a,w/a,..."`` per layer."""
    return ",".join(f"{int(w)}/{int(a)}" for w, a in np.asarray(policy))


def key_policy(key: str) -> np.ndarray:
    """The policy of a :func:`policy_key`."""
    return np.array([[int(x) for x in pair.split("/")] for pair in key.split(",")], dtype=np.int64)


def time_split(history: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Mean seconds per episode of accuracy, cost, agent and wall time over ``history``."""
    if not history:
        return {k: 0.0 for k in (*TIME_KEYS, "wall_s")}
    keys = (*TIME_KEYS, "wall_s")
    return {k: sum(r["time"].get(k, 0.0) for r in history) / len(history) for k in keys}
