"""The CIM target model: the crossbar hardware and everything derived from it, defined once.

What lives here (no IR, no interpreter):

* :mod:`cimc.target.hw`: :class:`Hardware`, the one hardware dataclass (YAML loading, ADC ranges,
  ``MAPPINGS``);
* :mod:`cimc.target.geometry`: the layer descriptor :class:`LayerDesc` ``(m, n, P, H)`` and its
  geometry at given bits (:func:`layer_geometry`: slices, physical rows and columns per mapping,
  tiles, chunks), ``KINDS``, ``ceil_div``;
* :mod:`cimc.target.counters`: :class:`Counters` (every counted event), their closed form per
  layer (:func:`layer_counters`) and the latency (:func:`latency_us`);
* :mod:`cimc.target.cost`: the paper's network cost built from those (``layer_cost``,
  ``network_cost``, ``speedup``);
* :mod:`cimc.target.energy`: energy of counted events (counters x per-event parameters of a
  YAML preset, leakage over the latency) and area; presets ship as package data
  (``presets/energy/*.yaml``);
* :mod:`cimc.target.mapping`: weights onto cells, recombination, the signed-input correction;
* :mod:`cimc.target.kernels`: the bit-serial kernels (program a tile, planes, a tile's cycles,
  the ADC) and a whole-layer driver.

May import: numpy, numba, PyYAML (lazily) and :mod:`cimc.errors`; nothing else of cimc. Every
other part of cimc (dialect verifiers, passes, program analysis, the interpreter, the report,
the search) asks this package. This ``__init__`` loads only the light modules; import
``cimc.target.mapping`` / ``cimc.target.kernels`` (numba) where cells or cycles are needed.
"""

from cimc.target.cost import LayerCost, NetworkCost, layer_cost, network_cost, speedup, uniform_policy
from cimc.target.counters import (
    COUNTER_NAMES,
    Counters,
    cycle_counters,
    latency_us,
    layer_counters,
    layer_tiles,
    tile_counters,
)
from cimc.target.geometry import (
    KINDS,
    LayerDesc,
    LayerGeometry,
    ceil_div,
    chunks,
    layer_geometry,
    physical_shape,
    slices,
    tile_bounds,
)
from cimc.target.hw import MAPPINGS, RESIDENCY, Hardware, column_value_max, lossless_adc_bits

__all__ = [
    "COUNTER_NAMES", "KINDS", "MAPPINGS", "RESIDENCY", "Counters", "cycle_counters", "layer_tiles",
    "tile_counters", "Hardware", "LayerCost", "LayerDesc",
    "LayerGeometry", "NetworkCost", "ceil_div", "chunks", "column_value_max", "latency_us",
    "layer_cost", "layer_counters", "layer_geometry", "lossless_adc_bits", "network_cost",
    "physical_shape", "slices", "speedup", "tile_bounds", "uniform_policy",
]
