"""``cimc``: compile ONNX QCDQ models to crossbars, run them at any IR level, report their cost.

Heavy modules (onnx, numba, torch) are imported inside the commands so ``cimc --help`` is fast.
Every user error is one line on stderr and a non-zero exit; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from cimc.cli_util import atomic_output, run_guarded
from cimc.errors import CimcError, InputFileError

app = typer.Typer(
    name="cimc",
    help="Mixed-precision compiler and bit-serial simulator for RRAM CIM crossbars.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

DebugOpt = Annotated[bool, typer.Option("--debug", help="Show tracebacks of errors.")]
HwOpt = Annotated[
    Optional[Path], typer.Option("--hw", help="Hardware description (YAML, cimc or CIM-AQ layout).")
]
HwSetOpt = Annotated[
    Optional[str], typer.Option("--hw-set", help="Override hardware fields: rows=128,cell_bits=2.")
]


def load_hardware(hw: Path | None, hw_set: str | None):
    """The hardware description from ``--hw`` and ``--hw-set`` (paper defaults otherwise)."""
    from cimc.hw import Hardware

    base = Hardware.from_yaml(hw) if hw is not None else Hardware()
    return base.with_overrides(hw_set) if hw_set else base


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


@app.callback()
def _main(debug: DebugOpt = False) -> None:
    """cimc: mixed-precision compiler, simulator and cost model for RRAM crossbars."""


@app.command("levels")
def levels_cmd() -> None:
    """List the IR levels ``--to``/``--level`` accept, in lowering order."""
    from cimc.pipeline import levels

    for name, doc in levels():
        typer.echo(f"{name:14s} {doc}")


@app.command("lower")
def lower_cmd(
    model: Annotated[Path, typer.Argument(help="model.onnx (QCDQ) or model.mlir")],
    to: Annotated[str, typer.Option("--to", help="Target IR level (see `cimc levels`).")] = "cimq",
    output: Annotated[
        Optional[Path], typer.Option("-o", "--output", help="Write the IR here (weights beside it).")
    ] = None,
    print_between: Annotated[
        bool, typer.Option("--print-between-passes", help="Print the IR after every pass.")
    ] = False,
    generic: Annotated[bool, typer.Option("--generic", help="Print generic op syntax.")] = False,
    hw: HwOpt = None,
    hw_set: HwSetOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Import a model and lower it to an IR level; print the IR or write it with -o."""
    from cimc.ir_io import module_text, write_module
    from cimc.pipeline import check_level, lower

    check_level(to)
    hardware = load_hardware(hw, hw_set) if (hw or hw_set or to.startswith("xbar")) else None
    module = load_model(model)
    lower(module, to, hw=hardware, print_between=print_between, stream=sys.stderr)
    if output is None:
        sys.stdout.write(module_text(module, generic=generic))
        return
    side = write_module(module, output, generic=generic)
    extra = f" (weights: {side})" if side else ""
    typer.echo(f"wrote {output}{extra}", err=True)


def _load_inputs(path: Path | None, module, batch: int, seed: int):
    import numpy as np

    from cimc.exec.cimq_exec import find_main

    main = find_main(module)
    if path is not None:
        if not path.is_file():
            raise InputFileError(f"{path}: input file not found")
        try:
            data = np.load(path, allow_pickle=False)
        except Exception as exc:
            raise InputFileError(f"{path}: not a .npy/.npz array file ({exc})") from None
        if hasattr(data, "files"):
            return [data[k] for k in data.files]
        return [data]
    rng = np.random.default_rng(seed)
    arrays = []
    for t in main.function_type.inputs.data:
        shape = [batch if i == 0 else d for i, d in enumerate(t.get_shape())]
        arrays.append(rng.standard_normal(shape).astype(np.float32))
    return arrays


@app.command("run")
def run_cmd(
    model: Annotated[Path, typer.Argument(help="model.onnx (QCDQ) or model.mlir")],
    level: Annotated[str, typer.Option("--level", help="IR level to execute.")] = "cimq",
    input: Annotated[
        Optional[Path], typer.Option("--input", help=".npy input (random seeded input if absent).")
    ] = None,
    output: Annotated[Optional[Path], typer.Option("--output", help="Write the output .npy here.")] = None,
    batch: Annotated[int, typer.Option("--batch", min=1, help="Batch of the random input.")] = 1,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the random input.")] = 0,
    hw: HwOpt = None,
    hw_set: HwSetOpt = None,
    report: Annotated[
        Optional[Path], typer.Option("--report", help="Write counters and outputs summary as JSON.")
    ] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress")] = True,
    debug: DebugOpt = False,
) -> None:
    """Run a model at an IR level on an input and print a summary (and counters at xbar)."""
    import numpy as np

    from cimc.exec import run_at_level
    from cimc.pipeline import check_level

    check_level(level)
    hardware = load_hardware(hw, hw_set) if (hw or hw_set or level.startswith("xbar")) else None
    module = load_model(model)
    inputs = _load_inputs(input, module, batch, seed)
    result = run_at_level(module, level, inputs, hw=hardware, progress=progress)
    outs = result.outputs
    if output is not None:
        with atomic_output(output, "wb") as fh:
            np.save(fh, outs[0] if len(outs) == 1 else np.stack(outs), allow_pickle=False)
    from rich.console import Console
    from rich.table import Table

    console = Console(stderr=False)
    table = Table(title=f"cimc run --level {level}")
    for col in ("output", "shape", "dtype", "top-1 (first 8)"):
        table.add_column(col)
    for i, o in enumerate(outs):
        top = o.reshape(o.shape[0], -1).argmax(axis=1)[:8].tolist() if o.ndim >= 1 and o.size else []
        table.add_row(str(i), str(list(o.shape)), str(o.dtype), str(top))
    console.print(table)
    if result.counters_table is not None:
        console.print(result.counters_table)
    if report is not None:
        payload = {"level": level, "outputs": [list(o.shape) for o in outs], **result.report}
        with atomic_output(report, "w") as fh:
            json.dump(payload, fh, indent=2)  # type: ignore[arg-type]


def _register_commands() -> None:
    from cimc.report_cli import register

    register(app)


_register_commands()


def main() -> None:
    """Console entry point."""
    raise SystemExit(run_guarded(lambda: app(standalone_mode=True)))


if __name__ == "__main__":
    main()
