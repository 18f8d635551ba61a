"""The search checkpoint is data: planted code is never run, and SIGKILL at random moments
(five times) still gives the same ``episodes.jsonl`` as an uninterrupted run."""

from __future__ import annotations

import io
import json
import os
import pickle
import random
import signal
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from cimc.errors import CimcError
from cimc.rl.env import SearchConfig
from cimc.rl.search import read_episodes
from cimc.state_file import FORMAT, dumps_state, load_state, loads_state

DESCS = [
    ("conv1", 6, 25, 576, 1, "conv"),
    ("conv2", 16, 150, 1024, 1, "conv"),
    ("conv3", 32, 400, 256, 1, "conv"),
    ("fc1", 120, 512, 1, 1, "linear"),
    ("fc2", 10, 120, 1, 1, "linear"),
]

SCRIPT = textwrap.dedent(
    """
    import sys
    import numpy as np
    from cimc.target import LayerDesc
    from cimc.target.hw import Hardware
    from cimc.rl.env import SearchConfig, layer_info_from_desc
    from cimc.rl.search import ClosedFormCost, EnvSpec, run_search

    DESCS = [LayerDesc(*d) for d in {descs!r}]
    spec = EnvSpec(tuple(layer_info_from_desc(d, i) for i, d in enumerate(DESCS)))
    cfg = SearchConfig.from_json({config!r})

    def acc(p):
        return float(90.0 - 0.1 * np.sum(8 - np.asarray(p)))

    run_search(cfg, spec, ClosedFormCost(DESCS, Hardware()), acc, sys.argv[1],
               resume=sys.argv[2] == "resume", progress=False)
    """
)


