"""The cost report of a compiled model: per crossbar layer and in total, from the xbar program.

:func:`xbar_report` lowers a model to the ``xbar`` level (or takes one already there), walks its
``xbar.layer`` ops and reads every number off the program: the descriptor ``(m, n, P, H)`` and
bits from the layer, writes and cycles from the loop trip counts
(:func:`cimc.analysis.analyse_layer`), without reading or mapping a single weight. Latency is
:func:`cimc.target.counters.latency_us` (batch 1, the paper's model). The baseline is the same program rebuilt with every layer at
w = a = 8 (``xbar-set-bits``) on the same hardware; speedup = L(8/8) / L(model).

Energy (with an :class:`~cimc.target.energy.EnergyPreset`) is counters times the preset's
per-event energies plus leakage over the latency (:class:`~cimc.target.energy.EnergyModel`), per
layer and per component. The counters are the chip schedule's for one run (resident tiles are not
written again; their one-time programming is reported apart), plus the layer's recombination; the
host compute ops (:func:`cimc.analysis.host_elements`, and the multiply-adds of products left on
the host, :func:`cimc.analysis.host_macs`) are one more row. The energy-delay product
is total energy x total latency (uJ x us).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from xdsl.dialects.builtin import ModuleOp

from cimc.analysis import (HostLayer, analyse_layer, check_hardware, host_elements, host_layers, host_macs, host_warnings,
                           program_layers)
from cimc.chip_report import chip_schedule, opt_steps
from cimc.context import make_context
from cimc.errors import CimcError
from cimc.ir_io import module_level, set_module_level
from cimc.passes.xbar_set_bits import XbarSetBitsPass
from cimc.pipeline import check_level, levels, lower
from cimc.target.counters import COUNTER_NAMES, Counters, latency_us
from cimc.target.energy import COMPONENTS, EnergyModel, EnergyPreset, area_mm2, energy_model, total_fields
from cimc.target.hw import Hardware


def compile_pair(
    module: ModuleOp, level: str, hw: Hardware, *, baseline: bool
) -> tuple[ModuleOp, ModuleOp | None]:
    """``module`` lowered to ``level`` and (if asked) its all-8/8 twin at ``xbar``.

    Both are compiled from one ``xbar-mm`` module (the 8/8 twin gets ``xbar-set-bits`` there);
    a module already past ``xbar-mm`` is widened layer by layer instead.
    """
    check_level(level)
    names = [n for n, _ in levels()]
    current = module_level(module) or "cimq"
    if names.index(current) > names.index(level):
        level = current  # an already compiled module is reported as it is
    ctx = make_context()
    mm = module.clone()
    if names.index(current) <= names.index("xbar-mm"):
        lower(mm, "xbar-mm", hw=hw, ctx=ctx)
    compiled = mm.clone() if baseline else mm
    lower(compiled, level, hw=hw, ctx=ctx)
    if not baseline:
        return compiled, None
    XbarSetBitsPass(8, 8).apply(ctx, mm)
    if names.index(module_level(mm) or "cimq") < names.index("xbar"):
        lower(mm, "xbar", hw=hw, ctx=ctx)
    set_module_level(mm, "xbar")
    return compiled, mm


def _check_geometry(module: ModuleOp, hw: Hardware) -> None:
    try:
        check_hardware(module, hw)
    except CimcError as exc:
        raise CimcError(f"report: {exc.message}") from None


def layer_rows(module: ModuleOp, hw: Hardware) -> list[dict[str, Any]]:
    """One dict per Conv / Gemm / MatMul of an ``xbar``-level module (program order): a crossbar
    layer (``xbar.layer``) or a host layer (``kind`` ``host``, its ``op`` and ``reason``, zero
    crossbar cost)."""
    rows = []
    for layer in program_layers(module):
        if isinstance(layer, HostLayer):
            rows.append(host_row(layer))
            continue
        p = analyse_layer(layer)
        c = p.counters(1, hw)
        latency = latency_us(c, hw)
        rows.append({
            "name": p.name, "kind": p.kind, "m": p.m, "n": p.n, "P": p.P, "H": p.H,
            "w_bits": p.w_bits, "a_bits": p.a_bits, "slices": p.slices,
            "phys_rows": p.phys_rows, "phys_cols": p.phys_cols,
            "row_tiles": p.row_tiles, "col_tiles": p.col_tiles, "chunks": p.chunks,
            "tiles": p.tiles, **c.as_dict(), "latency_us": latency,
            "lossless_adc_bits": hw.lossless_adc_bits(p.tallest_rows),
        })
    return rows


def _counters(row: dict[str, Any]) -> Counters:
    return Counters(**{k: int(row.get(k, 0)) for k in COUNTER_NAMES})


def add_layer_energy(rows: list[dict[str, Any]], chip_layers: list[dict[str, Any]], energy: EnergyModel) -> None:
    """Each layer's energy from the chip schedule's counters of one run (what is written, read
    and converted there) plus the program's recombination, over the layer's scheduled time."""
    for r, slot in zip(rows, chip_layers, strict=True):
        c = _counters(slot)
        c.recombine_adds = r["recombine_adds"]
        r.update(energy.fields(c, r["latency_us"]))


def host_ops_row(module: ModuleOp, energy: EnergyModel | None) -> dict[str, Any]:
    """The host compute ops of ``@main``: their elements, the multiply-adds of its products on
    the host, and (with a model) their energy."""
    c = Counters(host_elements=host_elements(module), host_macs=host_macs(module))
    row: dict[str, Any] = {"host_elements": c.host_elements, "host_macs": c.host_macs}
    if energy is not None:
        row.update(energy.fields(c, 0.0))
    return row


def one_time_programming(chip: dict[str, Any], energy: EnergyModel) -> dict[str, Any]:
    """The cells the chip programs once before the stream (every resident tile and copy of the
    schedule ``chip``) and their energy."""
    cells = int(chip["programming_cells"])
    e = energy.fields(Counters(cells_written=cells), 0.0)
    return {"cells_written": cells, "energy_uj": e["energy_uj"]}


def program_energy(module: ModuleOp, rows: list[dict[str, Any]], hw: Hardware,
                   energy: EnergyModel) -> dict[str, float]:
    """Total energy of an ``xbar`` module whose :func:`layer_rows` are ``rows``, as
    :func:`xbar_report` computes it (chip schedule of one run of batch 1, the layers' energy over
    their scheduled time, the host ops row): ``latency_us`` (the report's total), ``energy_uj``,
    ``edp_uj_us``, and ``chip_us``, the schedule's time per inference (the report's
    ``chip.time_per_inference_us``). ``rows`` are not changed."""
    chip = chip_summary(module, hw)
    timed = [dict(r, latency_us=slot["latency_us"]) for r, slot in zip(rows, chip["layers"], strict=True)]
    add_layer_energy(timed, chip["layers"], energy)
    latency = sum(r["latency_us"] for r in timed)
    total = total_fields((*timed, host_ops_row(module, energy)), latency)
    return {"latency_us": latency, "energy_uj": total["energy_uj"], "edp_uj_us": total["edp_uj_us"],
            "chip_us": chip["time_per_inference_us"]}


def _ratio(base: float, value: float) -> float:
    return base / value if value else float("inf")


def host_row(layer: HostLayer) -> dict[str, Any]:
    """A host layer's report row: no crossbar, no writes, no cycles, no crossbar time (its
    arithmetic is in the host ops row, :func:`host_ops_row`)."""
    return {"name": layer.name, "kind": "host", "op": layer.op, "reason": layer.reason,
            "m": None, "n": None, "P": None, "H": None, "w_bits": None, "a_bits": None,
            "slices": None, "phys_rows": None, "phys_cols": None, "row_tiles": None,
            "col_tiles": None, "chunks": None, "tiles": 0, **Counters().as_dict(),
            "latency_us": 0.0, "lossless_adc_bits": None}


def chip_summary(module: ModuleOp, hw: Hardware, *, batch: int = 1, stream: int = 1) -> dict[str, Any]:
    """The chip schedule's totals (no per-array events) of an ``xbar`` module."""
    return chip_schedule(module, hw, batch=batch, stream=stream, events=False).as_dict(events=False)


