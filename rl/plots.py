"""Plots of searches: one run's episodes (``search.png``) and learning curves over seeds."""

from __future__ import annotations

import io
import os
from typing import Any

import numpy as np

from cimc.cli_util import atomic_write_bytes


def plot_search(history: list[dict[str, Any]], best: dict[str, Any] | None, names: list[str],
                path: str | os.PathLike[str]) -> None:
    """``search.png``: reward and speedup per episode, and the best policy's bits per layer."""
    if not history:
        return
    import matplotlib.pyplot as plt

    fig = search_figure(history, best, names)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def search_figure(history: list[dict[str, Any]], best: dict[str, Any] | None, names: list[str]):
    """The figure of :func:`plot_search`: whole-number episode ticks, every axis labelled, the
    legends outside the axes (never over the points)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    eps = [r["episode"] for r in history]
    fig, axes = plt.subplots(3, 1, figsize=(10, 9), constrained_layout=True)
    outside = {"loc": "upper left", "bbox_to_anchor": (1.08, 1.0), "fontsize": 8}
    ax = axes[0]
    ax.plot(eps, [r["reward"] for r in history], ".", ms=3, label="reward")
    ax.plot(eps, np.maximum.accumulate([r["reward"] for r in history]), "-", lw=1.5, label="best so far")
    ax.set_ylabel("reward")
    ax.set_xlabel("episode")
    ax.legend(**outside)
    ax = axes[1]
    speed = ax.plot(eps, [r["speedup"] for r in history], ".", ms=3, color="tab:green", label="speedup")
    ax2 = ax.twinx()
    acc = ax2.plot(eps, [r["accuracy"] for r in history], ".", ms=3, color="tab:red", label="top-1 accuracy")
    ax.set_ylabel("speedup vs W8A8 (x)", color="tab:green")
    ax2.set_ylabel("top-1 accuracy (%)", color="tab:red")
    ax.set_xlabel("episode")
    ax.legend(handles=speed + acc, **outside)
    for a in axes[:2]:
        a.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax = axes[2]
    ax.set_xlabel("crossbar layer")
    ax.set_ylabel("bits")
    if best is not None:
        pol = np.asarray(best["policy"])
        x = np.arange(len(pol))
        ax.bar(x - 0.2, pol[:, 0], width=0.4, label="weight bits")
        ax.bar(x + 0.2, pol[:, 1], width=0.4, label="activation bits")
        ax.set_xticks(x)
        ax.set_xticklabels(names, rotation=60, ha="right", fontsize=7)
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(f"best: episode {best['episode']}, reward {best['reward']:.2f}, "
                     f"{best['speedup']:.2f}x, {best['accuracy']:.2f} %")
        ax.legend(**outside)
    return fig
