"""Hardware event counters, their closed form per layer, and latency: each defined once.

:class:`Counters` is the one record of counted events; the bit-serial interpreter increments one
per layer as it executes (program a tile, drive a plane, convert columns), and
:func:`layer_counters` gives the same numbers in closed form from a :class:`LayerGeometry`. A
new event is one field here plus its term in :func:`layer_counters` (and wherever it happens in
the interpreter, which the closed-form tests then hold to it).

For a layer with ``H`` repeats, ``P`` vectors per inference, ``X = row_tiles * col_tiles``
tiles of the physical ``rows x cols`` matrix and ``ceil(a/d)`` chunks, at batch ``B``::

    writes          = H * X                           (x B for dynamic, run-time written tiles)
    cells_written   = H * rows * cols                 (x B for dynamic)
    executes        = H * X * P * ceil(a/d) * B       (crossbar cycles)
    adc_conversions = H * P * ceil(a/d) * B * cols * row_tiles   (per cycle: the tile's columns)
    dac_activations = H * P * ceil(a/d) * B * rows * col_tiles   (per cycle: the tile's rows)
    cell_reads      = H * P * ceil(a/d) * B * rows * cols        (per cycle: the tile's cells)
    shift_adds      = adc_conversions                 (each converted code shifted and accumulated)
    recombine_adds  = H * P * B * cols                (each physical column value into its output)
    adc_saturations : counted at run time only (0 with a lossless ADC)
    host_elements   : elements produced by host compute ops (counted apart from the crossbar
                      layers, :mod:`cimc.analysis`)

Summing a tile's ``rows_t * cols_t`` over the tiles of a layer gives ``rows * cols`` (edge tiles
included), hence the closed form of ``cell_reads``.

Latency (the paper's model): ``writes * t_write + executes * t_exec`` (:func:`latency_us`).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cimc.target.geometry import LayerGeometry
    from cimc.target.hw import Hardware


@dataclass
class Counters:
    """Hardware activity (mutable; ``+``, ``+=`` and ``* k`` work field by field)."""

    writes: int = 0
    """Tiles programmed."""
    cells_written: int = 0
    """Cells programmed: ``rows_used * cols_used`` per tile."""
    executes: int = 0
    """Crossbar cycles: one per vector and chunk per tile."""
    adc_conversions: int = 0
    """Column conversions: per cycle, the tile's columns in use."""
    adc_saturations: int = 0
    """Conversions whose value the ADC clipped."""
    dac_activations: int = 0
    """Row drives: per cycle, the tile's rows in use."""
    cell_reads: int = 0
    """Cells read: per cycle, the tile's rows in use times its columns in use."""
    shift_adds: int = 0
    """Digital shift-and-accumulate of converted codes into the column accumulators."""
    recombine_adds: int = 0
    """Digital recombination: each physical column value weighted and added into its output."""
    host_elements: int = 0
    """Elements produced by host compute ops (requantize, activations, pools, softmax, ...)."""

    def __add__(self, other: Counters) -> Counters:
        return Counters(**{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)})

    def __iadd__(self, other: Counters) -> Counters:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))
        return self

    def __mul__(self, k: int) -> Counters:
        return Counters(**{f.name: getattr(self, f.name) * k for f in fields(self)})

    __rmul__ = __mul__

    def as_dict(self) -> dict[str, int]:
        """The counts as a plain dict (field order)."""
        return {f.name: int(getattr(self, f.name)) for f in fields(self)}


COUNTER_NAMES: tuple[str, ...] = tuple(f.name for f in fields(Counters))


def layer_counters(geom: LayerGeometry, *, batch: int = 1, dynamic: bool = False) -> Counters:
    """The closed-form counters of ``batch`` inferences of a layer (no saturations)."""
    d = geom.desc
    cycles_per_tile = batch * d.P * geom.chunks  # one per vector and chunk
    wmul = batch if dynamic else 1
    conversions = d.H * cycles_per_tile * geom.phys_cols * geom.row_tiles
    return Counters(
        writes=d.H * geom.tiles * wmul,
        cells_written=d.H * geom.phys_rows * geom.phys_cols * wmul,
        executes=d.H * geom.tiles * cycles_per_tile,
        adc_conversions=conversions,
        adc_saturations=0,
        dac_activations=d.H * cycles_per_tile * geom.phys_rows * geom.col_tiles,
        cell_reads=d.H * cycles_per_tile * geom.phys_rows * geom.phys_cols,
        shift_adds=conversions,
        recombine_adds=d.H * batch * d.P * geom.phys_cols,
        host_elements=0,
    )


def latency_us(counters: Counters, hw: Hardware) -> float:
    """The paper's latency of counted activity: ``writes * t_write + executes * t_exec``."""
    return counters.writes * hw.t_write_us + counters.executes * hw.t_exec_us
