"""What running a module returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class RunResult:
    """The outputs of ``@main``, the counters report (xbar levels) and its table."""

    outputs: list[np.ndarray]
    report: dict[str, Any] = field(default_factory=dict)
    counters_table: Any = None
    tile_cycles: dict[str, dict[tuple[int, int, int], int]] = field(default_factory=dict)
    """Cycles each tile ``(h, rt, ct)`` executed, per layer that skipped cycles (xbar levels):
    what the chip schedule of the run is made of (:func:`cimc.chip_report.chip_schedule`)."""
