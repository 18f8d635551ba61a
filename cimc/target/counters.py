"""Hardware event counters, their closed form per layer, and latency: each defined once.

:class:`Counters` is the one record of counted events; the bit-serial interpreter increments one
per layer as it executes (program a tile, drive a plane, convert columns), and
:func:`layer_counters` gives the same numbers in closed form from a :class:`LayerGeometry`. A
new event is one field here plus its term in :func:`tile_counters` (and wherever it happens in
the interpreter, which the closed-form tests then hold to it).

Every count is a sum over the programmed tiles of a layer. A tile that uses ``rows_t`` rows and
``cols_t`` columns and runs ``k`` cycles (``k = P * ceil(a/d) * B``: one per vector and DAC
chunk) contributes (:func:`tile_counters`)::

    writes          = w                      (w = B: every inference programs it; 1 if amortised)
    cells_written   = w * rows_t * cols_t
    executes        = k                      (crossbar cycles)
    adc_conversions = k * cols_t             (per cycle: the tile's columns)
    adc_slots       = k * ceil(cols_t / adcs)  (per cycle: conversions in turns of the array's ADCs)
    dac_activations = k * rows_t             (per cycle: the tile's rows)
    cell_reads      = k * rows_t * cols_t    (per cycle: the tile's cells in use)
    shift_adds      = k * cols_t             (each converted code shifted and accumulated)
    skipped_cycles  = 0                      (run time only: cycles whose input plane was zero
                                              on every row of the tile, not executed)
    adc_saturations : counted at run time only (0 with a lossless ADC)

and once per layer, after its tiles, ``recombine_adds = H * P * B * cols`` (each physical column
value weighted into its output, :func:`layer_counters`). A stored operand with a zero point
``zw`` (``xbar.zp_correct``) adds ``H * P * B * (n + m)`` more (:func:`zero_point_adds`: per
vector, ``n`` to sum the centred input row, ``m`` to subtract ``zw`` times it from the outputs);
like the signed-input / input zero point correction (a constant per output, folded into the
recombination) it is digital work outside the paper's latency. ``host_elements`` (elements produced by
the host compute ops) and ``host_macs`` (multiply-adds of the products left on the host) are
counted apart from the crossbar layers (:mod:`cimc.analysis`).

Summed over a full ``row_tiles x col_tiles`` grid of ``H`` repeats this is the paper's
``writes = H * X`` and ``executes = H * X * P * ceil(a/d)`` (:func:`layer_counters`). With
one ADC per column (the default) ``adc_slots == executes``.

Latency of counted activity on one array (the paper's model, :func:`latency_us`)::

    writes * t_write + executes * t_exec + (adc_slots - executes) * t_adc

(a cycle is ``t_exec`` with one ADC slot; every further slot adds ``t_adc``). A chip with many
arrays runs tiles in parallel: :mod:`cimc.target.schedule` places them and uses this latency
per array.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

from cimc.target.geometry import ceil_div, tile_bounds

if TYPE_CHECKING:
    from cimc.target.geometry import LayerGeometry
    from cimc.target.hw import Hardware


@dataclass
class Counters:
    """Hardware activity (mutable; ``+``, ``+=`` and ``* k`` work field by field)."""

    writes: int = 0
    """Tile writes (programming operations of an array)."""
    cells_written: int = 0
    """Cells programmed: ``rows_used * cols_used`` per tile."""
    executes: int = 0
    """Crossbar cycles executed: one per vector and chunk per tile."""
    adc_conversions: int = 0
    """Column conversions: per cycle, the tile's columns in use."""
    adc_saturations: int = 0
    """Conversions whose value the ADC clipped."""
    dac_activations: int = 0
    """Row drives: per cycle, the tile's rows in use."""
    adc_slots: int = 0
    """ADC time slots: per cycle, ``ceil(columns in use / ADCs per array)``."""
    skipped_cycles: int = 0
    """Cycles not executed: their input plane was zero on every row of the tile (run time)."""
    cell_reads: int = 0
    """Cells read: per cycle, the tile's rows in use times its columns in use."""
    shift_adds: int = 0
    """Digital shift-and-accumulate of converted codes into the column accumulators."""
    recombine_adds: int = 0
    """Digital recombination: each physical column value weighted and added into its output."""
    host_elements: int = 0
    """Elements produced by host compute ops (requantize, activations, pools, softmax, ...)."""
    host_macs: int = 0
    """Multiply-adds of the products on the host (``cimq.host_conv`` / ``host_matmul``: a Conv,
    Gemm or MatMul that is not on crossbars): each output element times its reduction length."""

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


def _adcs(hw: Hardware | None, tile_cols: int) -> int:
    """ADCs per array (one per column without a hardware description)."""
    return hw.adcs if hw is not None else tile_cols


def tile_counters(rows_t: int, cols_t: int, cycles: int, writes: int, adcs: int,
                  programmed: int | None = None) -> Counters:
    """One programmed tile (``writes`` writes of it) running ``cycles`` cycles: the one closed
    form of every per-tile count (module docstring). The interpreter counts the same events.
    ``programmed``: how often its cells are programmed, if not by its own writes (a tile in a
    shared array is programmed by the write of the group's first tile)."""
    programmed = writes if programmed is None else programmed
    return Counters(
        writes=writes,
        cells_written=programmed * rows_t * cols_t,
        executes=cycles,
        adc_conversions=cycles * cols_t,
        dac_activations=cycles * rows_t,
        adc_slots=cycles * ceil_div(cols_t, adcs),
        cell_reads=cycles * rows_t * cols_t,
        shift_adds=cycles * cols_t,
    )


