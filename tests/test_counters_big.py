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
