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

import io
from collections.abc import Sequence
from typing import Any

from xdsl.dialects.builtin import ModuleOp

from cimc.analysis import schedule_layers
from cimc.target.hw import Hardware
from cimc.target.schedule import Schedule, schedule


def chip_schedule(module: ModuleOp, hw: Hardware, *, batch: int = 1, stream: int = 1,
                  measured: dict[str, dict[tuple[int, int], int]] | None = None,
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
    cmap = plt.get_cmap("tab20" if n_layers > 10 else "tab10")
    height = min(0.25 * len(used) + 2.5, 14)
    fig, ax = plt.subplots(figsize=(11, height))
    by_key: dict[tuple[int, int, str], list[tuple[float, float]]] = {}
    for e in sched.events:
        by_key.setdefault((row_of[e.array], e.layer, e.kind), []).append((e.start, e.end - e.start))
    for (row, layer, kind), spans in by_key.items():
        ax.broken_barh(spans, (row - 0.4, 0.8), facecolors=cmap(layer % cmap.N),
                       hatch="////" if kind == "write" else None, edgecolor="black" if kind == "write" else None,
                       linewidth=0.2)
    ax.set_xlabel("time in one run (us)")
    ax.set_ylabel(f"array ({len(used)} of {sched.hw.arrays} used)")
    step = max(1, len(used) // 24)
    ax.set_yticks(range(0, len(used), step), [str(used[i]) for i in range(0, len(used), step)])
    ax.set_ylim(-0.6, len(used) - 0.4)
    ax.invert_yaxis()
    handles = [Patch(facecolor=cmap(i % cmap.N), label=s.name) for i, s in enumerate(sched.layers)]
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
        ax.annotate(f"{prev / v:.2f}x" if v > 0 else "", (i, hi), ha="center", va="bottom", fontsize=7,
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