def cycle_counters(rows_t: int, cols_t: int, cycles: int, adcs: int, saturations: int = 0,
                   skipped: int = 0) -> Counters:
    """``cycles`` executed cycles (and ``skipped`` ones) of a tile, as the interpreter counts them."""
    c = tile_counters(rows_t, cols_t, cycles, 0, adcs)
    c.adc_saturations = saturations
    c.skipped_cycles = skipped
    return c


def layer_tiles(geom: LayerGeometry) -> Iterable[tuple[int, int, int, int, int]]:
    """``(h, rt, ct, rows_t, cols_t)`` of every programmed tile of a layer, in program order."""
    rows = tile_bounds(geom.phys_rows, geom.tile_rows)
    cols = tile_bounds(geom.phys_cols, geom.tile_cols)
    if geom.tile_list is not None:
        for h, rt, ct in geom.tile_list:
            yield h, rt, ct, rows[rt][1] - rows[rt][0], cols[ct][1] - cols[ct][0]
        return
    for h in range(geom.repeats):
        for rt, (r0, r1) in enumerate(rows):
            for ct, (c0, c1) in enumerate(cols):
                yield h, rt, ct, r1 - r0, c1 - c0


def zero_point_adds(h: int, p: int, n: int, m: int, batch: int = 1) -> int:
    """Digital adds of ``xbar.zp_correct`` for ``batch`` inferences: ``H * P * B * (n + m)``."""
    return h * p * batch * (n + m)


def writes_per_run(batch: int, *, dynamic: bool = False, amortised: bool = False) -> int:
    """Writes of a tile in a run of ``batch`` inferences: one per inference (the paper; run-time
    written tiles always), or one for the whole batch when amortised (``xbar-batch-amortise``)."""
    return 1 if amortised and not dynamic else batch


def layer_counters(geom: LayerGeometry, hw: Hardware | None = None, *, batch: int = 1,
                   dynamic: bool = False, amortised: bool = False, shared: bool = False,
                   zero_point: bool = False) -> Counters:
    """The closed-form counters of ``batch`` inferences of a layer (no saturations, no skips).

    Every inference programs every tile (:func:`writes_per_run`). ``shared``: its one tile sits
    in an array programmed by an earlier layer's write (``xbar-pack``): its cells are counted,
    the write is not. ``hw`` gives the ADCs per array (one per column if None).
    ``zero_point``: the stored operand's zero point is corrected digitally (:func:`zero_point_adds`).
    """
    cycles = batch * geom.desc.P * geom.chunks
    wmul = writes_per_run(batch, dynamic=dynamic, amortised=amortised)
    adcs = _adcs(hw, geom.tile_cols)
    recombine = geom.repeats * batch * geom.desc.P * geom.phys_cols  # once per layer, after its tiles
    if zero_point:
        d = geom.desc
        recombine += zero_point_adds(d.H, d.P, d.n, d.m, batch)
    if geom.tile_list is not None or shared:
        total = Counters(recombine_adds=recombine)
        for *_, rows_t, cols_t in layer_tiles(geom):
            total += tile_counters(rows_t, cols_t, cycles, 0 if shared else wmul, adcs, programmed=wmul)
        return total
    # The grid factorises: sum over row tiles x column tiles of the per-tile terms.
    row_sizes = [r1 - r0 for r0, r1 in tile_bounds(geom.phys_rows, geom.tile_rows)]
    col_sizes = [c1 - c0 for c0, c1 in tile_bounds(geom.phys_cols, geom.tile_cols)]
    n_rows, n_cols = len(row_sizes), len(col_sizes)
    slots = sum(ceil_div(c, adcs) for c in col_sizes)
    h = geom.repeats
    return Counters(
        writes=h * n_rows * n_cols * wmul,
        cells_written=h * geom.phys_rows * geom.phys_cols * wmul,
        executes=h * n_rows * n_cols * cycles,
        adc_conversions=h * cycles * geom.phys_cols * n_rows,
        adc_saturations=0,
        dac_activations=h * cycles * geom.phys_rows * n_cols,
        adc_slots=h * cycles * n_rows * slots,
        skipped_cycles=0,
        cell_reads=h * cycles * geom.phys_rows * geom.phys_cols,
        shift_adds=h * cycles * geom.phys_cols * n_rows,
        recombine_adds=recombine,
        host_elements=0,
        host_macs=0,
    )


def latency_us(counters: Counters, hw: Hardware) -> float:
    """Latency of counted activity on one array: ``writes * t_write + executes * t_exec``, plus
    ``t_adc`` for every ADC slot beyond the first of a cycle (none with one ADC per column)."""
    lat = counters.writes * hw.t_write_us + counters.executes * hw.t_exec_us
    extra = counters.adc_slots - counters.executes
    return lat + extra * hw.t_adc_us if extra else lat
