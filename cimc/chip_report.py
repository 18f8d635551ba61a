"""The chip's view of a compiled model: its schedule, the contribution of each optimisation, plots.

* :func:`chip_schedule`: the :class:`cimc.target.schedule.Schedule` of an ``xbar`` module on a
  :class:`~cimc.target.hw.Hardware` (arrays, residency, ADC sharing), from the program
  (:func:`cimc.analysis.schedule_layers`) or from the cycles a run measured;
* :func:`hardware_title`: the hardware in one line, for titles;
* :func:`gantt_png`: arrays x time, one bar per write and per compute of a tile, coloured by layer;
* :func:`waterfall_png`: the latency from the paper's model through each optimisation.

Plots follow cimc's conventions: labelled axes, the hardware in the title, legends outside the
data, latency on a log axis where latencies are compared. They return PNG bytes (the caller
writes them, all or nothing).
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Sequence
from typing import Any

from xdsl.dialects.builtin import ModuleOp

from cimc.analysis import schedule_layers
from cimc.target.hw import Hardware
from cimc.target.schedule import Schedule, schedule


def chip_schedule(module: ModuleOp, hw: Hardware, *, batch: int = 1, stream: int = 1,
                  measured: dict[str, dict[tuple[int, int, int], int]] | None = None,
                  events: bool = True) -> Schedule:
    """The schedule of an ``xbar``-level module: one run of ``batch`` inputs and a stream of
    ``stream`` inputs on ``hw`` (cycles from ``measured`` where given, else the program's)."""
    layers = schedule_layers(module, hw, batch=batch, measured=measured)
    return schedule(layers, hw, batch=batch, stream=stream, events=events)


def hardware_title(hw: dict[str, Any]) -> str:
    """``16 arrays of 256 x 256 (rows x cols), 4-bit cells, 1-bit DAC, 1 col/ADC, dc, resident: greedy``."""
    arrays = f"{hw['arrays']} array{'s' if hw['arrays'] != 1 else ''}"
    adc = "lossless ADC" if hw.get("adc_bits") is None else f"{hw['adc_bits']}-bit ADC"
    return (f"{arrays} of {hw['rows']} x {hw['cols']} (rows x cols), {hw['cell_bits']}-bit cells, "
            f"{hw['dac_bits']}-bit DAC, {adc}, {hw['cols_per_adc']} col/ADC, {hw['mapping']}, "
            f"residency {hw['residency']}")


def _png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def gantt_png(sched: Schedule, title: str = "") -> bytes:
    """Arrays (rows) x time: a bar per write (hatched) and per compute, coloured by layer."""
    plt = _pyplot()
    from matplotlib.patches import Patch

    used = sorted({e.array for e in sched.events})
    row_of = {a: i for i, a in enumerate(used)}
    n_layers = len(sched.layers)
    if n_layers <= 20:
        base = plt.get_cmap("tab20" if n_layers > 10 else "tab10")

        def colour(i: int):
            return base(i % base.N)
    else:  # more layers than a qualitative map has colours: spread them over a continuous one
        base = plt.get_cmap("turbo")

        def colour(i: int):
            return base(i / (n_layers - 1))
    height = min(0.25 * len(used) + 2.5, 14)
    fig, ax = plt.subplots(figsize=(11, height))
    by_key: dict[tuple[int, int, str], list[tuple[float, float]]] = {}
    for e in sched.events:
        by_key.setdefault((row_of[e.array], e.layer, e.kind), []).append((e.start, e.end - e.start))
    for (row, layer, kind), spans in by_key.items():
        ax.broken_barh(spans, (row - 0.4, 0.8), facecolors=colour(layer),
                       hatch="////" if kind == "write" else None, edgecolor="black" if kind == "write" else None,
                       linewidth=0.2)
    ax.set_xlabel("time in one run (us)")
    ax.set_ylabel(f"array ({len(used)} of {sched.hw.arrays} used)")
    step = max(1, len(used) // 24)
    ax.set_yticks(range(0, len(used), step), [str(used[i]) for i in range(0, len(used), step)])
    ax.set_ylim(-0.6, len(used) - 0.4)
    ax.invert_yaxis()
    handles = [Patch(facecolor=colour(i), label=s.name) for i, s in enumerate(sched.layers)]
    if len(handles) > 30:  # a legend longer than the figure helps nobody: every n-th layer
        keep = max(1, len(handles) // 30)
        handles = handles[::keep]
    handles.append(Patch(facecolor="white", edgecolor="black", hatch="////", label="write (hatched)"))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7,
              title="layer", title_fontsize=8)
    head = (f"one run of {sched.batch} input(s): {sched.latency_us:,.1f} us; stream of "
            f"{sched.stream}: {sched.stream_us / sched.stream:,.1f} us per input")
    fig.suptitle(f"{title}\n{head}\n{hardware_title(sched.hw.to_dict())}" if title else
                 f"{head}\n{hardware_title(sched.hw.to_dict())}", fontsize=9)
    return _png(fig)


def waterfall_png(steps: Sequence[tuple[str, float]], title: str, hw: dict[str, Any],
                  ylabel: str = "latency per inference (us, log scale)") -> bytes:
    """The latency after each step, as floating bars from the previous value (log axis)."""
    plt = _pyplot()
    import numpy as np

    labels = [s for s, _ in steps]
    values = np.array([v for _, v in steps], dtype=np.float64)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(steps) + 2), 4.8))
    prev = values[0]
    for i, v in enumerate(values):
        if i == 0:
            ax.bar(i, v, color="#777777", label="start")
            continue
        lo, hi = min(prev, v), max(prev, v)
        color = "#2a9d8f" if v < prev else ("#e76f51" if v > prev else "#bbbbbb")
        ax.bar(i, hi - lo if hi > lo else hi * 0.002, bottom=lo, color=color)
        ax.annotate(f"{prev / v:.3f}x" if v > 0 else "", (i, hi), ha="center", va="bottom", fontsize=7,
                    xytext=(0, 2), textcoords="offset points")
        prev = v
    ax.bar(len(values), values[-1], color="#264653")
    ax.annotate(f"{values[0] / values[-1]:.2f}x" if values[-1] > 0 else "", (len(values), values[-1]),
                ha="center", va="bottom", fontsize=8, xytext=(0, 2), textcoords="offset points")
    ax.set_xticks(range(len(values) + 1), [*labels, "all"], rotation=30, ha="right", fontsize=8)
    ax.set_yscale("log")
    ax.set_ylim(max(values.min() * 0.5, 1e-9), values.max() * 2)
    ax.set_ylabel(ylabel)
    ax.set_xlabel("optimisation (applied in this order)")
    from matplotlib.patches import Patch

    ax.legend(handles=[Patch(color="#2a9d8f", label="saves"), Patch(color="#e76f51", label="costs"),
                       Patch(color="#bbbbbb", label="no change")],
              loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    fig.suptitle(f"{title}\n{hardware_title(hw)}", fontsize=9)
    return _png(fig)


# ---------------------------------------------------------------------------- contributions


def paper_hardware(hw: Hardware) -> Hardware:
    """The paper's machine with ``hw``'s crossbar: one array, one ADC per column, re-programmed."""
    return dataclasses.replace(hw, arrays=1, cols_per_adc=1, residency="none")


def opt_steps(module: ModuleOp, hw: Hardware, *, batch: int = 1, stream: int = 1,
              measured: dict[str, dict[tuple[int, int, int], int]] | None = None) -> dict[str, Any]:
    """What each step from the paper's model to the optimised chip contributes.

    ``module`` is at the ``xbar`` level (not optimised). Steps: ``paper`` (one array, one ADC per
    column, nothing resident), ``chip`` (``hw``'s arrays, ADC sharing and residency), then every
    ``xbar-opt`` pass in order, applied on top of the previous ones. For each: the latency of one
    run of ``batch`` inputs per layer and in total, and the time per inference over a stream of
    ``stream`` inputs. Run-time skipping is the worst case (nothing skipped) unless ``measured``
    gives the cycles a run of the final program executed per tile (``RunResult.tile_cycles``),
    which hold from the skipping pass on (later passes do not change tiles or cycles).
    """
    from cimc.context import make_context
    from cimc.passes.xbar_pipeline import OPT_PASSES

    ctx = make_context()
    current = module.clone()
    steps: list[tuple[str, ModuleOp, Hardware, bool]] = [
        ("paper", module, paper_hardware(hw), False), ("chip", module, hw, False)]
    skipping = False
    for name, make in OPT_PASSES:
        current = current.clone()
        make().apply(ctx, current)
        current.verify()
        skipping = skipping or name == "xbar-skip-zero-planes"
        steps.append((name, current, hw, skipping))
    out: dict[str, Any] = {"steps": [], "batch": batch, "stream": stream,
                           "measured": measured is not None, "layers": []}
    for name, mod, step_hw, use_measured in steps:
        sched = chip_schedule(mod, step_hw, batch=batch, stream=stream,
                              measured=measured if use_measured else None, events=False)
        out["steps"].append({
            "name": name, "latency_us": sched.latency_us,
            "time_per_inference_us": sched.stream_us / stream, "stream_us": sched.stream_us,
            "writes_per_inference": sched.writes_per_inference,
            "executes": sched.counters.executes, "programming_writes": sched.programming_writes,
        })
        if not out["layers"]:
            out["layers"] = [{"name": s.name, "latency_us": []} for s in sched.layers]
        for row, slot in zip(out["layers"], sched.layers, strict=True):
            row["latency_us"].append(slot.latency_us)
    first, last = out["steps"][0], out["steps"][-1]
    out["speedup"] = first["time_per_inference_us"] / last["time_per_inference_us"] \
        if last["time_per_inference_us"] else float("inf")
    return out


def steps_table(steps: dict[str, Any], title: str) -> Any:
    """Per layer, its latency after each step (a column per pass); totals and time per inference."""
    from rich.table import Table

    names = [s["name"] for s in steps["steps"]]
    table = Table(title=title)
    table.add_column("layer")
    for n in names:
        table.add_column(n.removeprefix("xbar-"), justify="right")
    for row in steps["layers"]:
        table.add_row(row["name"], *(f"{v:,.1f}" for v in row["latency_us"]))
    table.add_row("one run (us)", *(f"{s['latency_us']:,.1f}" for s in steps["steps"]), style="bold")
    table.add_row(f"per inference, stream of {steps['stream']} (us)",
                  *(f"{s['time_per_inference_us']:,.1f}" for s in steps["steps"]), style="bold")
    table.add_row("writes per inference", *(f"{s['writes_per_inference']:,.2f}" for s in steps["steps"]))
    table.add_row("cycles per run", *(f"{s['executes']:,}" for s in steps["steps"]))
    base = steps["steps"][0]["time_per_inference_us"]
    table.add_row("speedup over paper", *(f"{base / s['time_per_inference_us']:.3f}x" if s["time_per_inference_us"]
                                          else "inf" for s in steps["steps"]), style="bold")
    measured = "measured run-time skipping" if steps["measured"] else "run-time skipping at its worst case (none)"
    table.caption = f"latency in us after each step, applied in order; batch {steps['batch']}; {measured}"
    return table


def steps_waterfall(steps: dict[str, Any], title: str, hw: dict[str, Any]) -> bytes:
    """:func:`waterfall_png` of the time per inference after each step."""
    pairs = [(s["name"].removeprefix("xbar-"), s["time_per_inference_us"]) for s in steps["steps"]]
    label = f"time per inference, stream of {steps['stream']}, batch {steps['batch']} (us, log scale)"
    return waterfall_png(pairs, title, hw, ylabel=label)


def skip_table(report: dict[str, Any]) -> Any:
    """Per layer: cycles skipped at run time, in total and per input bit-plane (LSB first)."""
    from rich.table import Table

    rows = [r for r in report["layers"] if "skipped_by_plane" in r]
    if not rows:
        return None
    table = Table(title="cycles skipped at run time (zero input bit-planes), per layer and plane")
    for col in ("layer", "skipped", "of cycles", "share", "per plane (LSB first)"):
        table.add_column(col, justify="left" if col in ("layer", "per plane (LSB first)") else "right")
    for r in rows:
        full = r["executes"] + r["skipped_cycles"]
        per = " ".join(f"{100 * v / (full / len(r['skipped_by_plane'])):.0f}%" if full else "-"
                       for v in r["skipped_by_plane"])
        table.add_row(r["name"], f"{r['skipped_cycles']:,}", f"{full:,}",
                      f"{100 * r['skipped_cycles'] / full:.1f}%" if full else "-", per)
    return table


def run_chip_report(module: ModuleOp, level: str, report: dict[str, Any],
                    tile_cycles: dict[str, dict[tuple[int, int, int], int]], hw: Hardware) -> tuple[dict[str, Any], Schedule, list[Any]]:
    """The chip's view of an executed run: the schedule of the program as run (one run of the
    run's batch, the cycles it executed) and, at ``xbar-opt``, each optimisation's contribution
    with the measured run-time skipping. Returns (JSON part, schedule, tables to print)."""
    from cimc.pipeline import lower

    batch = int(report["batch"])
    program = module.clone()
    lower(program, level, hw=hw)
    sched = chip_schedule(program, hw, batch=batch, stream=batch, measured=tile_cycles)
    out: dict[str, Any] = {"chip": sched.as_dict(events=False)}
    tables = [t for t in (skip_table(report),) if t is not None]
    if level == "xbar-opt":
        unopt = module.clone()
        lower(unopt, "xbar", hw=hw)
        out["optimisations"] = opt_steps(unopt, hw, batch=batch, stream=batch, measured=tile_cycles)
        tables.append(steps_table(out["optimisations"], "each optimisation's contribution (this run)"))
    return out, sched, tables
