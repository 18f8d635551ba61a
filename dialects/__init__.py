"""cimc dialects: ``cimq`` (mixed-precision quantized tensors) and ``xbar`` (crossbars).

Registries are lazy: :func:`get_all_dialects` maps names to factories so that importing this
package costs nothing until a dialect is needed.
"""

from __future__ import annotations

from collections.abc import Callable

from xdsl.ir import Dialect


def _cimq() -> Dialect:
    from cimc.dialects.cimq import CIMQ

    return CIMQ


def _xbar() -> Dialect:
    from cimc.dialects.xbar import XBAR

    return XBAR


def get_all_dialects() -> dict[str, Callable[[], Dialect]]:
    """cimc's own dialects by name."""
    dialects: dict[str, Callable[[], Dialect]] = {"cimq": _cimq}
    try:
        import cimc.dialects.xbar  # noqa: F401
    except ImportError:
        return dialects
    dialects["xbar"] = _xbar
    return dialects
