"""Execution of every cimc IR level.

:func:`run_at_level` lowers a module to the asked level (verifying after each pass) and runs it:
``cimq`` levels with :mod:`cimc.exec.cimq_exec`, ``xbar`` levels with the bit-serial crossbar
interpreter :mod:`cimc.exec.xbar_exec`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from xdsl.dialects.builtin import ModuleOp

from cimc.errors import ExecutionError


@dataclass
class RunResult:
    outputs: list[np.ndarray]
    report: dict[str, Any] = field(default_factory=dict)
    counters_table: Any = None


def lowered_copy(module: ModuleOp, level: str, *, hw: object = None) -> ModuleOp:
    """A copy of ``module`` lowered to ``level``; an error if the module is already past it."""
    from cimc.ir_io import module_level
    from cimc.pipeline import check_level, level_names, lower

    check_level(level)
    current = module_level(module) or "cimq"
    names = level_names()
    if names.index(current) > names.index(level):
        raise ExecutionError(
            f"the module is at level '{current}', past the asked level '{level}'; run it at "
            f"--level {current} or give the ONNX file"
        )
    copy = module.clone()
    lower(copy, level, hw=hw)
    return copy


def run_at_level(
    module: ModuleOp,
    level: str,
    inputs: Sequence[np.ndarray],
    *,
    hw: object = None,
    progress: bool = False,
    fast: bool | None = None,
) -> RunResult:
    """Lower a copy of ``module`` to ``level`` and execute it on ``inputs``.

    ``fast`` (xbar levels): exact one-step layers or the bit-serial loops; None picks the fast
    path where the ADC is lossless.
    """
    program = lowered_copy(module, level, hw=hw)
    if not level.startswith("xbar"):
        from cimc.exec.cimq_exec import run_cimq

        outs, _ = run_cimq(program, inputs)
        return RunResult(outs)
    from cimc.exec.xbar_exec import run_xbar

    return run_xbar(program, inputs, hw=hw, progress=progress, fast=fast)
