"""Run import-linter on cimc as installed: one ``cimc`` tree assembled from ``package-dir``.

cimc keeps ``dialects/``, ``passes/`` and ``rl/`` at the repository root and installs them as
``cimc.dialects``, ``cimc.passes`` and ``cimc.rl`` (``[tool.setuptools] package-dir`` in
pyproject.toml). import-linter (grimp) finds a package's modules by walking the folder of its
``__init__.py``, so it cannot see sub-packages mapped from other folders. This script copies the
Python sources into a temporary tree laid out as installed and runs ``lint-imports`` with that
tree first on ``PYTHONPATH``; the contracts stay in pyproject.toml. Exit code: lint-imports'.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def stage(dest: Path) -> None:
    """Copy every mapped package folder's ``.py`` files to ``dest`` in the installed layout."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    mapping: dict[str, str] = config["package-dir"]
    for package, folder in sorted(mapping.items(), key=lambda kv: kv[0].count(".")):
        src = ROOT / folder
        dst = dest.joinpath(*package.split("."))
        for path in src.rglob("*.py"):
            rel = path.relative_to(src)
            if "__pycache__" in rel.parts:
                continue
            target = dst / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)


def main() -> int:
    lint = Path(sys.executable).with_name("lint-imports")
    with tempfile.TemporaryDirectory(prefix="cimc-lint-") as tmp:
        stage(Path(tmp))
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [tmp, os.environ.get("PYTHONPATH")])))
        return subprocess.call([str(lint), "--config", str(ROOT / "pyproject.toml"), "--no-cache"],
                               cwd=tmp, env=env)


if __name__ == "__main__":
    raise SystemExit(main())
