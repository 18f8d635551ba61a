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
