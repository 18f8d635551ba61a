"""The header every preset file shares (energy and noise presets): ``name``, ``description``,
``parameters``; errors are one line naming the file and the key, of the caller's error type."""

from __future__ import annotations

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
