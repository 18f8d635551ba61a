"""cimc dialects: ``cimq`` (mixed-precision quantized tensors) and ``xbar`` (crossbars).

Registries are lazy: :func:`get_all_dialects` maps names to factories so that importing this
package costs nothing until a dialect is needed.

May import: xDSL, numpy, :mod:`cimc.target` (mappings, kinds, geometry for the verifiers),
:mod:`cimc.weights` (the data of ``#cimq.blob``), :mod:`cimc.errors`.
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
    return {"cimq": _cimq, "xbar": _xbar}