def xbar_report(
    module: ModuleOp, hw: Hardware | None = None, *, level: str = "xbar", baseline: bool = True,
    stream: int = 1, batch: int = 1, energy: EnergyPreset | None = None, strict: bool = False,
) -> dict[str, Any]:
    """The report of ``module`` (any level up to ``level``) on ``hw`` (paper defaults if None);
    with an energy preset also energy per layer and component and the energy-delay product.

    Per-layer ``latency_us`` is the layer's time in the chip schedule of one run of ``batch``
    inputs (with one array and nothing resident: the paper's ``writes * t_w + executes * t_e``,
    kept as ``paper_latency_us``); ``chip`` holds the schedule's totals for a stream of
    ``stream`` inputs (throughput, one-time programming, writes per inference).

    Host layers (the host fallback) are rows of ``kind`` ``host`` with zero crossbar cost,
    listed in ``host_layers`` with a warning line each in ``warnings``; ``strict`` refuses them
    (a one-line error naming the first).
    """
    hw = hw or Hardware()
    compiled, base = compile_pair(module, level, hw, baseline=baseline)
    warnings = host_warnings(compiled, strict=strict)
    _check_geometry(compiled, hw)
    level = module_level(compiled) or level
    rows = layer_rows(compiled, hw)
    if not any(r["kind"] != "host" for r in rows):
        raise CimcError("report: the model has no crossbar layer (no Conv, Gemm or MatMul on "
                        "quantized operands)")
    model = energy_model(energy, hw) if energy is not None else None
    chip = chip_summary(compiled, hw, batch=batch, stream=stream)
    for r, slot in zip(rows, chip["layers"], strict=True):
        r["paper_latency_us"] = r["latency_us"]
        r["latency_us"] = slot["latency_us"]
    host = host_ops_row(compiled, model)
    total = {
        "writes": sum(r["writes"] for r in rows),
        "executes": sum(r["executes"] for r in rows),
        "latency_us": sum(r["latency_us"] for r in rows),
        "paper_latency_us": sum(r["paper_latency_us"] for r in rows),
    }
    for r in rows:
        r["share"] = r["latency_us"] / total["latency_us"] if total["latency_us"] else 0.0
    out: dict[str, Any] = {"level": level, "hardware": hw.to_dict(), "layers": rows, "host": host,
                           "total": total, "chip": {k: v for k, v in chip.items() if k != "layers"},
                           "host_layers": [{"name": h.name, "op": h.op, "reason": h.reason}
                                           for h in host_layers(compiled)],
                           "warnings": warnings}
    if model is not None:
        add_layer_energy(rows, chip["layers"], model)
        total.update(total_fields((*rows, host), total["latency_us"]))
        out["energy"] = {**model.summary(), "area_mm2": area_mm2(model.preset, hw),
                         "one_time_programming": one_time_programming(chip, model)}
    if base is not None:
        base_rows = layer_rows(base, hw)
        base_chip = chip_summary(base, hw, batch=batch, stream=stream)
        paper_lat = sum(r["latency_us"] for r in base_rows)  # one array, serial: the paper's
        for r, slot in zip(base_rows, base_chip["layers"], strict=True):
            r["latency_us"] = slot["latency_us"]
        base_lat = sum(r["latency_us"] for r in base_rows)
        out["baseline"] = {
            "bits": [8, 8],
            "writes": sum(r["writes"] for r in base_rows),
            "executes": sum(r["executes"] for r in base_rows),
            "latency_us": base_lat,
            "paper_latency_us": paper_lat,
            "chip": {k: v for k, v in base_chip.items() if k != "layers"},
        }
        for r, b in zip(rows, base_rows):
            r["baseline_latency_us"] = b["latency_us"]
        out["speedup"] = base_lat / total["latency_us"] if total["latency_us"] else float("inf")
        if model is not None:
            add_layer_energy(base_rows, base_chip["layers"], model)
            base_e = total_fields((*base_rows, host_ops_row(base, model)), base_lat)
            out["baseline"].update(base_e)
            for r, b in zip(rows, base_rows):
                r["baseline_energy_uj"] = b["energy_uj"]
            out["energy_saving"] = _ratio(base_e["energy_uj"], total["energy_uj"])
            out["edp_gain"] = _ratio(base_e["edp_uj_us"], total["edp_uj_us"])
        per_inf = chip["time_per_inference_us"]  # the paper's all-8/8 latency is per inference
        out["speedup_over_paper"] = paper_lat / per_inf if per_inf else float("inf")
    if level == "xbar-opt":
        unopt = unoptimised(module, hw)
        if unopt is not None:
            out["optimisations"] = opt_steps(unopt, hw, batch=batch, stream=stream)
    return out


