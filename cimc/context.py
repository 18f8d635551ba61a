"""The xDSL context with every dialect a cimc program can contain."""

from __future__ import annotations

from xdsl.context import Context
from xdsl.dialects import arith, builtin, func, scf


def make_context() -> Context:
    """A context with builtin, func, arith, scf and cimc's dialects loaded (lazily)."""
    from cimc.dialects import get_all_dialects

    ctx = Context()
    for dialect in (builtin.Builtin, func.Func, arith.Arith, scf.Scf):
        ctx.load_dialect(dialect)
    for name, factory in get_all_dialects().items():
        ctx.register_dialect(name, factory)
    return ctx
