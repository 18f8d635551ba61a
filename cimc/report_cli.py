"""``cimc report``: the per-layer crossbar cost of a model, from its compiled xbar program.

Wire it into the CLI with ``from cimc.report_cli import register; register(app)``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, List, Optional

import typer

from cimc.loaders import load_energy, load_hardware, load_model

EnergyOpt = Annotated[
    Optional[str],
    typer.Option("--energy", help="Energy preset: a built-in name (isaac-puma-32nm, the default; "
                 "neurosim-22nm) or a YAML file."),
]
BatchAxisOpt = Annotated[
    Optional[List[str]],
    typer.Option("--batch-axis", metavar="[NAME=]AXIS",
                 help="ONNX inputs' batch axis: AXIS for every input or NAME=AXIS for one (repeatable), "
                 "e.g. 1 for [tokens, batch, dim]. Default: a symbolic dim, else axis 0."),
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
    stream: Annotated[
        int, typer.Option("--stream", min=1, help="Inputs of the stream the chip's throughput is for.")
    ] = 1,
    batch: Annotated[
        int, typer.Option("--batch", min=1, help="Inputs per run (tiles programmed once per run after xbar-batch-amortise).")
    ] = 1,
    schedule_out: Annotated[
        Optional[Path], typer.Option("--schedule", help="Write the chip schedule (every array's writes and computes) as JSON.")
    ] = None,
    gantt: Annotated[
        Optional[Path], typer.Option("--gantt", help="Draw the chip schedule: arrays x time, coloured by layer (PNG).")
    ] = None,
    waterfall: Annotated[
        Optional[Path], typer.Option("--waterfall", help="With --opt: each optimisation's contribution as a waterfall (PNG).")
    ] = None,
    energy: EnergyOpt = None,
    batch_axis: BatchAxisOpt = None,
    strict: Annotated[
        bool, typer.Option("--strict", help="Refuse a model with host layers (a Conv/Gemm/MatMul that does not map to crossbars).")
    ] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks of errors.")] = False,
) -> None:
    """Per crossbar layer: (m, n, P, H), bits, slices, tiles, writes, executes, latency, share,
    lossless ADC bits, energy by component; totals, energy-delay product and the speedup and
    energy saving over the same model at all-8/8."""
    from cimc.cli_util import print_table
    from cimc.loaders import model_inputs, preset_file
    from cimc.report import energy_table, plot_report, report_table, xbar_report
    from cimc.safe_write import OutputSet

    outs = OutputSet(model_inputs(model, hw, preset_file(energy)))
    for path, what in ((json_out, "--json"), (plot, "--plot"), (schedule_out, "--schedule"), (gantt, "--gantt"),
                       (waterfall, "--waterfall")):
        if path is not None:
            outs.plan(path, what)
    hardware = load_hardware(hw, hw_set)
    preset = load_energy(energy)
    module = load_model(model, batch_axis=batch_axis)
    level = "xbar-opt" if opt else "xbar"
    report = xbar_report(module, hardware, level=level, baseline=baseline, stream=stream, batch=batch,
                         energy=preset, strict=strict)
    report["model"] = str(model)
    for line in report["warnings"]:
        typer.echo(line, err=True)
    print_table(report_table(report))
    print_table(energy_table(report))
    steps = report.get("optimisations")
    if steps is not None:
        from cimc.chip_report import steps_table

        print_table(steps_table(steps, f"{model.name}: each optimisation's contribution (static)"))
    if waterfall is not None:
        if steps is None:
            from cimc.errors import CimcError

            raise CimcError("--waterfall needs --opt (and a model below the xbar-opt level)")
        from cimc.chip_report import steps_waterfall

        title = f"{model.name}: from the paper's model to cimc's"
        outs.put(waterfall, steps_waterfall(steps, title, report["hardware"]), "--waterfall")
    if json_out is not None:
        outs.put(json_out, json.dumps(report, indent=2) + "\n", "--json")
    if plot is not None:
        outs.put(plot, plot_report(report), "--plot")
    if schedule_out is not None or gantt is not None:
        from cimc.chip_report import chip_schedule, gantt_png
        from cimc.report import compile_pair

        compiled, _ = compile_pair(module, level, hardware, baseline=False)
        sched = chip_schedule(compiled, hardware, batch=batch, stream=stream)
        if schedule_out is not None:
            payload = {"model": str(model), "level": level, **sched.as_dict()}
            outs.put(schedule_out, json.dumps(payload) + "\n", "--schedule")
        if gantt is not None:
            outs.put(gantt, gantt_png(sched, f"{model.name} at {level}"), "--gantt")
    for path in outs.commit():
        typer.echo(f"wrote {path}", err=True)


def register(app: typer.Typer) -> None:
    """Add the ``report`` command to the ``cimc`` app."""
    app.command("report")(report_command)
