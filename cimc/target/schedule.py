"""The chip schedule: every tile of a compiled model on an array and a time slot.

Input: the programmed tiles of every crossbar layer in program order (:class:`SchedLayer`,
read off the ``xbar`` program by :func:`cimc.analysis.schedule_layers`): their rows and columns
in use, the cycles they run in one run of ``batch`` inputs, how often one run writes them, and
the packed group they share an array with. Output: a :class:`Schedule`.

**One run** (``batch`` inputs through the model). Layers run one after the other (a layer needs
the previous layer's outputs). A layer's tiles run in parallel on different arrays:

* a *resident* tile (or packed group) has an array of its own, programmed once before the
  stream (one-time programming); per run it only computes;
* every other tile runs on the *pool* (the arrays not holding resident tiles): the layer's pool
  tiles are assigned longest first to the least loaded pool array; each is written (its writes
  per run) and then computes. A packed group's tiles share the array its first tile was written
  to, without another write.
* *copies*: arrays a layer would leave idle hold copies of its tiles, and the tile's vectors
  (its cycles) are shared among the copies: on the pool when a layer has fewer tiles than pool
  arrays (each copy is written), and for resident tiles when arrays are left over once
  everything is resident (copies go, one at a time, to the unit whose compute takes longest;
  programmed once). Copies are a choice of the schedule (``replicate``), not of the program:
  the program's counters are those of one copy per tile; the schedule's writes include the
  copies.

An array's time in a layer is :func:`cimc.target.counters.latency_us` of the events placed on it
(writes, cycles, ADC slots); the layer takes the longest array (its *makespan*); the run takes the
sum of its layers. With one array and nothing resident this is exactly the paper's sum of
``writes * t_w + executes * t_e`` over the layers.

**Residency** (``hw.residency``). ``none``: nothing resident (the paper: every tile is written
for every inference). ``all``: every static tile (run-time written attention operands never are)
gets an array; if they do not fit (with one pool array left for run-time written tiles, if any)
that is an error. ``greedy``: as ``all`` when everything fits; otherwise the static units (a
tile, or a packed group) are ranked by the time they cost the pool per run (writes and cycles:
the time saved when they get an array of their own), the top ones are made resident and the
rest share a pool of ``P`` arrays; ``P`` is chosen among 1, 2, 4, ... and ``arrays`` (nothing
resident), and, when everything fits, also everything resident with the arrays left over split
between a pool (for run-time written tiles) and copies, by the resulting stream time: keeping
weights is not always best, since a pool can share a long layer's vectors among copies.

**A stream of N inputs** runs as ``ceil(N / batch)`` runs, pipelined: a run may start before the
previous one has finished, limited by the busiest resource. The initiation interval ``II`` is the
largest busy time per run of a resident array (its tiles' cycles over all layers) or of the pool
(the sum of its layer makespans: the pool serves one layer at a time). Stream time =
``latency + (runs - 1) * II``. That is the steady-state (resource-bound) pipeline of layers on
dedicated arrays; with nothing resident ``II`` is the whole run, so the paper's stream is ``N``
times its latency. Writes of a layer are not moved ahead of the previous layer (no prefetching).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from cimc.errors import HardwareError
from cimc.target.counters import Counters, latency_us, tile_counters
from cimc.target.hw import Hardware


class ScheduleError(HardwareError):
    """The model cannot be scheduled on the chip as asked (one line)."""


@dataclass(frozen=True)
class SchedTile:
    """One programmed tile of a layer in one run."""

    h: int
    rt: int
    ct: int
    rows: int
    cols: int
    cycles: int
    """Cycles executed in one run (all ``batch`` inputs)."""
    writes: int
    """Times one run writes it when it is not resident (``batch``, or 1 when amortised)."""


@dataclass(frozen=True)
class SchedLayer:
    """A crossbar layer's tiles, as the schedule sees them."""

    name: str
    tiles: tuple[SchedTile, ...]
    static: bool = True
    """Weights known at compile time (may stay resident); False: written at run time."""
    group: str | None = None
    """Packed group: its tile shares one array (and one write) with the group's other layers."""


