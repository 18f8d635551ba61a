"""The IR levels of cimc and the pass pipelines between them (xDSL Toy style).

A level is a name; reaching it from the imported ``cimq`` module applies every pass listed for it
and for the levels before it. The module is verified after every pass. The same pipeline is what
``cimc lower --to LEVEL`` runs and what ``cimc-opt -p ...`` can spell out pass by pass.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TextIO

from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp
from xdsl.passes import ModulePass
from xdsl.utils.exceptions import VerifyException

from cimc.context import make_context
from cimc.errors import CimcError
from cimc.ir_io import module_level, module_text, set_module_level
from cimc.passes import xbar_pipeline
from cimc.passes.fuse_requantize import FuseRequantizePass
from cimc.target.hw import Hardware


def _cimq_passes(hw: Hardware | None) -> list[ModulePass]:
    return []


def _cimq_fused_passes(hw: Hardware | None) -> list[ModulePass]:
    return [FuseRequantizePass()]


#: ``(level name, what it is, factory of the passes that lead to it from the previous level)``,
#: in lowering order: the pipeline is data.
LEVELS: tuple[tuple[str, str, Callable[[Hardware | None], list[ModulePass]]], ...] = (
    ("cimq", "quantized tensor ops as imported from ONNX", _cimq_passes),
    ("cimq-fused", "requantization chains fused into cimq.requantize", _cimq_fused_passes),
    *xbar_pipeline.LEVELS,
)


def level_names() -> list[str]:
    return [name for name, _, _ in LEVELS]


def levels() -> list[tuple[str, str]]:
    return [(name, doc) for name, doc, _ in LEVELS]


def check_level(level: str) -> str:
    names = [n for n, _ in levels()]
    if level not in names:
        raise CimcError(f"unknown level '{level}': choose one of {', '.join(names)}")
    return level


def passes_between(start: str, target: str, hw: Hardware | None = None) -> list[ModulePass]:
    """The passes that take a module at level ``start`` to level ``target``."""
    names = [n for n, _ in levels()]
    check_level(start)
    check_level(target)
    i, j = names.index(start), names.index(target)
    if j < i:
        raise CimcError(
            f"the module is already at level '{start}', below '{target}': cimc cannot raise IR"
        )
    out: list[ModulePass] = []
    for _, _, factory in LEVELS[i + 1 : j + 1]:
        out.extend(factory(hw))
    return out


def apply_passes(
    ctx: Context,
    module: ModuleOp,
    passes: list[ModulePass],
    *,
    print_between: bool = False,
    stream: TextIO = sys.stderr,
) -> None:
    """Apply ``passes`` in order, verifying after each; optionally print the IR between them."""
    for p in passes:
        p.apply(ctx, module)
        try:
            module.verify()
        except VerifyException as exc:
            raise CimcError(
                f"pass '{p.name}' produced invalid IR: {str(exc).splitlines()[0]}"
            ) from exc
        if print_between:
            stream.write(f"// -----// IR after {p.name} //----- //\n")
            stream.write(module_text(module))


def lower(
    module: ModuleOp,
    target: str,
    *,
    hw: Hardware | None = None,
    ctx: Context | None = None,
    print_between: bool = False,
    stream: TextIO = sys.stderr,
) -> ModuleOp:
    """Lower ``module`` in place from its current level to ``target`` and return it."""
    start = module_level(module) or "cimq"
    ctx = ctx or make_context()
    apply_passes(ctx, module, passes_between(start, target, hw), print_between=print_between, stream=stream)
    set_module_level(module, target)
    return module
