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
from cimc.cli_util import atomic_output, run_guarded
from cimc.cli_util import console as cli_console
from cimc.errors import CimcError, InputFileError
from cimc.loaders import load_energy, load_hardware, load_model
from cimc.report_cli import EnergyOpt

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


def _load_array(path: Path, what: str, kinds: str):
    """``np.load`` of a user file with one-line errors (``kinds``: ".npy/.npz" or ".npy")."""
    import numpy as np

    if not path.is_file():
        raise InputFileError(f"{path}: {what} file not found")
    try:
        return np.load(path, allow_pickle=False)
    except Exception as exc:
        raise InputFileError(f"{path}: not a {kinds} array file ({exc})") from None


def _load_inputs(path: Path | None, module, batch: int, seed: int):
    import numpy as np

    from cimc.exec.cimq_exec import find_main

    main = find_main(module)
    if path is not None:
        data = _load_array(path, "input", ".npy/.npz")
        if hasattr(data, "files"):
            return [data[k] for k in data.files]
        return [data]
    rng = np.random.default_rng(seed)
    arrays = []
    for t in main.function_type.inputs.data:
        shape = [batch if i == 0 else d for i, d in enumerate(t.get_shape())]
        arrays.append(rng.standard_normal(shape).astype(np.float32))
    return arrays


def _load_labels(path: Path, n: int):
    """Integer class labels ``[n]`` from a .npy file (checked before anything runs)."""
    import numpy as np

    labels = _load_array(path, "labels", ".npy")
    if hasattr(labels, "files") or labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise InputFileError(f"{path}: labels must be a 1-D integer array, got {getattr(labels, 'dtype', 'npz')}")
    if labels.shape[0] != n:
        raise InputFileError(f"{path}: {labels.shape[0]} labels for a batch of {n} inputs")
    return labels.astype(np.int64)


def _top1(out, labels=None):
    """Predicted classes of ``out [B, ...]`` and (with labels) the top-1 accuracy in percent."""
    pred = out.reshape(out.shape[0], -1).argmax(axis=1)
    return pred, (None if labels is None else float(100.0 * (pred == labels).mean()))


def _run_module(module, level: str, inputs, hw, *, fast: bool | None, progress: bool, compare: bool,
                noise=None, seeds=(0,), labels=None):
    """Run at ``level``; xbar levels go through :func:`cimc.exec.xbar_exec.run_xbar` with
    ``fast``, with ``compare`` also lossless (:func:`compare_lossy`), with ``noise`` once ideal
    and once per seed on the device (:func:`cimc.exec.noise_runs.compare_noise`). Returns the
    result (of the first noisy seed with noise), and the comparison (or None)."""
    from cimc.exec import RunResult, lowered_copy, run_at_level

    if noise is not None:
        from cimc.exec.noise_runs import compare_noise
        from cimc.exec.xbar_exec import counters_table

        cmp = compare_noise(lowered_copy(module, level, hw=hw), inputs, hw, noise, seeds, labels=labels)
        return RunResult(cmp["noisy_outputs"][0], cmp["report"], counters_table(cmp["report"])), cmp
    if not compare:
        return run_at_level(module, level, inputs, hw=hw, progress=progress, fast=fast), None
    from cimc.exec.xbar_exec import compare_lossy, counters_table

    prog = lowered_copy(module, level, hw=hw)
    cmp = compare_lossy(prog, inputs, hw, fast=fast)
    rep = cmp.pop("lossy_report")
    return RunResult(cmp["lossy_outputs"], rep, counters_table(rep)), cmp


NoiseOpt = Annotated[
    Optional[str],
    typer.Option("--noise", help="xbar levels: run on an imperfect device, a noise preset (rram-moderate, "
                 "rram-severe, ideal) or a YAML file; reports each layer's error against the ideal run."),
]


def _run_options(level: str, hw, hw_set, fast, compare_lossless: bool, energy, noise, noise_set, repeat):
    """Check the options of ``cimc run``; returns (hardware, energy preset, noise model)."""
    on_xbar = level.startswith("xbar")
    if fast is not None and not on_xbar:
        raise CimcError(f"--fast/--bit-serial apply to xbar levels, not --level {level}")
    hardware = load_hardware(hw, hw_set) if (hw or hw_set or on_xbar) else None
    if compare_lossless and (not on_xbar or hardware is None or hardware.lossless):
        raise CimcError("--compare-lossless needs an xbar level and a lossy ADC (e.g. --hw-set adc_bits=6)")
    if fast and hardware is not None and not hardware.lossless:
        raise CimcError(f"--fast needs a lossless ADC (adc_bits={hardware.adc_bits}); use --bit-serial")
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
    return hardware, (load_energy(energy) if on_xbar else None), model


