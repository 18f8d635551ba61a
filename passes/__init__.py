"""cimc's rewrite passes, one per file, each a frozen dataclass ``ModulePass``.

:func:`get_all_passes` is the lazy registry (name -> factory returning the pass class), used by
``cimc-opt``, the ``xdsl.universe`` entry point and :mod:`cimc.pipeline`.

May import: xDSL, numpy, :mod:`cimc.dialects`, :mod:`cimc.target`, :mod:`cimc.analysis`,
:mod:`cimc.semantics`, :mod:`cimc.errors`. No pass maps weights to cells or runs a program.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from xdsl.passes import ModulePass

#: pass name -> (module in cimc.passes, class name)
_PASSES: dict[str, tuple[str, str]] = {
    "cimq-fuse-requantize": ("fuse_requantize", "FuseRequantizePass"),
    "convert-cimq-to-xbar": ("convert_cimq_to_xbar", "ConvertCimqToXbarPass"),
    "xbar-tile": ("xbar_tile", "XbarTilePass"),
    "xbar-narrow-slices": ("xbar_narrow_slices", "XbarNarrowSlicesPass"),
    "xbar-set-bits": ("xbar_set_bits", "XbarSetBitsPass"),
    "xbar-pack": ("xbar_pack", "XbarPackPass"),
    "xbar-skip-zero-weights": ("xbar_skip_zero_weights", "XbarSkipZeroWeightsPass"),
    "xbar-skip-zero-planes": ("xbar_skip_zero_planes", "XbarSkipZeroPlanesPass"),
    "xbar-batch-amortise": ("xbar_batch_amortise", "XbarBatchAmortisePass"),
}


def _factory(module: str, cls: str) -> Callable[[], type[ModulePass]]:
    def load() -> type[ModulePass]:
        return getattr(importlib.import_module(f"cimc.passes.{module}"), cls)

    return load


def get_all_passes() -> dict[str, Callable[[], type[ModulePass]]]:
    return {name: _factory(m, c) for name, (m, c) in _PASSES.items()}