def unoptimised(module: ModuleOp, hw: Hardware) -> ModuleOp | None:
    """A copy of ``module`` at the ``xbar`` level (None if it is already past it)."""
    names = [n for n, _ in levels()]
    current = module_level(module) or "cimq"
    if names.index(current) > names.index("xbar"):
        return None
    copy = module.clone()
    lower(copy, "xbar", hw=hw)
    return copy


def chip_caption(report: dict[str, Any]) -> str:
    """The chip's totals in one line (shown when the chip is more than the paper's crossbar)."""
    c, hw = report["chip"], report["hardware"]
    text = (f"chip: {hw['arrays']} array(s), residency {hw['residency']}, {hw['cols_per_adc']} col/ADC: "
            f"one run of {c['batch']}: {c['latency_us']:,.1f} us; stream of {c['stream']}: "
            f"{c['time_per_inference_us']:,.1f} us per input ({c['throughput_per_s']:,.1f}/s); "
            f"one-time programming {c['programming_writes']:,} writes; "
            f"{c['writes_per_inference']:,.2f} writes per inference")
    if "speedup_over_paper" in report:
        text += (f"; per inference {report['speedup_over_paper']:.3f}x faster than the paper's all-8/8 "
                 "on one crossbar")
    return text


def report_table(report: dict[str, Any]) -> Any:
    """The report as a rich Table (with an energy column when the report has energy)."""
    from rich.table import Table

    has_energy = "energy" in report
    title = f"crossbar cost on {hardware_label(report['hardware'])}"
    table = Table(title=title)
    cols = [
        ("layer", "left"), ("kind", "left"), ("(m, n, P, H)", "left"), ("w/a", "right"),
        ("S", "right"), ("tiles", "right"), ("writes", "right"), ("executes", "right"),
        ("latency us", "right"), ("share", "right"), ("ADC bits", "right"),
    ] + ([("energy uJ", "right")] if has_energy else [])
    for col, just in cols:
        table.add_column(col, justify=just)  # type: ignore[arg-type]
    for r in report["layers"]:
        if r["kind"] == "host":
            table.add_row(r["name"], "host", f"{r['op']} on the host: {r['reason']}", "-", "-", "-",
                          "0", "0", "0.0", f"{100 * r['share']:.1f}%", "-", style="yellow")
            continue
        table.add_row(
            r["name"], r["kind"], f"({r['m']}, {r['n']}, {r['P']}, {r['H']})",
            f"{r['w_bits']}/{r['a_bits']}", str(r["slices"]),
            f"{r['row_tiles']}x{r['col_tiles']}", f"{r['writes']:,}", f"{r['executes']:,}",
            f"{r['latency_us']:,.1f}", f"{100 * r['share']:.1f}%", str(r["lossless_adc_bits"]),
            *([f"{r['energy_uj']:.4g}"] if has_energy else []),
        )
    t = report["total"]
    if has_energy:
        table.add_row("host ops", *([""] * 10), f"{report['host']['energy_uj']:.4g}")
    table.add_row("total", "", "", "", "", "", f"{t['writes']:,}", f"{t['executes']:,}",
                  f"{t['latency_us']:,.1f}", "100%", "", *([f"{t['energy_uj']:.4g}"] if has_energy else []),
                  style="bold")
    lines = []
    if has_energy:
        lines.append(f"energy {t['energy_uj']:.4g} uJ, energy-delay product {t['edp_uj_us']:.4g} uJ*us "
                     f"(preset {report['energy']['preset']}, {report['energy']['adc_bits']}-bit ADC)")
    if "baseline" in report:
        b = report["baseline"]
        line = f"all-8/8 baseline: {b['latency_us']:,.1f} us -> speedup {report['speedup']:.3f}x"
        if has_energy:
            line += (f"; {b['energy_uj']:.4g} uJ -> energy saving {report['energy_saving']:.3f}x, "
                     f"EDP gain {report['edp_gain']:.3f}x")
        lines.append(line)
    if "chip" in report:
        lines.append(chip_caption(report))
    table.caption = "\n".join(lines) or None
    return table


