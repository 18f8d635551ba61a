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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    eps = [r["episode"] for r in history]
    fig, axes = plt.subplots(3, 1, figsize=(9, 9), constrained_layout=True)
    ax = axes[0]
    ax.plot(eps, [r["reward"] for r in history], ".", ms=3, label="reward")
    best_so_far = np.maximum.accumulate([r["reward"] for r in history])
    ax.plot(eps, best_so_far, "-", lw=1.5, label="best so far")
    ax.set_ylabel("reward")
    ax.legend(loc="lower right")
    ax = axes[1]
    ax.plot(eps, [r["speedup"] for r in history], ".", ms=3, color="tab:green", label="speedup")
    ax2 = ax.twinx()
    ax2.plot(eps, [r["accuracy"] for r in history], ".", ms=3, color="tab:red", label="accuracy")
    ax.set_ylabel("speedup vs W8A8")
    ax2.set_ylabel("top-1 %")
    ax.set_xlabel("episode")
    ax = axes[2]
    if best is not None:
        pol = np.asarray(best["policy"])
        x = np.arange(len(pol))
        ax.bar(x - 0.2, pol[:, 0], width=0.4, label="weight bits")
        ax.bar(x + 0.2, pol[:, 1], width=0.4, label="activation bits")
        ax.set_xticks(x)
        ax.set_xticklabels(names, rotation=60, ha="right", fontsize=7)
        ax.set_ylabel("bits")
        ax.set_title(f"best: episode {best['episode']}, reward {best['reward']:.2f}, "
                     f"{best['speedup']:.2f}x, {best['accuracy']:.2f} %")
        ax.legend(loc="upper right")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
