"""cimc.safe_read: size limits before parsing, YAML alias bombs refused fast and small, .npy/.npz
without pickle, devices refused."""

from __future__ import annotations

import io
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from cimc.errors import CimcError
from cimc.safe_read import LIMITS, load_array, read_text, yaml_load


def alias_bomb(levels: int = 9, fan: int = 9, key: str = "rows") -> str:
    """The billion-laughs YAML: ``fan ** levels`` leaves from a few hundred bytes, under ``key``."""
    lines = ['a0: &a0 ["lol"]']
    for i in range(1, levels + 1):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * fan) + "]")
    lines.append(f"{key}: *a{levels}")
    return "\n".join(lines) + "\n"


def test_alias_bomb_refused_in_process() -> None:
    with pytest.raises(CimcError, match="expands to more than"):
        yaml_load(alias_bomb(), "bomb.yaml")


def test_small_aliases_are_fine() -> None:
    assert yaml_load("base: &b {rows: 128}\nother: *b\n", "ok.yaml") == {"base": {"rows": 128}, "other": {"rows": 128}}


def test_python_tags_are_not_constructed(tmp_path: Path) -> None:
    marker = tmp_path / "PWNED"
    text = f"rows: !!python/object/apply:os.system ['touch {marker}']\n"
    with pytest.raises(Exception) as info:
        yaml_load(text, "evil.yaml")
    assert "python/object" in str(info.value)
    assert not marker.exists()


def test_alias_bomb_hardware_file_under_a_second_and_100_mb(tmp_path: Path) -> None:
    """The whole ``cimc report --hw bomb.yaml`` command: one line, < 1 s, < 100 MB extra memory."""
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(alias_bomb(key="rows"))
    code = (
        "import resource, sys, time\n"
        "from cimc.target.hw import Hardware\n"
        "from cimc.errors import CimcError\n"
        "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "t = time.perf_counter()\n"
        "try:\n"
        f"    Hardware.from_yaml({str(bomb)!r})\n"
        "except CimcError as exc:\n"
        "    msg = exc.message\n"
        "dt = time.perf_counter() - t\n"
        "grow = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base\n"
        "print(f'{dt:.3f} {grow} {msg}')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    dt, grow_kb, msg = out.stdout.strip().split(" ", 2)
    assert float(dt) < 1.0
    assert int(grow_kb) < 100 * 1024
    assert "expands to more than" in msg and str(bomb) in msg


def test_big_yaml_refused_by_size_before_parsing(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_text("rows: 128\n" + "# pad\n" * (LIMITS["yaml"] // 6 + 10))
    t = time.perf_counter()
    from cimc.target.hw import Hardware

    with pytest.raises(CimcError, match="more than the 1.0 MiB"):
        Hardware.from_yaml(big)
    assert time.perf_counter() - t < 1.0


def test_devices_and_directories_are_not_read(tmp_path: Path) -> None:
    with pytest.raises(CimcError, match="not a regular file"):
        read_text("/dev/zero", "hardware file", 100)
    with pytest.raises(CimcError, match="is a directory"):
        read_text(tmp_path, "hardware file", 100)


def test_npy_never_unpickles(tmp_path: Path) -> None:
    p = tmp_path / "x.npy"
    np.save(p, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(CimcError, match="not a .npy"):
        load_array(p, "input")


def test_npz_bomb_refused_by_declared_size(tmp_path: Path, monkeypatch) -> None:
    p = tmp_path / "x.npz"
    buf = io.BytesIO()
    np.save(buf, np.zeros(2_000_000, dtype=np.uint8))
    with zipfile.ZipFile(p, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("x.npy", buf.getvalue())
    assert p.stat().st_size < 50_000
    with pytest.raises(CimcError, match="expands to"):
        load_array(p, "input", limit=1_000_000)
