"""The crossbar levels of cimc, appended by :mod:`cimc.pipeline` after ``cimq-fused``.

* ``xbar-mm``: products as layer-level integer matmuls (``convert-cimq-to-xbar``);
* ``xbar``: tiled bit-serial crossbar programs (``xbar-tile``, options from the hardware): the
  paper's cost model exactly;
* ``xbar-opt``: ``xbar`` plus opt-in optimisations (``xbar-narrow-slices``), which beat the
  paper's formula and so are not in the default level.
"""

from __future__ import annotations

from collections.abc import Callable

from xdsl.passes import ModulePass

from cimc.passes.convert_cimq_to_xbar import ConvertCimqToXbarPass
from cimc.passes.xbar_narrow_slices import XbarNarrowSlicesPass
from cimc.passes.xbar_tile import XbarTilePass
from cimc.target.hw import Hardware


def xbar_mm_passes(hw: Hardware | None) -> list[ModulePass]:
    return [ConvertCimqToXbarPass()]


def xbar_passes(hw: Hardware | None) -> list[ModulePass]:
    return [XbarTilePass.from_hardware(hw if hw is not None else Hardware())]


def xbar_opt_passes(hw: Hardware | None) -> list[ModulePass]:
    return [XbarNarrowSlicesPass()]


LEVELS: tuple[tuple[str, str, Callable[[Hardware | None], list[ModulePass]]], ...] = (
    ("xbar-mm", "crossbar products as layer-level integer matmuls (host ops stay cimq)", xbar_mm_passes),
    ("xbar", "tiled bit-serial crossbar programs (the paper's cost model)", xbar_passes),
    ("xbar-opt", "xbar with opt-in optimisations (narrow weight slices)", xbar_opt_passes),
)