@dataclass
class Event:
    """A busy interval of an array: ``kind`` is ``write`` or ``compute``."""

    array: int
    layer: int
    start: float
    end: float
    kind: str


@dataclass
class LayerSlot:
    """A layer's time slot in one run: from ``start`` for ``latency_us`` (its makespan)."""

    name: str
    start: float
    latency_us: float
    resident_tiles: int
    pool_tiles: int
    arrays_used: int
    counters: Counters

    @property
    def end(self) -> float:
        return self.start + self.latency_us


@dataclass
class Schedule:
    """Where and when every tile runs, and what that costs (times in microseconds)."""

    hw: Hardware
    batch: int
    stream: int
    layers: list[LayerSlot]
    latency_us: float
    """One run of ``batch`` inputs (batch 1: the latency of one inference)."""
    interval_us: float
    """Initiation interval of the pipelined stream (busy time per run of the busiest resource)."""
    stream_us: float
    pool_arrays: int
    resident_arrays: int
    programming_writes: int
    """One-time programming: tile writes before the stream (resident tiles and groups)."""
    run_writes: int
    """Writes of one run (not resident)."""
    counters: Counters
    """Events of one run (writes of the pool only)."""
    events: list[Event] = field(default_factory=list)
    programming_cells: int = 0
    """Cells of the one-time programming (every resident tile and copy)."""

    @property
    def runs(self) -> int:
        return math.ceil(self.stream / self.batch)

    @property
    def programming_us(self) -> float:
        """One-time programming; arrays are programmed in parallel, one write each."""
        return self.hw.t_write_us if self.programming_writes else 0.0

    @property
    def writes_per_inference(self) -> float:
        return self.run_writes / self.batch

    @property
    def throughput_per_s(self) -> float:
        return self.stream / self.stream_us * 1e6 if self.stream_us > 0 else math.inf

    def as_dict(self, events: bool = True) -> dict:
        """JSON-able: totals, layers, and (optionally) every busy interval of every array."""
        out = {
            "hardware": self.hw.to_dict(), "batch": self.batch, "stream": self.stream,
            "latency_us": self.latency_us, "interval_us": self.interval_us,
            "stream_us": self.stream_us, "throughput_per_s": self.throughput_per_s,
            "time_per_inference_us": self.stream_us / self.stream,
            "pool_arrays": self.pool_arrays, "resident_arrays": self.resident_arrays,
            "programming_writes": self.programming_writes, "programming_cells": self.programming_cells,
            "programming_us": self.programming_us,
            "run_writes": self.run_writes, "writes_per_inference": self.writes_per_inference,
            "counters": self.counters.as_dict(),
            "layers": [
                {"name": s.name, "start_us": s.start, "end_us": s.end, "latency_us": s.latency_us,
                 "resident_tiles": s.resident_tiles, "pool_tiles": s.pool_tiles,
                 "arrays_used": s.arrays_used, **s.counters.as_dict()}
                for s in self.layers
            ],
        }
        if events:
            out["events"] = [[e.array, e.layer, e.start, e.end, e.kind] for e in self.events]
            out["events_columns"] = ["array", "layer", "start_us", "end_us", "kind"]
        return out


# ---------------------------------------------------------------------------- residency


def _units(layers: Sequence[SchedLayer]) -> list[tuple[str, list[tuple[int, int]]]]:
    """Static units that can be resident: a packed group or a single tile, with their
    ``(layer, tile)`` indices, in program order."""
    units: dict[str, list[tuple[int, int]]] = {}
    for li, layer in enumerate(layers):
        if not layer.static:
            continue
        for ti, tile in enumerate(layer.tiles):
            key = f"g:{layer.group}" if layer.group is not None else f"t:{li}:{ti}"
            units.setdefault(key, []).append((li, ti))
    return list(units.items())


