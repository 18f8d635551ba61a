"""Counted writes and executes of full-size models equal the paper's closed form, layer by layer.

ResNet-18, VGG-16 and ViT-B/32 at 224x224 (W8A8, :func:`cimc.models.zoo_onnx`) on the paper's
hardware (256x256, c=4, d=1, dc, lossless ADC), batch 1. ResNet-18 runs bit-serially
(``fast=False``: every tile programmed, every plane driven); VGG-16 and ViT-B/32 take the exact
fast path, whose counters ``tests/test_xbar_exec.py::test_fast_path_identical`` proves identical
to the bit-serial ones. Each layer's ``(m, n, P, H)`` is derived here from the importer's layer
shapes, not from the compiled program. The report's totals must be the sum of the closed form and
its speedup over W8A8 exactly 1 for these all-8 models.
"""

from __future__ import annotations


import numpy as np
import pytest

from cimc.target import layer_cost, network_cost
from cimc.exec.xbar_exec import run_xbar
from cimc.target.hw import Hardware
from cimc.pipeline import lower
from cimc.report import xbar_report

from descriptors import descriptor

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    "name,fast,n_layers",
    [("resnet18", False, 21), ("vgg16", True, 16), ("vit_b32", True, 98)],
)
def test_counters_equal_closed_form(name, fast, n_layers):
    pytest.importorskip("brevitas")
    from cimc.frontend import import_onnx
    from cimc.models import input_shape, zoo_onnx

    hw = Hardware()
    imported = import_onnx(zoo_onnx(name))
    infos = imported.layers
    assert len(infos) == n_layers
    descs = [descriptor(i) for i in infos]
    policy = [[i.w_bits, i.a_bits] for i in infos]
    assert policy == [[8, 8]] * n_layers

    prog = imported.module.clone()
    lower(prog, "xbar", hw=hw)
    x = np.random.default_rng(0).standard_normal((1, *input_shape(name))).astype(np.float32)
    res = run_xbar(prog, [x], hw=hw, fast=fast)
    rows = res.report["layers"]
    assert [r["name"] for r in rows] == [d.name for d in descs]
    assert {r["path"] for r in rows} == {"exact" if fast else "bit-serial"}
    for row, desc, (w, a) in zip(rows, descs, policy):
        cost = layer_cost(desc, w, a, hw)
        assert (row["writes"], row["executes"]) == (cost.writes, cost.executes), desc
        assert row["adc_conversions"] == cost.adc_conversions, desc
        assert row["dac_activations"] == cost.dac_activations, desc
        assert row["latency_us"] == pytest.approx(cost.latency_us), desc
        assert row["adc_saturations"] == 0
    closed = network_cost(descs, policy, hw)
    assert res.report["total"]["writes"] == closed.writes
    assert res.report["total"]["executes"] == closed.executes
    assert res.report["total"]["latency_us"] == pytest.approx(closed.latency_us)

    rep = xbar_report(imported.module, hw)
    assert [(r["writes"], r["executes"]) for r in rep["layers"]] == [
        (c.writes, c.executes) for c in closed.layers
    ]
    assert rep["total"]["writes"] == closed.writes
    assert rep["total"]["executes"] == closed.executes
    assert rep["total"]["latency_us"] == pytest.approx(closed.latency_us)
    assert rep["baseline"]["latency_us"] == pytest.approx(closed.latency_us)
    assert rep["speedup"] == pytest.approx(1.0)


@pytest.mark.parametrize("name", ["resnet18", "vgg16", "vit_b32"])
def test_xbar_opt_full_size_equals_cimq(name):
    """xbar-opt of the full-size zoo gives cimq's outputs (exact path; ResNet-18 also bit-serial),
    and its chip schedule at 1, 4 and 64 arrays runs every cycle the program executed."""
    pytest.importorskip("brevitas")
    from cimc.chip_report import chip_schedule
    from cimc.exec.cimq_exec import run_cimq
    from cimc.frontend import import_onnx
    from cimc.models import input_shape, zoo_onnx

    module = import_onnx(zoo_onnx(name)).module
    x = np.random.default_rng(1).standard_normal((1, *input_shape(name))).astype(np.float32)
    ref, _ = run_cimq(module, [x])
    hw = Hardware()
    opt = module.clone()
    lower(opt, "xbar-opt", hw=hw)
    runs = [run_xbar(opt, [x], hw=hw, fast=True)]
    if name == "resnet18":
        runs.append(run_xbar(opt, [x], hw=hw, fast=False))
        assert runs[1].tile_cycles == runs[0].tile_cycles
        assert runs[1].report["total"] == {**runs[0].report["total"], "latency_us": runs[1].report["total"]["latency_us"]}
    for res in runs:
        assert all(a.dtype == b.dtype and np.array_equal(a, b) for a, b in zip(ref, res.outputs))
    total = runs[0].report["total"]
    paper = xbar_report(module, hw, baseline=False)["total"]["paper_latency_us"]
    for arrays in (1, 4, 64):
        chip = Hardware(arrays=arrays, residency="greedy")
        sched = chip_schedule(opt, chip, measured=runs[0].tile_cycles, events=False)
        assert sched.counters.executes == total["executes"]
        assert sched.latency_us <= paper
