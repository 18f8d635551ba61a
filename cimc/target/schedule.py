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
resident) by the resulting stream time.

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
            "programming_writes": self.programming_writes, "programming_us": self.programming_us,
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


# ---------------------------------------------------------------------------- one run


def _place(layers: Sequence[SchedLayer], hw: Hardware, resident: dict[tuple[int, int], int],
           pool: list[int], want_events: bool) -> tuple[list[LayerSlot], dict[int, float], float, list[Event]]:
    """Place one run: per layer, resident tiles on their arrays, the rest on the pool.

    Returns the layer slots, the busy time per resident array, the pool's busy time and the
    events (if asked)."""
    slots: list[LayerSlot] = []
    events: list[Event] = []
    busy_res: dict[int, float] = {}
    pool_busy = 0.0
    holds: dict[int, str] = {}  # pool array -> packed group it holds (within the run)
    now = 0.0
    for li, layer in enumerate(layers):
        per_array: dict[int, Counters] = {}
        jobs: list[tuple[int, float, SchedTile, bool]] = []  # (index, duration, tile, write)
        n_res = 0
        for ti, tile in enumerate(layer.tiles):
            arr = resident.get((li, ti))
            if arr is not None:
                n_res += 1
                c = tile_counters(tile.rows, tile.cols, tile.cycles, 0, hw.adcs)
                per_array[arr] = per_array.get(arr, Counters()) + c
                continue
            jobs.append((ti, 0.0, tile, True))
        pool_time = 0.0
        if jobs:
            if not pool:
                raise ScheduleError(f"schedule: layer '{layer.name}' has tiles to program but no "
                                    "array is left for them")
            pool_time = _place_pool(layer, li, jobs, hw, pool, holds, per_array, events if want_events else None, now)
        span = 0.0
        total = Counters()
        for arr, c in per_array.items():
            t = latency_us(c, hw)
            total += c
            span = max(span, t)
            if arr not in pool:
                busy_res[arr] = busy_res.get(arr, 0.0) + t
                if want_events and t > 0:
                    events.append(Event(arr, li, now, now + t, "compute"))
        pool_busy += pool_time
        slots.append(LayerSlot(layer.name, now, span, n_res, len(jobs), len(per_array), total))
        now += span
    return slots, busy_res, pool_busy, events


def _place_pool(layer: SchedLayer, li: int, jobs: list, hw: Hardware, pool: list[int],
                holds: dict[int, str], per_array: dict[int, Counters], events: list[Event] | None,
                now: float) -> float:
    """Longest job first onto the least loaded pool array; a packed group stays on the array that
    holds it. Returns the pool's makespan in this layer."""
    sized = []
    for ti, _, tile, _ in jobs:
        holder = next((a for a, g in holds.items() if layer.group is not None and g == layer.group), None)
        writes = 0 if holder is not None else tile.writes
        c = tile_counters(tile.rows, tile.cols, tile.cycles, writes, hw.adcs)
        sized.append((latency_us(c, hw), ti, c, writes, holder))
    sized.sort(key=lambda s: (-s[0], s[1]))
    heap = [(0.0, a) for a in pool]
    heapq.heapify(heap)
    loads: dict[int, float] = {}
    for dur, _, c, writes, holder in sized:
        if holder is not None:
            arr = holder
        else:
            _, arr = heapq.heappop(heap)
        start = loads.get(arr, 0.0)
        loads[arr] = start + dur
        if holder is None:
            heapq.heappush(heap, (loads[arr], arr))
        else:
            heap = [(loads.get(a, 0.0), a) for _, a in heap]
            heapq.heapify(heap)
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


def _assign(layers: Sequence[SchedLayer], hw: Hardware, units, chosen: int) -> tuple[dict, list[int], int]:
    """The first ``chosen`` units resident on arrays ``0..chosen-1``; the rest is the pool."""
    resident: dict[tuple[int, int], int] = {}
    for arr, (_, members) in enumerate(units[:chosen]):
        for key in members:
            resident[key] = arr
    pool = list(range(chosen, hw.arrays))
    return resident, pool, chosen


def _evaluate(layers, hw, resident, pool, batch, stream, want_events) -> Schedule:
    slots, busy_res, pool_busy, events = _place(layers, hw, resident, pool, want_events)
    latency = 0.0
    for s in slots:
        latency += s.latency_us
    interval = max([pool_busy, *busy_res.values()], default=0.0)
    runs = math.ceil(stream / batch)
    total = Counters()
    for s in slots:
        total += s.counters
    programming = len({arr for arr in resident.values()})
    return Schedule(
        hw=hw, batch=batch, stream=stream, layers=slots, latency_us=latency, interval_us=interval,
        stream_us=latency + (runs - 1) * interval, pool_arrays=len(pool),
        resident_arrays=programming, programming_writes=programming, run_writes=total.writes,
        counters=total, events=events,
    )


def schedule(layers: Sequence[SchedLayer], hw: Hardware, *, batch: int = 1, stream: int = 1,
             events: bool = True) -> Schedule:
    """Place one run of ``batch`` inputs of ``layers`` on ``hw``'s arrays and pipeline a stream
    of ``stream`` inputs (module docstring)."""
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
    if hw.residency == "none" or not units:
        return _evaluate(layers, hw, *_assign(layers, hw, units, 0)[:2], batch, stream, events)
    if fits:
        return _evaluate(layers, hw, *_assign(layers, hw, units, len(units))[:2], batch, stream, events)
    ranked = sorted(units, key=lambda u: -_unit_pool_cost(layers, u[1], hw))
    candidates = sorted({hw.arrays, *(p for p in (2**k for k in range(20)) if p < hw.arrays)})
    best: Schedule | None = None
    best_pool = hw.arrays
    for p in candidates:
        resident, pool, _ = _assign(layers, hw, ranked, hw.arrays - p)
        sched = _evaluate(layers, hw, resident, pool, batch, stream, False)
        if best is None or sched.stream_us < best.stream_us:
            best, best_pool = sched, p
    resident, pool, _ = _assign(layers, hw, ranked, hw.arrays - best_pool)
    return _evaluate(layers, hw, resident, pool, batch, stream, events)
