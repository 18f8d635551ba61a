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


def _hardware(hw: object):
    from cimc.hw import Hardware

    return hw if hw is not None else Hardware()


def xbar_mm_passes(hw: object) -> list[ModulePass]:
    from cimc.passes.convert_cimq_to_xbar import ConvertCimqToXbarPass

    return [ConvertCimqToXbarPass()]


def xbar_passes(hw: object) -> list[ModulePass]:
    from cimc.passes.xbar_tile import XbarTilePass

    return [XbarTilePass.from_hardware(_hardware(hw))]


def xbar_opt_passes(hw: object) -> list[ModulePass]:
    from cimc.passes.xbar_narrow_slices import XbarNarrowSlicesPass

    return [XbarNarrowSlicesPass()]


LEVELS: list[tuple[str, str, Callable[[object], list[ModulePass]]]] = [
    ("xbar-mm", "crossbar products as layer-level integer matmuls (host ops stay cimq)", xbar_mm_passes),
    ("xbar", "tiled bit-serial crossbar programs (the paper's cost model)", xbar_passes),
    ("xbar-opt", "xbar with opt-in optimisations (narrow weight slices)", xbar_opt_passes),
]
