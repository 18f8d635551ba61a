"""The installed layout: the card's root folders map into the one ``cimc`` namespace."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _setuptools() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_root_folders_install_under_cimc():
    mapping = _setuptools()["package-dir"]
    assert mapping == {"cimc": "cimc", "cimc.dialects": "dialects", "cimc.passes": "passes", "cimc.rl": "rl"}
    for folder in mapping.values():
        assert (ROOT / folder / "__init__.py").is_file(), folder


def test_every_package_folder_is_installed():
    """A sub-package missing from ``packages`` would be left out of a non-editable install."""
    cfg = _setuptools()
    found = set()
    for package, folder in cfg["package-dir"].items():
        base = ROOT / folder
        for init in base.rglob("__init__.py"):
            rel = init.parent.relative_to(base)
            if "__pycache__" not in rel.parts:
                found.add(".".join([package, *rel.parts]))
    assert found == set(cfg["packages"])


def test_installed_modules_come_from_the_root_folders():
    import cimc.dialects
    import cimc.passes
    import cimc.rl

    for mod, folder in ((cimc.dialects, "dialects"), (cimc.passes, "passes"), (cimc.rl, "rl")):
        assert Path(mod.__file__).resolve().parent == (ROOT / folder).resolve()


def test_preset_files_are_package_data():
    """Every preset YAML under cimc/target/presets is matched by the package-data globs (a
    non-editable install would otherwise leave it out)."""
    import fnmatch

    globs = _setuptools()["package-data"]["cimc.target"]
    base = ROOT / "cimc" / "target"
    presets = [p.relative_to(base).as_posix() for p in (base / "presets").rglob("*") if p.is_file()]
    assert presets
    for rel in presets:
        assert any(fnmatch.fnmatch(rel, g) for g in globs), rel
