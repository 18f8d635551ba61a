"""Loading what the commands take: a model (ONNX or IR file) and a hardware description.

Shared by ``cimc`` and its sub-commands (:mod:`cimc.cli`, :mod:`cimc.report_cli`), so that none
of them imports another. Heavy packages (onnx via the frontend, xDSL's parser) load on use.
"""

from __future__ import annotations

from pathlib import Path

from cimc.errors import InputFileError
from cimc.target.energy import EnergyPreset, load_preset
from cimc.target.hw import Hardware


def load_hardware(hw: Path | None, hw_set: str | None):
    """The hardware description from ``--hw`` and ``--hw-set`` (paper defaults otherwise)."""
    base = Hardware.from_yaml(hw) if hw is not None else Hardware()
    return base.with_overrides(hw_set) if hw_set else base


def load_energy(spec: str | Path | None) -> EnergyPreset:
    """The energy preset of ``--energy``: a built-in name or a YAML file (the default preset
    if None)."""
    return load_preset(spec)


def load_model(path: Path, *, weights: Path | None = None):
    """An ONNX file is imported; a ``.mlir`` file is parsed (weights from its sidecar)."""
    if not path.exists():
        raise InputFileError(f"{path}: file not found")
    if path.is_dir():
        raise InputFileError(f"{path}: is a directory, expected an .onnx or .mlir file")
    if path.suffix == ".mlir":
        from cimc.ir_io import read_module

        return read_module(path, weights)
    from cimc.frontend import import_onnx

    return import_onnx(path).module
