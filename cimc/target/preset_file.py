"""The header every preset file shares (energy and noise presets): ``name``, ``description``,
``parameters``; errors are one line naming the file and the key, of the caller's error type."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from cimc.errors import CimcError


def preset_header(data: Any, where: str, error: type[CimcError]) -> tuple[str, str, Any]:
    """``(name, description, parameters)`` of a parsed preset mapping, checked; ``parameters`` is
    returned as given (each preset kind checks its own)."""
    if not isinstance(data, dict):
        raise error(f"{where}: expected a mapping with name and parameters, got {type(data).__name__}")
    for key in data:
        if key not in ("name", "description", "parameters"):
            raise error(f"{where}: key '{key}': unknown key (known: name, description, parameters)")
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        raise error(f"{where}: key 'name': missing or not a string")
    description = data.get("description", "")
    if not isinstance(description, str):
        raise error(f"{where}: key 'description': {description!r} is not a string")
    return name, description, data.get("parameters")


def read_preset(spec: str, kind: str, builtins: list[str], folder: tuple[str, ...],
                error: type[CimcError]) -> tuple[Any, str]:
    """``(parsed YAML, where)`` of a built-in preset by name (package data under
    ``cimc.target/<folder>``) or a user's YAML file by path: read like every other input
    (regular file, size limit, YAML aliases limited: :mod:`cimc.safe_read`); errors one line of
    type ``error`` naming the file."""
    from importlib.resources import files

    import yaml

    from cimc.errors import InputFileError
    from cimc.safe_read import LIMITS, read_text, yaml_load

    if Path(spec).suffix in (".yaml", ".yml") or os.sep in spec or Path(spec).exists():
        where = spec
        if not Path(spec).exists():
            raise error(f"{where}: {kind} preset file not found")
        try:
            text = read_text(spec, f"{kind} preset", LIMITS["yaml"])
        except InputFileError as exc:
            raise error(f"{where}: cannot read {kind} preset ({exc.message})") from None
    else:
        if spec not in builtins:
            raise error(f"unknown {kind} preset '{spec}' (built in: {', '.join(builtins)}; "
                        "or give a .yaml file)")
        where = f"{spec} (built-in {kind} preset)"
        text = files("cimc.target").joinpath(*folder, f"{spec}.yaml").read_text()
    try:
        return yaml_load(text, where), where
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise error(f"{where}: invalid YAML{at}: {getattr(exc, 'problem', None) or exc}") from None
    except InputFileError as exc:
        raise error(exc.message) from None
