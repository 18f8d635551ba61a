"""``cimc report``: the per-layer crossbar cost of a model, from its compiled xbar program.

Wire it into the CLI with ``from cimc.report_cli import register; register(app)``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from cimc.cli_util import atomic_output, console
from cimc.loaders import load_energy, load_hardware, load_model

EnergyOpt = Annotated[
    Optional[str],
    typer.Option("--energy", help="Energy preset: a built-in name (isaac-puma-32nm, the default; "
                 "neurosim-22nm) or a YAML file."),
]


def report_command(
    model: Annotated[Path, typer.Argument(help="model.onnx (QCDQ) or model.mlir")],
    hw: Annotated[
        Optional[Path], typer.Option("--hw", help="Hardware description (YAML, cimc or CIM-AQ layout).")
    ] = None,
    hw_set: Annotated[
        Optional[str], typer.Option("--hw-set", help="Override hardware fields: rows=128,cell_bits=2.")
    ] = None,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Write the report as JSON.")] = None,
    plot: Annotated[Optional[Path], typer.Option("--plot", help="Plot bits and latency per layer (PNG).")] = None,
    opt: Annotated[
        bool, typer.Option("--opt/--no-opt", help="Cost the xbar-opt program (beyond the paper).")
    ] = False,
    baseline: Annotated[
        bool, typer.Option("--baseline/--no-baseline", help="Compare with the model at all-8/8.")
    ] = True,
    energy: EnergyOpt = None,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks of errors.")] = False,
) -> None:
    """Per crossbar layer: (m, n, P, H), bits, slices, tiles, writes, executes, latency, share,
    lossless ADC bits, energy by component; totals, energy-delay product and the speedup and
    energy saving over the same model at all-8/8."""
    from cimc.report import energy_table, plot_report, report_table, xbar_report

    hardware = load_hardware(hw, hw_set)
    preset = load_energy(energy)
    module = load_model(model)
    report = xbar_report(module, hardware, level="xbar-opt" if opt else "xbar", baseline=baseline,
                         energy=preset)
    report["model"] = str(model)
    out = console()
    out.print(report_table(report))
    out.print(energy_table(report))
    if json_out is not None:
        with atomic_output(json_out, "w") as fh:
            json.dump(report, fh, indent=2)  # type: ignore[arg-type]
        typer.echo(f"wrote {json_out}", err=True)
    if plot is not None:
        plot_report(report, plot)
        typer.echo(f"wrote {plot}", err=True)


def register(app: typer.Typer) -> None:
    """Add the ``report`` command to the ``cimc`` app."""
    app.command("report")(report_command)
