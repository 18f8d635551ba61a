"""Runs the lit + FileCheck tests under tests/filecheck as part of the pytest suite."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent / "filecheck"
BIN = Path(sys.executable).parent


def _lit_dirs() -> list[Path]:
    return sorted({p.parent for p in ROOT.rglob("*.mlir")})


@pytest.mark.parametrize("directory", _lit_dirs(), ids=lambda p: str(p.relative_to(ROOT)))
def test_lit(directory: Path) -> None:
    lit = BIN / "lit"
    if not lit.exists():
        lit = Path(shutil.which("lit") or "lit")
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    proc = subprocess.run(
        [str(lit), "-v", str(directory)], capture_output=True, text=True, env=env, timeout=600
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    assert "Passed" in proc.stdout or "PASS" in proc.stdout, proc.stdout
