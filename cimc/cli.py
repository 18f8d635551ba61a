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

from cimc import report_cli
from cimc.cli_util import print_table, run_app
from cimc.errors import CimcError
from cimc.loaders import load_energy, load_hardware, load_model, model_inputs, preset_file
from cimc.report_cli import BatchAxisOpt, EnergyOpt

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
StrictOpt = Annotated[
    bool, typer.Option("--strict", help="Refuse a model with host layers (a Conv/Gemm/MatMul that does not "
                       "map to crossbars runs on the host otherwise, with a warning).")
]


def _host_check(module, strict: bool) -> None:
    """One warning line per host layer of ``module`` on stderr; ``--strict``: an error instead."""
    from cimc.analysis import host_warnings

    for line in host_warnings(module, strict=strict):
        typer.echo(line, err=True)


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
    strict: StrictOpt = False,
    batch_axis: BatchAxisOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Import a model and lower it to an IR level; print the IR or write it with -o."""
    from cimc.ir_io import module_text, write_module
    from cimc.pipeline import check_level, lower
    from cimc.safe_write import OutputSet
    from cimc.weights import sidecar_path

    check_level(to)
    outs = OutputSet(model_inputs(model, hw))
    if output is not None:
        outs.plan(output, "-o")
        if not outs.passthrough(output):
            outs.plan(sidecar_path(output), "the weights of -o")
    hardware = load_hardware(hw, hw_set) if (hw or hw_set or to.startswith("xbar")) else None
    module = load_model(model, batch_axis=batch_axis)
    lower(module, to, hw=hardware, print_between=print_between, stream=sys.stderr)
    _host_check(module, strict)
    if output is None:
        sys.stdout.write(module_text(module, generic=generic))
        return
    side = write_module(module, output, generic=generic, outputs=outs)
    outs.commit()
    extra = f" (weights: {side})" if side else ""
    typer.echo(f"wrote {output}{extra}", err=True)


def _run_module(module, level: str, inputs, hw, *, fast: bool | None, progress: bool, compare: bool,
                strict: bool = False, noise=None, seeds=(0,), labels=None, samples=None):
    """Run at ``level`` (host layers warned about, or refused with ``strict``); xbar levels go
    through :func:`cimc.exec.xbar_exec.run_xbar` with ``fast``, with ``compare`` also lossless
    (:func:`compare_lossy`), with ``noise`` once ideal and once per seed on the device
    (:func:`cimc.exec.noise_runs.compare_noise`). Returns the result (with noise: of the first
    seed) and the comparison (or None)."""
    from cimc.exec import RunResult, lowered_copy, run_at_level

    prog = lowered_copy(module, level, hw=hw)
    _host_check(prog, strict)
    if noise is not None:
        from cimc.exec.noise_runs import compare_noise

        cmp = compare_noise(prog, inputs, hw, noise, seeds, labels=labels, samples=samples)
        return cmp.pop("result"), cmp
    if not compare:
        return run_at_level(prog, level, inputs, hw=hw, progress=progress, fast=fast), None
    from cimc.exec.xbar_exec import compare_lossy, counters_table

    cmp = compare_lossy(prog, inputs, hw, fast=fast)
    rep = cmp.pop("lossy_report")
    return RunResult(cmp["lossy_outputs"], rep, counters_table(rep)), cmp


NoiseOpt = Annotated[
    Optional[str],
    typer.Option("--noise", help="xbar levels: run on an imperfect device, a noise preset (rram-moderate, "
                 "rram-severe, ideal) or a YAML file; reports each layer's error against the ideal run."),
]


def _device_options(level: str, fast, compare_lossless: bool, energy, noise, noise_set, repeat: int):
    """Check ``--energy`` / ``--noise`` of ``cimc run``; returns (energy preset, noise model)."""
    on_xbar = level.startswith("xbar")
    if energy is not None and not on_xbar:
        raise CimcError(f"--energy applies to xbar levels, not --level {level}")
    if (noise_set is not None or repeat != 1) and noise is None:
        raise CimcError("--noise-set and --repeat need --noise")
    model = None
    if noise is not None:
        if level not in ("xbar", "xbar-opt"):
            raise CimcError(f"--noise needs --level xbar or xbar-opt (the crossbar loops), not {level}")
        if fast or compare_lossless:
            raise CimcError("--noise runs bit-serially; it does not combine with --fast or --compare-lossless")
        from cimc.target.noise import load_noise

        model = load_noise(noise)
        model = model.with_overrides(noise_set) if noise_set else model
    return (load_energy(energy) if on_xbar else None), model


@app.command("run")
def run_cmd(
    model: Annotated[Path, typer.Argument(help="model.onnx (QCDQ) or model.mlir")],
    level: Annotated[str, typer.Option("--level", help="IR level to execute.")] = "cimq",
    input: Annotated[
        Optional[Path], typer.Option("--input", help=".npy input (random seeded input if absent).")
    ] = None,
    output: Annotated[Optional[Path], typer.Option("--output", help="Write the output .npy here.")] = None,
    batch: Annotated[Optional[int], typer.Option(
        "--batch", min=1, help="Batch of the random input (default 1; a model typed at one batch: that one).")] = None,
    seed: Annotated[int, typer.Option(
        "--seed", help="Seed of the random input and of the device noise (--noise).")] = 0,
    hw: HwOpt = None,
    hw_set: HwSetOpt = None,
    report: Annotated[
        Optional[Path], typer.Option("--report", help="Write counters and outputs summary as JSON.")
    ] = None,
    fast: Annotated[
        Optional[bool],
        typer.Option(
            "--fast/--bit-serial",
            help="xbar levels: exact one-step layers (same outputs and counters) or the bit-serial "
            "crossbar loops. Default: fast where the ADC is lossless, bit-serial elsewhere.",
        ),
    ] = None,
    labels: Annotated[
        Optional[Path], typer.Option("--labels", help=".npy integer labels: print top-1 accuracy.")
    ] = None,
    compare_lossless: Annotated[
        bool,
        typer.Option(
            "--compare-lossless",
            help="xbar levels with a lossy ADC (--hw-set adc_bits=6): also run lossless and report "
            "per-layer ADC saturations, output error and top-1 changes.",
        ),
    ] = False,
    allow_nonfinite: Annotated[
        bool,
        typer.Option(
            "--allow-nonfinite",
            help="Accept NaN/inf in --input: NaN is fed as 0 and +-inf as the largest float32 of that "
            "sign, so the input quantizer saturates them (refused without this flag).",
        ),
    ] = False,
    progress: Annotated[
        Optional[bool], typer.Option("--progress/--no-progress", help="Progress bar (default: on a terminal).")
    ] = None,
    schedule_out: Annotated[
        Optional[Path], typer.Option("--schedule", help="xbar levels: write the chip schedule of this run (JSON).")
    ] = None,
    gantt: Annotated[
        Optional[Path], typer.Option("--gantt", help="xbar levels: draw the chip schedule of this run (PNG).")
    ] = None,
    waterfall: Annotated[
        Optional[Path], typer.Option("--waterfall", help="--level xbar-opt: each optimisation's contribution (PNG).")
    ] = None,
    strict: StrictOpt = False,
    batch_axis: BatchAxisOpt = None,
    energy: EnergyOpt = None,
    noise: NoiseOpt = None,
    noise_set: Annotated[Optional[str], typer.Option(
        "--noise-set", help="Override noise parameters: programming_sigma=0.1,read_sigma=0.")] = None,
    repeat: Annotated[int, typer.Option(
        "--repeat", min=1, help="With --noise: runs with seeds S..S+N-1, to see the spread.")] = 1,
    debug: DebugOpt = False,
) -> None:
    """Run a model at an IR level on an input and print a summary (and counters, energy and
    energy-delay product at xbar; at xbar-opt each optimisation's contribution, measured; with
    --noise the error of each layer against the ideal run)."""
    from cimc.pipeline import check_level
    from cimc.safe_write import OutputSet

    check_level(level)
    on_xbar = level.startswith("xbar")
    if fast is not None and not on_xbar:
        raise CimcError(f"--fast/--bit-serial apply to xbar levels, not --level {level}")
    if (schedule_out or gantt or waterfall) and not on_xbar:
        raise CimcError("--schedule, --gantt and --waterfall apply to xbar levels")
    if waterfall is not None and level != "xbar-opt":
        raise CimcError("--waterfall needs --level xbar-opt")
    outs = OutputSet(model_inputs(model, hw, input, labels, preset_file(energy), preset_file(noise)))
    for path, what in ((output, "--output"), (report, "--report"), (schedule_out, "--schedule"),
                       (gantt, "--gantt"), (waterfall, "--waterfall")):
        if path is not None:
            outs.plan(path, what)
    hardware = load_hardware(hw, hw_set) if (hw or hw_set or on_xbar) else None
    if compare_lossless and (not on_xbar or hardware is None or hardware.lossless):
        raise CimcError("--compare-lossless needs an xbar level and a lossy ADC (e.g. --hw-set adc_bits=6)")
    if fast and hardware is not None and not hardware.lossless:
        raise CimcError(f"--fast needs a lossless ADC (adc_bits={hardware.adc_bits}); use --bit-serial")
    preset, noise_model = _device_options(level, fast, compare_lossless, energy, noise, noise_set, repeat)
    module = load_model(model, batch_axis=batch_axis)
    inputs, y, names, samples = _run_inputs(module, input, labels, batch, seed, allow_nonfinite, output)
    show = sys.stderr.isatty() if progress is None else progress
    result, cmp = _run_module(module, level, inputs, hardware, fast=fast, progress=show, compare=compare_lossless,
                              strict=strict, noise=noise_model, seeds=range(seed, seed + repeat), labels=y,
                              samples=samples)
    if preset is not None and result.report:
        from cimc.exec.xbar_exec import add_energy

        add_energy(result.report, hardware, preset)
    extra = _print_run(level, result, cmp if noise_model is None else None, y, samples)
    if noise_model is not None:
        extra["noise"] = _noise_summary(cmp)
        print_table(_noise_table(extra["noise"]))
    if on_xbar:
        extra.update(_chip(outs, model, module, level, result, hardware, (schedule_out, gantt, waterfall)))
    _write_run(outs, output, report, level, result, extra, names)


def _run_inputs(module, input: Path | None, labels: Path | None, batch: int | None, seed: int,
                allow_nonfinite: bool, output: Path | None):
    """The checked inputs (and labels) of ``cimc run``; refuses what cannot run before it runs."""
    from cimc.analysis import batch_axes
    from cimc.exec.cimq_exec import check_inputs, find_main
    from cimc.run_inputs import check_memory, classes_of, load_inputs, load_labels, output_names, random_batch

    main = find_main(module)
    names = output_names(main)
    if output is not None and len(names) > 1 and output.suffix != ".npz":
        raise CimcError(f"--output: the model has {len(names)} outputs ({', '.join(names)}); "
                        "give an .npz file to get one array per output")
    axes = batch_axes(module)
    if input is None:
        batch = random_batch(module, main, batch)
        check_memory(module, batch, "--batch")
    inputs = check_inputs(main, load_inputs(input, main, batch or 1, seed, allow_nonfinite=allow_nonfinite))
    axis = axes[0] if axes else 0
    n = int(inputs[0].shape[axis]) if inputs and inputs[0].ndim > axis else 1
    if input is not None:
        check_memory(module, n, str(input))
    y = load_labels(labels, n, classes_of(main)) if labels is not None else None
    return inputs, y, names, (n, axis)


def _print_run(level: str, result, cmp, y, samples) -> dict:
    """Print the run's tables; returns the extra JSON fields (accuracy, comparison).
    ``samples``: the number of inputs and their batch axis (:mod:`cimc.exec.predict`)."""
    from rich.table import Table

    from cimc.exec.predict import accuracy, top1

    outs = result.outputs
    table = Table(title=f"cimc run --level {level}")
    for col in ("output", "shape", "dtype", "top-1 (first 8)"):
        table.add_column(col)
    for i, o in enumerate(outs):
        top = top1(o, *samples) if o.size else None
        table.add_row(str(i), str(list(o.shape)), str(o.dtype), "-" if top is None else str(top[:8].tolist()))
    extra: dict = {}
    if y is not None:
        acc = accuracy(outs[0], y, samples[1])
        extra["accuracy_top1"] = acc
        table.caption = f"top-1 accuracy {acc:.2f}% ({int(round(acc * len(y) / 100))}/{len(y)})"
    print_table(table)
    if result.counters_table is not None:
        print_table(result.counters_table)
    if "energy" in result.report:
        from cimc.report import energy_table

        print_table(energy_table(result.report))
    if cmp is not None:
        extra["compare_lossless"] = _comparison(cmp, y, samples)
        print_table(_comparison_table(extra["compare_lossless"]))
    return extra


def _write_run(outs, output: Path | None, report: Path | None, level: str, result, extra: dict,
               names: list[str]) -> None:
    """``--output`` and ``--report``, all or nothing; says what it wrote."""
    import io

    import numpy as np

    arrays = result.outputs
    if output is not None:
        buf = io.BytesIO()
        if output.suffix == ".npz":
            np.savez(buf, **dict(zip(names, arrays)))
        else:
            np.save(buf, arrays[0], allow_pickle=False)
        outs.put(output, buf.getvalue(), "--output")
    if report is not None:
        payload = {"level": level, "outputs": [list(o.shape) for o in arrays], **result.report, **extra}
        payload.pop("_layer_outputs", None)
        outs.put(report, json.dumps(payload, indent=2) + "\n", "--report")
    for path in outs.commit():
        typer.echo(f"wrote {path}", err=True)


def _chip(outs, model: Path, module, level: str, result, hw, paths) -> dict:
    """The chip's view of the run: printed, its JSON part returned, and the schedule, Gantt and
    waterfall put in ``outs`` (written with the other outputs, all or nothing)."""
    from cimc.chip_report import gantt_png, run_chip_report, steps_waterfall

    schedule_out, gantt, waterfall = paths
    part, sched, tables = run_chip_report(module, level, result.report, result.tile_cycles, hw)
    for table in tables:
        print_table(table)
    if schedule_out is not None:
        outs.put(schedule_out, json.dumps({"model": str(model), "level": level, **sched.as_dict()}) + "\n",
                 "--schedule")
    if gantt is not None:
        outs.put(gantt, gantt_png(sched, f"{model.name} at {level}"), "--gantt")
    if waterfall is not None:
        outs.put(waterfall, steps_waterfall(part["optimisations"], f"{model.name}: this run", hw.to_dict()),
                 "--waterfall")
    return part


def _comparison(cmp: dict, labels, samples) -> dict:
    """The JSON part of a lossy-vs-lossless comparison, with top-1 changes (and accuracies)."""
    from cimc.exec.predict import accuracy, changed, top1

    exact, lossy = cmp["lossless_outputs"][0], cmp["lossy_outputs"][0]
    count, fraction = changed(top1(exact, *samples), top1(lossy, *samples))
    out = {
        "adc_bits": cmp["adc_bits"],
        "saturations": cmp["saturations"],
        "layers": cmp["layers"],
        "outputs": cmp["outputs"],
        "top1_changed": count,
        "top1_changed_fraction": fraction,
    }
    if labels is not None:
        out["accuracy_top1_lossless"] = accuracy(exact, labels, samples[1])
        out["accuracy_top1_lossy"] = accuracy(lossy, labels, samples[1])
    return out


def _comparison_table(c: dict):
    from rich.table import Table

    table = Table(title=f"{c['adc_bits']}-bit ADC against a lossless ADC")
    for col in ("layer", "ADC saturations", "of conversions", "max abs error", "rel error"):
        table.add_column(col, justify="left" if col == "layer" else "right")
    for r in c["layers"]:
        table.add_row(r["name"], f"{r['adc_saturations']:,}", f"{r['adc_conversions']:,}",
                      f"{r['max_abs_error']:g}", f"{r['rel_error']:.3g}")
    o = c["outputs"][0]
    caption = (
        f"output: max abs error {o['max_abs_error']:g}, mean abs error {o['mean_abs_error']:.3g}, "
        f"{100 * o['changed_fraction']:.1f}% of values changed"
    )
    if c["top1_changed"] is not None:
        caption += f"; top-1 changed for {c['top1_changed']} input(s) ({100 * c['top1_changed_fraction']:.1f}%)"
    if "accuracy_top1_lossy" in c:
        caption += (f"; top-1 accuracy {c['accuracy_top1_lossless']:.2f}% lossless -> "
                    f"{c['accuracy_top1_lossy']:.2f}% lossy")
    table.caption = caption
    return table


def _noise_summary(cmp: dict) -> dict:
    """The JSON part of a noisy-vs-ideal comparison (no arrays)."""
    keys = ("noise", "seeds", "runs", "layers", "accuracy_top1_ideal", "accuracy_top1")
    return {k: cmp[k] for k in keys if k in cmp}


def _noise_table(c: dict):
    from rich.table import Table

    n = c["noise"]
    table = Table(title=f"noise '{n['name']}' against the ideal run, seeds {c['seeds'][0]}..{c['seeds'][-1]}")
    for col in ("layer", "rel error (mean)", "rel error (std)", "max abs error", "ADC clips (mean)"):
        table.add_column(col, justify="left" if col == "layer" else "right")
    for r in c["layers"]:
        table.add_row(r["name"], f"{r['rel_error']['mean']:.3g}", f"{r['rel_error']['std']:.2g}",
                      f"{r['max_abs_error']:g}", f"{r['adc_saturations']['mean']:,.0f}")
    moved = [run["top1_changed"] for run in c["runs"] if run["top1_changed"] is not None]
    caption = ", ".join(f"{k}={v:g}" for k, v in n.items() if k not in ("name", "origin"))
    if moved:
        caption += f"; top-1 changed for {min(moved)}..{max(moved)} input(s) per seed"
    if "accuracy_top1" in c:
        a = c["accuracy_top1"]
        caption += (f"; top-1 accuracy {c['accuracy_top1_ideal']:.2f}% ideal -> {a['mean']:.2f}% "
                    f"(std {a['std']:.2f}) over {len(c['seeds'])} seed(s)")
    table.caption = caption
    return table


report_cli.register(app)


def run(argv: list[str]) -> int:
    """``cimc ARGV...`` in this process; returns the exit code (errors are one line on stderr)."""
    return run_app(app, argv, "cimc")


def main() -> None:
    """Console entry point."""
    raise SystemExit(run(sys.argv[1:]))


if __name__ == "__main__":
    main()