@app.command("run")
def run_cmd(
    model: Annotated[Path, typer.Argument(help="model.onnx (QCDQ) or model.mlir")],
    level: Annotated[str, typer.Option("--level", help="IR level to execute.")] = "cimq",
    input: Annotated[
        Optional[Path], typer.Option("--input", help=".npy input (random seeded input if absent).")
    ] = None,
    output: Annotated[Optional[Path], typer.Option("--output", help="Write the output .npy here.")] = None,
    batch: Annotated[int, typer.Option("--batch", min=1, help="Batch of the random input.")] = 1,
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
    energy: EnergyOpt = None,
    noise: NoiseOpt = None,
    noise_set: Annotated[Optional[str], typer.Option(
        "--noise-set", help="Override noise parameters: programming_sigma=0.1,read_sigma=0.")] = None,
    repeat: Annotated[int, typer.Option(
        "--repeat", min=1, help="With --noise: runs with seeds S..S+N-1, to see the spread.")] = 1,
    progress: Annotated[bool, typer.Option("--progress/--no-progress")] = True,
    debug: DebugOpt = False,
) -> None:
    """Run a model at an IR level on an input and print a summary (and counters, energy and
    energy-delay product at xbar; with --noise, the error of each layer against the ideal run)."""
    import numpy as np

    from cimc.pipeline import check_level

    check_level(level)
    hardware, preset, noise_model = _run_options(level, hw, hw_set, fast, compare_lossless, energy,
                                                 noise, noise_set, repeat)
    module = load_model(model)
    inputs = _load_inputs(input, module, batch, seed)
    from cimc.exec.cimq_exec import check_inputs, find_main

    inputs = check_inputs(find_main(module), inputs)
    y = _load_labels(labels, int(inputs[0].shape[0])) if labels is not None else None
    result, cmp = _run_module(
        module, level, inputs, hardware, fast=fast, progress=progress, compare=compare_lossless,
        noise=noise_model, seeds=range(seed, seed + repeat), labels=y,
    )
    outs = result.outputs
    if preset is not None and result.report:
        from cimc.exec.xbar_exec import add_energy

        add_energy(result.report, hardware, preset)
    console = cli_console()
    extra: dict = {}
    console.print(_outputs_table(outs, level, y, extra))
    if result.counters_table is not None:
        console.print(result.counters_table)
    if "energy" in result.report:
        from cimc.report import energy_table

        console.print(energy_table(result.report))
    if cmp is not None and noise_model is not None:
        extra["noise"] = _noise_summary(cmp)
        console.print(_noise_table(extra["noise"]))
    elif cmp is not None:
        extra["compare_lossless"] = _comparison(cmp, y)
        console.print(_comparison_table(extra["compare_lossless"]))
    if output is not None:
        with atomic_output(output, "wb") as fh:
            np.save(fh, outs[0] if len(outs) == 1 else np.stack(outs), allow_pickle=False)
    if report is not None:
        payload = {"level": level, "outputs": [list(o.shape) for o in outs], **result.report, **extra}
        payload.pop("_layer_outputs", None)
        with atomic_output(report, "w") as fh:
            json.dump(payload, fh, indent=2)  # type: ignore[arg-type]


def _outputs_table(outs, level: str, y, extra: dict):
    from rich.table import Table

    table = Table(title=f"cimc run --level {level}")
    for col in ("output", "shape", "dtype", "top-1 (first 8)"):
        table.add_column(col)
    for i, o in enumerate(outs):
        top = o.reshape(o.shape[0], -1).argmax(axis=1)[:8].tolist() if o.ndim >= 1 and o.size else []
        table.add_row(str(i), str(list(o.shape)), str(o.dtype), str(top))
    if y is not None:
        _, acc = _top1(outs[0], y)
        extra["accuracy_top1"] = acc
        table.caption = f"top-1 accuracy {acc:.2f}% ({int(round(acc * len(y) / 100))}/{len(y)})"
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
    changed = [run["top1_changed"] for run in c["runs"]]
    caption = (", ".join(f"{k}={v:g}" for k, v in n.items() if k not in ("name", "origin")) +
               f"; top-1 changed for {min(changed)}..{max(changed)} input(s) per seed")
    if "accuracy_top1" in c:
        a = c["accuracy_top1"]
        caption += (f"; top-1 accuracy {c['accuracy_top1_ideal']:.2f}% ideal -> {a['mean']:.2f}% "
                    f"(std {a['std']:.2f}) over {len(c['seeds'])} seed(s)")
    table.caption = caption
    return table


def _comparison(cmp: dict, labels) -> dict:
    """The JSON part of a lossy-vs-lossless comparison, with top-1 changes (and accuracies)."""
    exact, lossy = cmp["lossless_outputs"][0], cmp["lossy_outputs"][0]
    p_exact, a_exact = _top1(exact, labels)
    p_lossy, a_lossy = _top1(lossy, labels)
    out = {
        "adc_bits": cmp["adc_bits"],
        "saturations": cmp["saturations"],
        "layers": cmp["layers"],
        "outputs": cmp["outputs"],
        "top1_changed": int((p_exact != p_lossy).sum()),
        "top1_changed_fraction": float((p_exact != p_lossy).mean()),
    }
    if labels is not None:
        out["accuracy_top1_lossless"] = a_exact
        out["accuracy_top1_lossy"] = a_lossy
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
        f"{100 * o['changed_fraction']:.1f}% of values changed; top-1 changed for "
        f"{c['top1_changed']} input(s) ({100 * c['top1_changed_fraction']:.1f}%)"
    )
    if "accuracy_top1_lossy" in c:
        caption += (f"; top-1 accuracy {c['accuracy_top1_lossless']:.2f}% lossless -> "
                    f"{c['accuracy_top1_lossy']:.2f}% lossy")
    table.caption = caption
    return table


report_cli.register(app)


def main() -> None:
    """Console entry point."""
    raise SystemExit(run_guarded(lambda: app(standalone_mode=True)))


if __name__ == "__main__":
    main()
