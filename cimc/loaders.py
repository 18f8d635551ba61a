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


def batch_axis_spec(values: list[str] | None) -> dict[str | None, int] | None:
    """``--batch-axis`` values (``AXIS`` for every input, ``NAME=AXIS`` for one; repeatable) as
    :func:`cimc.frontend.import_onnx` takes them (``None`` keys every input not named)."""
    if not values:
        return None
    spec: dict[str | None, int] = {}
    for value in values:
        name, _, axis = value.rpartition("=")
        key = name if "=" in value else None
        try:
            number = int(axis)
        except ValueError:
            raise InputFileError(f"--batch-axis '{value}': expected AXIS or NAME=AXIS with an "
                                 "integer AXIS") from None
        if key == "":
            raise InputFileError(f"--batch-axis '{value}': the input name is empty")
        if key in spec:
            what = f"input '{key}'" if key is not None else "every input (AXIS)"
            raise InputFileError(f"--batch-axis '{value}': {what} is given twice")
        spec[key] = number
    return spec


def load_model(path: Path, *, weights: Path | None = None, batch_axis: list[str] | None = None):
    """An ONNX file is imported; a ``.mlir`` file is parsed (weights from its sidecar).

    The file must be a regular file within the size limit of its kind (no device, fifo or
    directory), and the graph must compute something (a ``@main`` with at least one output).
    ``batch_axis``: the ``--batch-axis`` values (ONNX files only: an IR file keeps the axes it
    was imported with).
    """
    from cimc.safe_read import LIMITS, check_regular

    kind = "mlir" if path.suffix == ".mlir" else "onnx"
    spec = batch_axis_spec(batch_axis)
    if spec is not None and kind == "mlir":
        raise InputFileError(f"{path}: --batch-axis applies to ONNX files; an IR file keeps the "
                             "batch axes it was imported with")
    check_regular(path, "model file (.onnx or .mlir)", LIMITS[kind])
    if kind == "mlir":
        from cimc.ir_io import read_module

        module = read_module(path, weights)
    else:
        from cimc.frontend import import_onnx

        module = import_onnx(path, batch_axis=spec).module
    _check_graph(module, path)
    return module


def _check_graph(module, path: Path) -> None:
    from xdsl.dialects import func

    main = next((op for op in module.ops if isinstance(op, func.FuncOp) and op.sym_name.data == "main"), None)
    if main is None:
        raise InputFileError(f"{path}: the module has no func.func @main")
    if not main.function_type.outputs.data:
        raise InputFileError(f"{path}: the graph has no outputs; there is nothing to compute")


def preset_file(spec: str | None) -> Path | None:
    """The file behind an ``--energy`` / ``--noise`` option (None for a built-in preset name)."""
    return Path(spec) if spec is not None and Path(spec).is_file() else None


def model_inputs(model: Path, *others: Path | None) -> list[Path]:
    """The files a command reads for ``model`` (an .mlir's weights too) and its other options."""
    from cimc.weights import sidecar_path

    files = [model, *(p for p in others if p is not None)]
    if model.suffix == ".mlir":
        files.append(sidecar_path(model))
    return files