def energy_table(report: dict[str, Any]) -> Any:
    """Energy per layer and component (uJ) as a rich Table, of a ``cimc report`` or of a run
    report with energy (:func:`cimc.exec.xbar_exec.add_energy`); None without energy."""
    from rich.table import Table

    if "energy" not in report:
        return None
    table = Table(title=f"energy by component (uJ), preset {report['energy']['preset']}")
    table.add_column("layer")
    for comp in COMPONENTS:
        table.add_column(comp, justify="right")
    table.add_column("total", justify="right")
    named = [(r["name"], r) for r in report["layers"]] + [("host ops", report["host"])]
    for name, r in named:
        parts = r["energy_uj_by_component"]
        table.add_row(name, *(f"{parts[c]:.3g}" for c in COMPONENTS), f"{r['energy_uj']:.4g}")
    t = report["total"]
    table.add_row("total", *(f"{t['energy_uj_by_component'][c]:.3g}" for c in COMPONENTS),
                  f"{t['energy_uj']:.4g}", style="bold")
    shares = ", ".join(f"{c} {100 * v / t['energy_uj']:.1f}%"
                       for c, v in t["energy_uj_by_component"].items() if t["energy_uj"] and v)
    caption = (f"energy {t['energy_uj']:.4g} uJ, energy-delay product {t['edp_uj_us']:.4g} uJ*us "
               f"at {t['latency_us']:,.1f} us; share: {shares}")
    once = report["energy"].get("one_time_programming")
    if once and once["cells_written"]:
        caption += (f"; one-time programming of resident tiles: {once['cells_written']:,} cells, "
                    f"{once['energy_uj']:.4g} uJ (not per inference)")
    table.caption = caption
    return table