class Payload:
    """Unpickling this creates ``marker``: proof that a loader ran code from the file."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _config(episodes: int, warmup: int) -> SearchConfig:
    cfg = SearchConfig(episodes=episodes, warmup=warmup, seed=3, allowed_drop=2.0)
    cfg.ddpg.batch_size = 16
    return cfg


def _script(tmp_path: Path, cfg: SearchConfig) -> Path:
    script = tmp_path / "run.py"
    script.write_text(SCRIPT.format(descs=DESCS, config=cfg.to_json()))
    return script


def _strip(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "time"} for r in records]


# -- the format ------------------------------------------------------------------------------------


def test_state_round_trip_keeps_types_exactly() -> None:
    tree = {
        "t": torch.arange(6, dtype=torch.float32).reshape(2, 3),
        "rng": torch.get_rng_state(),
        "np_rng": np.random.get_state(),
        "int_keys": {0: {"step": torch.tensor(3.0)}, 1: [1, 2]},
        "dollar": {"$tuple": 1},
        "scalars": [np.float32(0.1), np.int64(7), 1.0 / 3.0, float("inf"), None, True, 2**80],
        "tuple": (1, "a", (2.5,)),
    }
    back = loads_state(dumps_state(tree))
    assert torch.equal(back["t"], tree["t"]) and back["t"].dtype == torch.float32
    assert torch.equal(back["rng"], tree["rng"])
    assert back["np_rng"][0] == "MT19937" and np.array_equal(back["np_rng"][1], tree["np_rng"][1])
    assert back["np_rng"][2:] == tree["np_rng"][2:]
    assert back["int_keys"][0]["step"].item() == 3.0 and back["int_keys"][1] == [1, 2]
    assert back["dollar"] == {"$tuple": 1}
    assert type(back["scalars"][0]) is np.float32 and back["scalars"][0] == np.float32(0.1)
    assert type(back["scalars"][1]) is np.int64
    assert back["scalars"][2:] == tree["scalars"][2:]
    assert back["tuple"] == (1, "a", (2.5,))


def _zip(members: dict[str, bytes], compress: int = zipfile.ZIP_STORED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=compress) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _pickled_npy(marker: Path) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.array([Payload(marker)], dtype=object), allow_pickle=True)
    return buf.getvalue()


def _bad_state_files(marker: Path) -> dict[str, bytes]:
    """Crafted state files: pickles, pickled arrays, foreign members, bombs, bad references."""
    head = json.dumps({"format": FORMAT, "tree": {"$ndarray": "a0"}}).encode()
    return {
        "a pickle": pickle.dumps(Payload(marker)),
        "a torch.save pickle": _torch_pickle(marker),
        "an object .npy member": _zip({"state.json": head, "arrays/a0.npy": _pickled_npy(marker)}),
        "a foreign member": _zip({"state.json": head, "data.pkl": pickle.dumps(Payload(marker))}),
        "a compressed member": _zip({"state.json": head, "arrays/a0.npy": b"\0" * 10_000}, zipfile.ZIP_DEFLATED),
        "a missing array": _zip({"state.json": head}),
        "another format": _zip({"state.json": json.dumps({"format": "x", "tree": 1}).encode()}),
        "bad JSON": _zip({"state.json": b"{not json"}),
        "deep JSON": _zip({"state.json": b'{"format": "%s", "tree": %s1%s}' % (FORMAT.encode(), b"[" * 100_000, b"]" * 100_000)}),
    }


def _torch_pickle(marker: Path) -> bytes:
    buf = io.BytesIO()
    torch.save({"x": Payload(marker)}, buf)
    return buf.getvalue()


def test_crafted_state_files_are_refused_and_never_run(tmp_path: Path) -> None:
    marker = tmp_path / "PWNED"
    for what, data in _bad_state_files(marker).items():
        path = tmp_path / "checkpoint.zip"
        path.write_bytes(data)
        with pytest.raises(CimcError) as info:
            load_state(path, "search checkpoint")
        assert str(path) in info.value.message and "\n" not in info.value.message, what
        assert not marker.exists(), f"{what}: the payload ran"


def _tiny_search(out: Path, *, resume: bool, episodes: int = 4):
    from cimc.target import LayerDesc
    from cimc.target.hw import Hardware
    from cimc.rl.env import layer_info_from_desc
    from cimc.rl.search import ClosedFormCost, EnvSpec, run_search

    descs = [LayerDesc(*d) for d in DESCS]
    spec = EnvSpec(tuple(layer_info_from_desc(d, i) for i, d in enumerate(descs)))
    return run_search(_config(episodes, 2), spec, ClosedFormCost(descs, Hardware()), lambda p: 90.0,
                      out, resume=resume, progress=False)


def test_resume_refuses_crafted_and_legacy_checkpoints_without_running_them(tmp_path: Path) -> None:
    marker = tmp_path / "PWNED"
    for name, data, needle in (("checkpoint.zip", pickle.dumps(Payload(marker)), "not a cimc state file"),
                               ("checkpoint.pt", _torch_pickle(marker), "older cimc")):
        out = tmp_path / name.replace(".", "_")
        out.mkdir()
        (out / name).write_bytes(data)
        with pytest.raises(CimcError, match=needle):
            _tiny_search(out, resume=True)
        assert not marker.exists()


def test_damaged_checkpoint_payload_is_one_line(tmp_path: Path) -> None:
    """A well-formed state file with the wrong content: one line, not a KeyError."""
    _tiny_search(tmp_path, resume=False)
    ck = load_state(tmp_path / "checkpoint.zip")
    del ck["agent"]["buffer"]
    (tmp_path / "checkpoint.zip").write_bytes(dumps_state(ck))
    with pytest.raises(CimcError, match="damaged search checkpoint"):
        _tiny_search(tmp_path, resume=True)


# -- kill at random moments ------------------------------------------------------------------------


def _count_lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def _run_and_kill(script: Path, out: Path, mode: str, rng: random.Random, done: int) -> bool:
    """Start the search; SIGKILL it at a random moment after a random number of new episodes.

    Returns True when it was killed, False when it finished first."""
    proc = subprocess.Popen([sys.executable, str(script), str(out), mode],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    target = done + rng.randint(0, 6)
    deadline = time.monotonic() + 120
    while proc.poll() is None and _count_lines(out / "episodes.jsonl") < target:
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("search made no progress")
        time.sleep(0.002)
    time.sleep(rng.uniform(0.0, 0.05))
    if proc.poll() is not None:
        assert proc.returncode == 0, proc.stderr.read().decode() if proc.stderr else ""
        return False
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    if proc.stderr:
        proc.stderr.close()
    return True


@pytest.mark.slow
def test_sigkill_at_random_moments_five_times_gives_the_uninterrupted_episodes(tmp_path: Path) -> None:
    cfg = _config(episodes=40, warmup=6)
    script = _script(tmp_path, cfg)
    subprocess.run([sys.executable, str(script), str(tmp_path / "full"), "fresh"], check=True, timeout=300)
    full = _strip(read_episodes(tmp_path / "full" / "episodes.jsonl"))
    assert len(full) == 40

    rng = random.Random(20240)
    out = tmp_path / "killed"
    kills, mode = 0, "fresh"
    for _ in range(20):
        if kills == 5:
            break
        if _run_and_kill(script, out, mode, rng, _count_lines(out / "episodes.jsonl")):
            kills += 1
        mode = "resume" if (out / "checkpoint.zip").exists() else "fresh"
    assert kills == 5
    subprocess.run([sys.executable, str(script), str(out), mode], check=True, timeout=300,
                   capture_output=True)
    resumed = _strip(read_episodes(out / "episodes.jsonl"))
    assert [r["episode"] for r in resumed] == list(range(40))
    assert resumed == full
    assert np.load(out / "best_policy.npy").tolist() == np.load(tmp_path / "full" / "best_policy.npy").tolist()
