"""The chip schedule (cimc.target.schedule): exactness at one array, residency, pipelining,
errors, and the schedule of a compiled program (JSON, Gantt) through ``cimc report``."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cimc.target import LayerDesc, latency_us, layer_counters, layer_geometry, layer_tiles
from cimc.target.counters import writes_per_run
from cimc.target.hw import Hardware
from cimc.target.schedule import SchedLayer, SchedTile, ScheduleError, schedule
from cli_helpers import assert_one_line_error

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "lenet_fmnist_mixed.onnx"


def sched_layers(descs, bits, hw, *, batch=1, dynamic=(), amortised=False):
    """SchedLayers straight from the closed-form geometry (no IR)."""
    out = []
    for i, (desc, (w, a)) in enumerate(zip(descs, bits)):
        geom = layer_geometry(desc, w, a, hw)
        dyn = i in dynamic
        cycles = batch * desc.P * geom.chunks
        tiles = tuple(SchedTile(h, rt, ct, r, c, cycles, writes_per_run(batch, dynamic=dyn, amortised=amortised))
                      for h, rt, ct, r, c in layer_tiles(geom))
        out.append(SchedLayer(desc.name, tiles, static=not dyn))
    return out


@st.composite
def network(draw):
    hw = Hardware(rows=draw(st.sampled_from([16, 32, 64])), cols=draw(st.sampled_from([16, 32, 64])),
                  cell_bits=draw(st.sampled_from([2, 4])), mapping=draw(st.sampled_from(["dc", "dr", "of"])))
    hw = dataclasses.replace(hw, cols_per_adc=draw(st.integers(1, hw.cols)), t_adc_us=0.05)
    n = draw(st.integers(1, 6))
    descs = [LayerDesc(f"l{i}", draw(st.integers(1, 90)), draw(st.integers(1, 90)),
                       draw(st.integers(1, 30)), draw(st.integers(1, 3))) for i in range(n)]
    bits = [(draw(st.integers(2, 8)), draw(st.integers(1, 8))) for _ in range(n)]
    dynamic = {i for i in range(n) if draw(st.booleans()) and draw(st.booleans())}
    return hw, descs, bits, dynamic


@settings(max_examples=50, deadline=None)
@given(net=network(), batch=st.integers(1, 3), stream=st.integers(1, 20))
def test_one_array_is_the_paper_exactly(net, batch, stream):
    hw, descs, bits, dynamic = net
    s = schedule(sched_layers(descs, bits, hw, batch=batch, dynamic=dynamic), hw, batch=batch, stream=stream)
    paper = [latency_us(layer_counters(layer_geometry(d, w, a, hw), hw, batch=batch, dynamic=i in dynamic), hw)
             for i, (d, (w, a)) in enumerate(zip(descs, bits))]
    assert [slot.latency_us for slot in s.layers] == paper  # bit for bit, layer by layer
    total = 0.0
    for p in paper:
        total += p
    assert s.latency_us == total and s.interval_us == total
    runs = -(-stream // batch)
    assert s.stream_us == total + (runs - 1) * total
    assert s.programming_writes == 0 and s.pool_arrays == 1
    assert s.counters.executes == sum(layer_counters(layer_geometry(d, w, a, hw), hw, batch=batch).executes
                                      for d, (w, a) in zip(descs, bits))


@settings(max_examples=50, deadline=None)
@given(net=network(), arrays=st.integers(1, 40), residency=st.sampled_from(["none", "greedy"]),
       stream=st.integers(1, 50))
def test_more_arrays_never_slower_than_one_and_no_overlaps(net, arrays, residency, stream):
    hw, descs, bits, dynamic = net
    layers = sched_layers(descs, bits, hw, dynamic=dynamic)
    one = schedule(layers, hw, stream=stream)
    chip = dataclasses.replace(hw, arrays=arrays, residency=residency)
    s = schedule(layers, chip, stream=stream)
    assert s.latency_us <= one.latency_us * (1 + 1e-12)
    assert s.interval_us <= s.latency_us * (1 + 1e-12) + 1e-9
    assert s.stream_us <= one.stream_us * (1 + 1e-12)
    # every cycle of the program runs somewhere, exactly once
    assert s.counters.executes == one.counters.executes
    assert s.run_writes + (s.programming_writes if residency != "none" else 0) >= 0
    # no array does two things at once
    by_array: dict[int, list] = {}
    for e in s.events:
        assert e.end >= e.start >= 0 and 0 <= e.array < arrays
        by_array.setdefault(e.array, []).append((e.start, e.end))
    for spans in by_array.values():
        spans.sort()
        for (_, e0), (s1, _) in zip(spans, spans[1:]):
            assert s1 >= e0 - 1e-6 * max(1.0, e0)


def test_everything_resident_when_it_fits():
    hw = Hardware(rows=32, cols=32, arrays=64, residency="greedy")
    descs = [LayerDesc("a", 20, 40, 10), LayerDesc("b", 8, 20, 5)]
    layers = sched_layers(descs, [(8, 8), (4, 4)], hw)
    tiles = sum(len(layer.tiles) for layer in layers)
    s = schedule(layers, hw, stream=100, replicate=False)
    assert s.programming_writes == tiles == s.resident_arrays
    assert s.run_writes == 0 and s.writes_per_inference == 0
    # a layer takes its slowest tile; the stream is paced by the slowest array
    per_tile = [max(latency_us(layer_counters(layer_geometry(d, w, a, hw), hw), hw) / len(layer.tiles), 0)
                for d, (w, a), layer in zip(descs, [(8, 8), (4, 4)], layers)]
    assert [slot.latency_us for slot in s.layers] == pytest.approx([p - 56.0 for p in per_tile])
    assert s.interval_us == pytest.approx(max(per_tile) - 56.0)
    assert s.stream_us == pytest.approx(s.latency_us + 99 * s.interval_us)
    # residency=all is the same here; none re-programs every inference
    assert schedule(layers, dataclasses.replace(hw, residency="all"), stream=100,
                    replicate=False).stream_us == s.stream_us
    none = schedule(layers, dataclasses.replace(hw, residency="none"), stream=100, replicate=False)
    assert none.run_writes == tiles and none.programming_writes == 0
    # copies on the arrays left over share the vectors: faster, more one-time writes, same cycles
    rep = schedule(layers, hw, stream=100)
    assert tiles < rep.programming_writes <= 64 and rep.run_writes == 0
    assert rep.latency_us < s.latency_us and rep.interval_us < s.interval_us
    assert rep.counters.executes == s.counters.executes


def test_greedy_keeps_the_costliest_tiles_when_the_model_does_not_fit():
    hw = Hardware(rows=16, cols=16, arrays=4, residency="greedy")
    # eight one-tile layers whose writes dominate: keeping three saves three writes per inference
    descs = [LayerDesc(f"fc{i}", 4, 5 + i, 1 + i) for i in range(8)]
    layers = sched_layers(descs, [(8, 8)] * 8, hw)
    s = schedule(layers, hw, stream=10, replicate=False)
    paper = schedule(layers, dataclasses.replace(hw, residency="none"), stream=10, replicate=False)
    assert 0 < s.resident_arrays < 4 and s.pool_arrays == 4 - s.resident_arrays
    assert s.run_writes == paper.run_writes - s.resident_arrays
    assert s.stream_us < paper.stream_us
    # greedy by cost saved: the layers with the most cycles are the resident ones
    assert [slot.resident_tiles for slot in s.layers] == [0, 0, 0, 0, 0, 1, 1, 1]
    # with one layer of 40 tiles as well, nothing resident is best: the pool needs all arrays
    big = layers + sched_layers([LayerDesc("big", 30, 60, 1)], [(8, 8)], hw)
    assert schedule(big, hw, stream=10, replicate=False).resident_arrays == 0
    # copies on the pool (each written) can beat residency; greedy takes whichever streams faster
    best = schedule(layers, hw, stream=10)
    assert best.stream_us <= s.stream_us and best.stream_us <= schedule(
        layers, dataclasses.replace(hw, residency="none"), stream=10).stream_us


def test_residency_all_that_does_not_fit_is_one_line():
    hw = Hardware(rows=16, cols=16, arrays=3, residency="all")
    layers = sched_layers([LayerDesc("a", 30, 40, 2)], [(8, 8)], hw)
    with pytest.raises(ScheduleError) as info:
        schedule(layers, hw)
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith("schedule: ") and "do not fit 3 arrays" in msg
    dyn = sched_layers([LayerDesc("a", 2, 4, 2), LayerDesc("att", 4, 4, 4)], [(8, 8), (8, 8)], hw, dynamic={1})
    with pytest.raises(ScheduleError, match="plus one array for run-time written tiles"):
        schedule(dyn, dataclasses.replace(hw, arrays=1))


def _cimc(*args):
    return subprocess.run([sys.executable, "-m", "cimc.cli", *map(str, args)], capture_output=True, text=True)


def test_report_writes_schedule_json_and_gantt(tmp_path):
    out, png = tmp_path / "s.json", tmp_path / "g.png"
    proc = _cimc("report", EXAMPLE, "--hw-set", "arrays=4,residency=greedy", "--stream", "10",
                 "--schedule", out, "--gantt", png, "--json", tmp_path / "r.json")
    assert proc.returncode == 0, proc.stderr
    sched = json.loads(out.read_text())
    assert sched["hardware"]["arrays"] == 4 and sched["stream"] == 10
    assert png.read_bytes()[:4] == b"\x89PNG"
    arrays = {e[0] for e in sched["events"]}
    assert arrays <= set(range(4)) and len(arrays) > 1
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["chip"]["latency_us"] == pytest.approx(sched["latency_us"])
    assert rep["total"]["latency_us"] == pytest.approx(sched["latency_us"])
    assert rep["total"]["paper_latency_us"] > rep["total"]["latency_us"]


@pytest.mark.parametrize(("hw_set", "needle"), [
    ("arrays=0", "--hw-set: arrays: 0 is not a positive integer"),
    ("cols_per_adc=300", "--hw-set: cols_per_adc: 300 is larger than cols (256)"),
    ("arrays=2,residency=all", "do not fit 2 arrays with residency=all"),
])
def test_bad_chip_values_are_one_line_errors(hw_set, needle, tmp_path):
    out = tmp_path / "s.json"
    proc = _cimc("report", EXAMPLE, "--hw-set", hw_set, "--schedule", out)
    assert_one_line_error(proc, needle)
    assert not out.exists()


def test_run_xbar_opt_reports_each_optimisation_measured(tmp_path):
    x = EXAMPLE.parent / "fmnist_test64_x.npy"
    rep, wf, gantt = tmp_path / "run.json", tmp_path / "w.png", tmp_path / "g.png"
    proc = _cimc("run", EXAMPLE, "--level", "xbar-opt", "--input", x, "--report", rep, "--waterfall", wf,
                 "--gantt", gantt, "--no-progress")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(rep.read_text())
    steps = out["optimisations"]
    names = [s["name"] for s in steps["steps"]]
    assert names == ["paper", "chip", "xbar-narrow-slices", "xbar-pack", "xbar-skip-zero-weights",
                     "xbar-skip-zero-planes", "xbar-batch-amortise"]
    assert steps["measured"] and steps["batch"] == 64
    by = {s["name"]: s for s in steps["steps"]}
    # the measured skipping is what the run counted; amortisation leaves one write per tile per run
    assert by["xbar-skip-zero-planes"]["executes"] == out["total"]["executes"]
    assert by["paper"]["executes"] == out["total"]["executes"] + out["total"]["skipped_cycles"]
    assert by["xbar-batch-amortise"]["writes_per_inference"] * 64 == out["total"]["writes"]
    assert steps["speedup"] > 1.2  # the trained example: zero planes of its images and activations
    assert wf.read_bytes()[:4] == gantt.read_bytes()[:4] == b"\x89PNG"
    assert "each optimisation's contribution" in proc.stdout and "per plane" in proc.stdout
    bad = _cimc("run", EXAMPLE, "--level", "xbar", "--waterfall", tmp_path / "no.png", "--no-progress")
    assert_one_line_error(bad, "--waterfall needs --level xbar-opt")
    assert not (tmp_path / "no.png").exists()