def hardware_label(hw: dict[str, Any]) -> str:
    """``256 x 256 crossbar (rows x cols), 4-bit cells, 1-bit DAC, lossless ADC, dc``."""
    adc = "lossless ADC" if hw.get("adc_bits") is None else f"{hw['adc_bits']}-bit ADC"
    return (f"{hw['rows']} x {hw['cols']} crossbar (rows x cols), {hw['cell_bits']}-bit cells, "
            f"{hw['dac_bits']}-bit DAC, {adc}, {hw['mapping']}")


def plot_report(report: dict[str, Any], path: str | Path | None = None) -> bytes:
    """The PNG of :func:`report_figure`; with ``path`` also written there. Returns the bytes."""
    import io

    import matplotlib.pyplot as plt

    fig = report_figure(report)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    data = buf.getvalue()
    if path is not None:
        from cimc.cli_util import atomic_write_bytes

        atomic_write_bytes(path, data)
    return data


def report_figure(report: dict[str, Any]):
    """Per-layer bits (top), latency against the 8/8 baseline on a log axis (middle) and, with
    energy, each layer's energy stacked by component (bottom; linear, so the parts add up).

    Every axis is labelled, the legends sit outside the axes (never over a bar) and the title
    names the hardware.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    rows = [r for r in report["layers"] if r["kind"] != "host"]  # no crossbar bits or time
    has_energy = "energy" in report
    names = [r["name"] for r in rows] + (["host ops"] if has_energy else [])
    x = np.arange(len(rows))
    axes = plt.subplots(3 if has_energy else 2, 1, figsize=(max(7, 0.4 * len(names) + 4), 9.5 if has_energy else 6.5),
                        sharex=True)[1]
    fig = axes[0].figure
    ax1, ax2 = axes[0], axes[1]
    outside = {"loc": "upper left", "bbox_to_anchor": (1.01, 1.0), "fontsize": 8}
    ax1.bar(x - 0.2, [r["w_bits"] for r in rows], 0.4, label="weight bits")
    ax1.bar(x + 0.2, [r["a_bits"] for r in rows], 0.4, label="input bits")
    ax1.set_ylabel("bits")
    ax1.set_ylim(0, 9)
    ax1.legend(**outside)
    ax2.bar(x - 0.2, [r["latency_us"] for r in rows], 0.4, label="this model")
    if "baseline" in report:
        ax2.bar(x + 0.2, [r["baseline_latency_us"] for r in rows], 0.4, label="all 8/8")
    ax2.set_yscale("log")
    ax2.set_ylabel("latency (us, log scale)")
    ax2.legend(**outside)
    title = f"total {report['total']['latency_us']:,.0f} us"
    if "speedup" in report:
        title += f", speedup {report['speedup']:.2f}x over all-8/8"
    if has_energy:
        t = report["total"]
        _energy_axis(axes[2], [*rows, report["host"]], outside)
        title += (f"; energy {t['energy_uj']:.3g} uJ, EDP {t['edp_uj_us']:.3g} uJ*us "
                  f"(preset {report['energy']['preset']})")
    xs = np.arange(len(names))
    axes[-1].set_xlabel("layer")
    axes[-1].set_xticks(xs, names, rotation=60, ha="right", fontsize=7)
    fig.suptitle(f"{title}\n{hardware_label(report['hardware'])}", fontsize=10)
    fig.tight_layout()
    return fig


def _energy_axis(ax, rows: list[dict[str, Any]], legend: dict[str, Any]) -> None:
    """Energy per row (layers and host ops) stacked by component."""
    import numpy as np

    x = np.arange(len(rows))
    bottom = np.zeros(len(rows))
    for comp in COMPONENTS:
        vals = np.array([r["energy_uj_by_component"][comp] for r in rows])
        if vals.any():
            ax.bar(x, vals, 0.6, bottom=bottom, label=comp)
            bottom += vals
    ax.set_ylabel("energy (uJ, stacked)")
    ax.legend(title="component", **legend)
