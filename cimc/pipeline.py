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

from cimc.errors import CimcError
from cimc.ir_io import module_level, module_text, set_module_level

#: (level name, what it is, factory of the passes that lead to it from the previous level)
_LEVELS: list[tuple[str, str, Callable[[object], list[ModulePass]]]] = []


def _cimq_passes(hw: object) -> list[ModulePass]:
    return []


def _cimq_fused_passes(hw: object) -> list[ModulePass]:
    from cimc.passes.fuse_requantize import FuseRequantizePass

    return [FuseRequantizePass()]


_LEVELS.append(("cimq", "quantized tensor ops as imported from ONNX", _cimq_passes))
_LEVELS.append(
    ("cimq-fused", "requantization chains fused into cimq.requantize", _cimq_fused_passes)
)


def _register_xbar_levels() -> None:
    try:
        from cimc.passes import xbar_pipeline
    except ImportError:
        return
    for name, doc, factory in xbar_pipeline.LEVELS:
        if name not in level_names():
            _LEVELS.append((name, doc, factory))


def level_names() -> list[str]:
    return [name for name, _, _ in _LEVELS]


def levels() -> list[tuple[str, str]]:
    _register_xbar_levels()
    return [(name, doc) for name, doc, _ in _LEVELS]


def check_level(level: str) -> str:
    names = [n for n, _ in levels()]
    if level not in names:
        raise CimcError(f"unknown level '{level}': choose one of {', '.join(names)}")
    return level


def passes_between(start: str, target: str, hw: object = None) -> list[ModulePass]:
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
    for _, _, factory in _LEVELS[i + 1 : j + 1]:
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
    hw: object = None,
    ctx: Context | None = None,
    print_between: bool = False,
    stream: TextIO = sys.stderr,
) -> ModuleOp:
    """Lower ``module`` in place from its current level to ``target`` and return it."""
    from cimc.context import make_context

    start = module_level(module) or "cimq"
    ctx = ctx or make_context()
    apply_passes(ctx, module, passes_between(start, target, hw), print_between=print_between, stream=stream)
    set_module_level(module, target)
    return module
