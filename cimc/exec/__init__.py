"""Execution of every cimc IR level in xDSL's interpreter.

What lives here: the interpreter functions per dialect (:mod:`cimc.exec.cimq_exec` for the cimq
host ops, :mod:`cimc.exec.xbar_impls` for the xbar ops with the tile loop in
:mod:`cimc.exec.xbar_tiles` and per-run records in :mod:`cimc.exec.xbar_records`), the exact fast path
(:mod:`cimc.exec.fast_path`), host kernels (:mod:`cimc.exec.host`), the xbar driver with its
counters report (:mod:`cimc.exec.xbar_exec`) and :func:`run_at_level`, which lowers a copy of a
module to a level and runs it. Program analysis (counts read off the IR) is
:mod:`cimc.analysis`; the crossbar arithmetic is :mod:`cimc.target`.

May import: xDSL, numpy, :mod:`cimc.pipeline`, :mod:`cimc.passes`, :mod:`cimc.analysis`,
:mod:`cimc.dialects`, :mod:`cimc.semantics`, :mod:`cimc.target`, :mod:`cimc.weights`,
:mod:`cimc.errors`. Not the CLI, the report, the models or the search.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from xdsl.dialects.builtin import ModuleOp

from cimc.errors import ExecutionError
from cimc.exec.cimq_exec import run_cimq
from cimc.exec.result import RunResult
from cimc.exec.xbar_exec import run_xbar
from cimc.ir_io import module_level
from cimc.pipeline import check_level, level_names, lower
from cimc.target.hw import Hardware

__all__ = ["RunResult", "lowered_copy", "run_at_level"]


def lowered_copy(module: ModuleOp, level: str, *, hw: Hardware | None = None) -> ModuleOp:
    """A copy of ``module`` lowered to ``level``; an error if the module is already past it."""
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
    hw: Hardware | None = None,
    progress: bool = False,
    fast: bool | None = None,
) -> RunResult:
    """Lower a copy of ``module`` to ``level`` and execute it on ``inputs``.

    ``fast`` (xbar levels): exact one-step layers or the bit-serial loops; None picks the fast
    path where the ADC is lossless.
    """
    program = lowered_copy(module, level, hw=hw)
    if not level.startswith("xbar"):
        outs, _ = run_cimq(program, inputs)
        return RunResult(outs)
    return run_xbar(program, inputs, hw=hw, progress=progress, fast=fast)