def _unit_pool_cost(layers: Sequence[SchedLayer], members: list[tuple[int, int]], hw: Hardware) -> float:
    """Time a unit costs the pool per run: its writes (once for a group) and its cycles."""
    c = Counters()
    for i, (li, ti) in enumerate(members):
        t = layers[li].tiles[ti]
        c += tile_counters(t.rows, t.cols, t.cycles, t.writes if i == 0 else 0, hw.adcs)
    return latency_us(c, hw)


def _has_dynamic(layers: Sequence[SchedLayer]) -> bool:
    return any(not layer.static and layer.tiles for layer in layers)


# ---------------------------------------------------------------------------- replicas


def split_cycles(cycles: int, copies: int) -> list[int]:
    """``cycles`` shared as evenly as possible among ``copies`` copies of a tile."""
    q, r = divmod(cycles, copies)
    return [q + (1 if i < r else 0) for i in range(copies)]


def _copy_time(tile: SchedTile, copies: int, writes: int, hw: Hardware) -> float:
    """The longest copy's time when a tile's cycles are shared among ``copies`` arrays."""
    part = -(-tile.cycles // copies)
    return latency_us(tile_counters(tile.rows, tile.cols, part, writes, hw.adcs), hw)


def _replicas(times: list, spare: int) -> list[int]:
    """Copies per job: spare arrays go, one at a time, to the job whose copies take longest,
    while that shortens it. ``times[i](r)`` is job ``i``'s time with ``r`` copies."""
    copies = [1] * len(times)
    heap = [(-t(1), i) for i, t in enumerate(times)]
    heapq.heapify(heap)
    while spare > 0 and heap:
        neg, i = heapq.heappop(heap)
        better = times[i](copies[i] + 1)
        if better >= -neg:
            break
        copies[i] += 1
        spare -= 1
        heapq.heappush(heap, (-better, i))
    return copies


# ---------------------------------------------------------------------------- one run


def _place(layers: Sequence[SchedLayer], hw: Hardware, resident: dict[tuple[int, int], tuple[int, ...]],
           pool: list[int], want_events: bool, replicate: bool) -> tuple[list[LayerSlot], dict[int, float], float, list[Event]]:
    """Place one run: per layer, resident tiles on their arrays (their vectors shared among the
    copies), the rest on the pool. Returns the layer slots, the busy time per resident array,
    the pool's busy time and the events (if asked)."""
    slots: list[LayerSlot] = []
    events: list[Event] = []
    busy_res: dict[int, float] = {}
    pool_busy = 0.0
    holds: dict[int, str] = {}  # pool array -> packed group it holds (within the run)
    pool_set = set(pool)
    now = 0.0
    for li, layer in enumerate(layers):
        per_array: dict[int, Counters] = {}
        jobs: list[tuple[int, SchedTile]] = []
        n_res = 0
        for ti, tile in enumerate(layer.tiles):
            arrs = resident.get((li, ti))
            if arrs is None:
                jobs.append((ti, tile))
                continue
            n_res += 1
            for arr, part in zip(arrs, split_cycles(tile.cycles, len(arrs))):
                per_array[arr] = per_array.get(arr, Counters()) + tile_counters(tile.rows, tile.cols, part, 0, hw.adcs)
        pool_time = 0.0
        if jobs:
            if not pool:
                raise ScheduleError(f"schedule: layer '{layer.name}' has tiles to program but no "
                                    "array is left for them")
            pool_time = _place_pool(layer, li, jobs, hw, pool, holds, per_array,
                                    events if want_events else None, now, replicate)
        span = 0.0
        total = Counters()
        for arr, c in per_array.items():
            t = latency_us(c, hw)
            total += c
            span = max(span, t)
            if arr not in pool_set:
                busy_res[arr] = busy_res.get(arr, 0.0) + t
                if want_events and t > 0:
                    events.append(Event(arr, li, now, now + t, "compute"))
        pool_busy += pool_time
        slots.append(LayerSlot(layer.name, now, span, n_res, len(jobs), len(per_array), total))
        now += span
    return slots, busy_res, pool_busy, events


def _pool_jobs(layer: SchedLayer, jobs: list[tuple[int, SchedTile]], hw: Hardware, pool: list[int],
               holds: dict[int, str], replicate: bool) -> list[tuple[float, int, Counters, int, int | None]]:
    """The pool's jobs of a layer: ``(duration, order, counters, writes, array or None)``. With
    fewer tiles than pool arrays a tile's vectors are shared among copies, each written; a packed
    group's tile runs, unwritten, on the arrays that already hold the group (shared among them)."""
    holders = sorted(a for a, g in holds.items() if layer.group is not None and g == layer.group)
    if holders:
        (ti, tile), = jobs
        return [(latency_us(c, hw), ti, c, 0, arr) for arr, c in zip(holders, (
            tile_counters(tile.rows, tile.cols, part, 0, hw.adcs) for part in split_cycles(tile.cycles, len(holders))))]
    copies = [1] * len(jobs)
    if replicate and len(jobs) < len(pool):
        copies = _replicas([lambda r, t=t: _copy_time(t, r, t.writes, hw) for _, t in jobs],
                           len(pool) - len(jobs))
    sized = []
    for (ti, tile), r in zip(jobs, copies):
        for part in split_cycles(tile.cycles, r):
            c = tile_counters(tile.rows, tile.cols, part, tile.writes, hw.adcs)
            sized.append((latency_us(c, hw), ti, c, tile.writes, None))
    sized.sort(key=lambda s: (-s[0], s[1]))
    return sized


def _place_pool(layer: SchedLayer, li: int, jobs: list, hw: Hardware, pool: list[int],
                holds: dict[int, str], per_array: dict[int, Counters], events: list[Event] | None,
                now: float, replicate: bool) -> float:
    """Longest job first onto the least loaded pool array (a packed group's on the arrays that
    hold it). Returns the pool's makespan in this layer."""
    heap = [(0.0, a) for a in pool]
    heapq.heapify(heap)
    loads: dict[int, float] = {}
    sized = _pool_jobs(layer, jobs, hw, pool, holds, replicate)
    for dur, _, c, writes, holder in sized:
        arr = holder if holder is not None else heapq.heappop(heap)[1]
        start = loads.get(arr, 0.0)
        loads[arr] = start + dur
        if holder is None:
            heapq.heappush(heap, (loads[arr], arr))
        per_array[arr] = per_array.get(arr, Counters()) + c
        if layer.group is not None:
            holds[arr] = layer.group
        elif arr in holds:
            del holds[arr]
        if events is not None:
            w = writes * hw.t_write_us
            if w > 0:
                events.append(Event(arr, li, now + start, now + start + w, "write"))
            events.append(Event(arr, li, now + start + w, now + start + dur, "compute"))
    return max((latency_us(per_array[a], hw) for a in loads), default=0.0)


# ---------------------------------------------------------------------------- the schedule


def _unit_compute(layers: Sequence[SchedLayer], members: list[tuple[int, int]], copies: int, hw: Hardware) -> float:
    """A resident unit's busy time per run with its vectors shared among ``copies`` arrays."""
    c = Counters()
    for li, ti in members:
        t = layers[li].tiles[ti]
        c += tile_counters(t.rows, t.cols, -(-t.cycles // copies), 0, hw.adcs)
    return latency_us(c, hw)


def _assign(layers: Sequence[SchedLayer], hw: Hardware, units, chosen: int, pool_size: int,
            replicate: bool) -> tuple[dict, list[int]]:
    """The first ``chosen`` units resident (arrays from 0; spare arrays beyond the pool hold copies
    of the units whose compute takes longest); the last ``pool_size`` arrays are the pool."""
    spare = hw.arrays - chosen - pool_size if replicate else 0
    copies = [1] * chosen
    if spare > 0 and chosen:
        copies = _replicas([lambda r, m=m: _unit_compute(layers, m, r, hw) for _, m in units[:chosen]], spare)
    resident: dict[tuple[int, int], tuple[int, ...]] = {}
    nxt = 0
    for (_, members), r in zip(units[:chosen], copies):
        arrs = tuple(range(nxt, nxt + r))
        nxt += r
        for key in members:
            resident[key] = arrs
    return resident, list(range(hw.arrays - pool_size, hw.arrays))


def _evaluate(layers, hw, resident, pool, batch, stream, want_events, replicate) -> Schedule:
    slots, busy_res, pool_busy, events = _place(layers, hw, resident, pool, want_events, replicate)
    latency = 0.0
    for s in slots:
        latency += s.latency_us
    interval = max([pool_busy, *busy_res.values()], default=0.0)
    runs = math.ceil(stream / batch)
    total = Counters()
    for s in slots:
        total += s.counters
    programming = len({arr for arrs in resident.values() for arr in arrs})
    cells = sum(len(arrs) * layers[li].tiles[ti].rows * layers[li].tiles[ti].cols
                for (li, ti), arrs in resident.items())
    return Schedule(
        hw=hw, batch=batch, stream=stream, layers=slots, latency_us=latency, interval_us=interval,
        stream_us=latency + (runs - 1) * interval, pool_arrays=len(pool),
        resident_arrays=programming, programming_writes=programming, run_writes=total.writes,
        counters=total, events=events, programming_cells=cells,
    )


def _pool_sizes(low: int, high: int) -> list[int]:
    """Candidate pool sizes: ``low``, powers of two in between, ``high``."""
    return sorted({low, high, *(p for p in (2**k for k in range(20)) if low < p < high)})


def schedule(layers: Sequence[SchedLayer], hw: Hardware, *, batch: int = 1, stream: int = 1,
             events: bool = True, replicate: bool = True) -> Schedule:
    """Place one run of ``batch`` inputs of ``layers`` on ``hw``'s arrays and pipeline a stream
    of ``stream`` inputs (module docstring). ``replicate``: arrays left over hold copies of
    tiles and share their vectors."""
    if batch < 1 or stream < 1:
        raise ScheduleError(f"schedule: batch {batch} and stream {stream} must be positive")
    units = _units(layers)
    spare = 1 if _has_dynamic(layers) else 0
    fits = len(units) + spare <= hw.arrays
    if hw.residency == "all" and not fits:
        need = f"{len(units)} static tiles (packed groups count once)"
        extra = " plus one array for run-time written tiles" if spare else ""
        raise ScheduleError(
            f"schedule: {need}{extra} do not fit {hw.arrays} arrays with residency=all; use "
            "residency=greedy or more arrays"
        )
    units = sorted(units, key=lambda u: -_unit_pool_cost(layers, u[1], hw))
    if hw.residency == "none" or not units:
        choices = [(0, hw.arrays)]
    else:  # the units that cost the pool most stay, P arrays re-program the rest
        choices = [(min(hw.arrays - p, len(units)), p) for p in _pool_sizes(1, hw.arrays)]
        if fits:  # or everything resident; arrays left over: pool (run-time tiles) and copies
            choices += [(len(units), p) for p in _pool_sizes(spare, hw.arrays - len(units))]
        if hw.residency == "all":
            choices = [c for c in choices if c[0] == len(units)]
        choices = sorted(set(choices))
    best: tuple[float, int, int] | None = None
    for chosen, p in choices:
        if len(choices) == 1:
            best = (0.0, chosen, p)
            break
        resident, pool = _assign(layers, hw, units, chosen, p, replicate)
        sched = _evaluate(layers, hw, resident, pool, batch, stream, False, replicate)
        if best is None or sched.stream_us < best[0]:
            best = (sched.stream_us, chosen, p)
    assert best is not None
    resident, pool = _assign(layers, hw, units, best[1], best[2], replicate)
    return _evaluate(layers, hw, resident, pool, batch, stream, events, replicate)
