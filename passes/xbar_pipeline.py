"""The crossbar levels of cimc, appended by :mod:`cimc.pipeline` after ``cimq-fused``.

* ``xbar-mm``: products as layer-level integer matmuls (``convert-cimq-to-xbar``);
* ``xbar``: tiled bit-serial crossbar programs (``xbar-tile``, options from the hardware): the
  paper's cost model exactly;
* ``xbar-opt``: ``xbar`` plus the optimisations that beat the paper's formula, each its own
  pass, in this order (:data:`OPT_PASSES`): ``xbar-narrow-slices`` (fewer slices),
  ``xbar-pack`` (block-diagonal repeats, shared arrays), ``xbar-skip-zero-weights`` (all-zero
  slices and tiles, compile time), ``xbar-skip-zero-planes`` (zero input planes, run time) and
  ``xbar-batch-amortise`` (one write per batch).
  Every one is exact: the results equal ``cimq``'s integer for integer.
"""

from __future__ import annotations

from collections.abc import Callable

from xdsl.passes import ModulePass

from cimc.passes.convert_cimq_to_xbar import ConvertCimqToXbarPass
from cimc.passes.xbar_batch_amortise import XbarBatchAmortisePass
from cimc.passes.xbar_narrow_slices import XbarNarrowSlicesPass
from cimc.passes.xbar_pack import XbarPackPass
from cimc.passes.xbar_skip_zero_weights import XbarSkipZeroWeightsPass
from cimc.passes.xbar_skip_zero_planes import XbarSkipZeroPlanesPass
from cimc.passes.xbar_tile import XbarTilePass
from cimc.target.hw import Hardware


def xbar_mm_passes(hw: Hardware | None) -> list[ModulePass]:
    return [ConvertCimqToXbarPass()]


def xbar_passes(hw: Hardware | None) -> list[ModulePass]:
    return [XbarTilePass.from_hardware(hw if hw is not None else Hardware())]


#: The ``xbar-opt`` passes in order (name, factory); reports show each one's contribution.
OPT_PASSES: tuple[tuple[str, Callable[[], ModulePass]], ...] = (
    ("xbar-narrow-slices", XbarNarrowSlicesPass),
    ("xbar-pack", XbarPackPass),
    ("xbar-skip-zero-weights", XbarSkipZeroWeightsPass),
    ("xbar-skip-zero-planes", XbarSkipZeroPlanesPass),
    ("xbar-batch-amortise", XbarBatchAmortisePass),
)


def xbar_opt_passes(hw: Hardware | None) -> list[ModulePass]:
    return [make() for _, make in OPT_PASSES]


LEVELS: tuple[tuple[str, str, Callable[[Hardware | None], list[ModulePass]]], ...] = (
    ("xbar-mm", "crossbar products as layer-level integer matmuls (host ops stay cimq)", xbar_mm_passes),
    ("xbar", "tiled bit-serial crossbar programs (the paper's cost model)", xbar_passes),
    ("xbar-opt", "xbar with cimc's optimisations (narrow slices, packing, zero slices/tiles/planes, batch amortisation)",
     xbar_opt_passes),
)
