"""The bit-serial crossbar executor: exact against cimq, counters against the closed form."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from cimc.target import LayerDesc, layer_cost
from cimc.errors import ExecutionError
from cimc.exec import run_at_level
from cimc.exec.cimq_exec import run_cimq
from cimc.exec.xbar_exec import compare_lossy, run_xbar
from cimc.target.hw import Hardware
from cimc.pipeline import lower
from xbar_ir import attention_module, conv_module, linear_module


def _model(kind: str, rng: np.random.Generator):
    w, a = int(rng.integers(2, 9)), int(rng.integers(2, 9))
    signed = bool(rng.integers(0, 2))
    if kind == "conv":
        return conv_module(rng, cin=4, cout=6, k=3, size=6, pad=1, stride=int(rng.integers(1, 3)),
                           w_bits=w, a_bits=a, a_signed=signed)
    if kind == "grouped":
        return conv_module(rng, cin=4, cout=6, k=3, size=5, groups=2, w_bits=w, a_bits=a, a_signed=signed)
    if kind == "depthwise":
        return conv_module(rng, cin=5, cout=5, k=3, size=5, pad=1, groups=5, w_bits=w, a_bits=a,
                           a_signed=signed)
    if kind == "linear":
        return linear_module(rng, k=37, n=11, tokens=int(rng.integers(0, 4)), w_bits=w, a_bits=a,
                             a_signed=signed)
    if kind == "attention":
        return attention_module(rng, heads=2, tokens=5, dim=9, w_bits=w, a_bits=a, a_signed=signed)
    return attention_module(rng, heads=1, tokens=4, dim=20, keys=6, w_bits=w, a_bits=a,
                            a_signed=signed, rank=3)


KINDS = ["conv", "grouped", "depthwise", "linear", "attention", "attention3"]
HWS = [
    Hardware(rows=16, cols=16, cell_bits=c, dac_bits=d, mapping=mp)
    for mp in ("dc", "dr", "of") for c in (1, 2, 4) for d in (1, 2)
]


def _lowered(module, level, hw):
    out = module.clone()
    lower(out, level, hw=hw)
    return out


@pytest.mark.parametrize("kind", KINDS)
def test_xbar_equals_cimq_exactly(kind):
    """Every integer of the bit-serial program equals the cimq reference (lossless ADC)."""
    rng = np.random.default_rng(KINDS.index(kind))
    for i, hw in enumerate(HWS):
        if i % 3 != KINDS.index(kind) % 3:  # a third of the 18 hardware points per kind
            continue
        module, inputs = _model(kind, rng)
        ref, _ = run_cimq(module, inputs)
        for level in ("xbar-mm", "xbar"):
            res = run_xbar(_lowered(module, level, hw), inputs, hw=hw, fast=False)
            assert all(np.array_equal(a, b) for a, b in zip(ref, res.outputs)), (kind, hw, level)


@pytest.mark.parametrize("kind", KINDS)
def test_counters_equal_closed_form(kind):
    rng = np.random.default_rng(100 + KINDS.index(kind))
    hw = HWS[(7 * KINDS.index(kind)) % len(HWS)]
    hw = dataclasses.replace(hw, cols_per_adc=1 + KINDS.index(kind) % 5, arrays=1 + KINDS.index(kind))
    module, inputs = _model(kind, rng)
    res = run_xbar(_lowered(module, "xbar", hw), inputs, hw=hw, fast=False)
    for row in res.report["layers"]:
        desc = LayerDesc(row["name"], row["m"], row["n"], row["P"], row["H"], row["kind"])
        cost = layer_cost(desc, row["w_bits"], row["a_bits"], hw)
        assert row["writes"] == cost.writes
        assert row["executes"] == cost.executes
        assert row["adc_conversions"] == cost.adc_conversions
        assert row["dac_activations"] == cost.dac_activations
        assert row["adc_slots"] == cost.adc_slots
        assert row["cells_written"] == row["H"] * cost.phys_rows * cost.phys_cols
        assert row["latency_us"] == pytest.approx(cost.latency_us)
        assert row["adc_saturations"] == 0
        closed = cost.counters.as_dict()  # every counter, the new ones included
        assert {k: row[k] for k in closed} == closed
        assert row["shift_adds"] == row["adc_conversions"] > 0
        assert row["cell_reads"] > 0 and row["recombine_adds"] > 0


@pytest.mark.parametrize("kind", ["conv", "linear", "attention"])
def test_host_elements_counted_equal_analysis(kind):
    """The host compute ops' elements counted while running equal those read off the program."""
    from cimc.analysis import host_elements

    rng = np.random.default_rng(300 + KINDS.index(kind))
    module, inputs = _model(kind, rng)
    prog = _lowered(module, "xbar", HWS[0])
    res = run_xbar(prog, inputs, hw=HWS[0], fast=False)
    assert res.report["host"]["host_elements"] == host_elements(prog) > 0
    assert res.report["total"]["host_elements"] == 0  # the total is the crossbar layers
    assert all(r["host_elements"] == 0 for r in res.report["layers"])


@pytest.mark.parametrize("kind", KINDS)
def test_fast_path_identical(kind):
    rng = np.random.default_rng(200 + KINDS.index(kind))
    hw = HWS[(5 * KINDS.index(kind) + 1) % len(HWS)]
    module, inputs = _model(kind, rng)
    inputs = [np.concatenate([x, 0.5 * x]) for x in inputs]  # batch 2
    prog = _lowered(module, "xbar", hw)
    slow = run_xbar(prog, inputs, hw=hw, fast=False)
    fast = run_xbar(prog, inputs, hw=hw, fast=True)
    auto = run_xbar(prog, inputs, hw=hw)
    assert {r["path"] for r in fast.report["layers"]} == {"exact"}
    assert {r["path"] for r in slow.report["layers"]} == {"bit-serial"}
    for other in (fast, auto):
        assert all(np.array_equal(a, b) for a, b in zip(slow.outputs, other.outputs))
        strip = lambda rep: [{k: v for k, v in r.items() if k not in ("path", "seconds")} for r in rep["layers"]]  # noqa
        assert strip(slow.report) == strip(other.report)
        assert slow.report["total"] == other.report["total"]


def test_batch_writes_per_inference_unless_amortised():
    """The paper: every inference programs every tile (writes scale with the batch);
    xbar-batch-amortise: static tiles once per run; run-time written ones always per input."""
    from cimc.passes.xbar_batch_amortise import XbarBatchAmortisePass
    from cimc.context import make_context

    rng = np.random.default_rng(5)
    hw = Hardware(rows=16, cols=16)
    for module, inputs in (linear_module(rng, k=40, n=9, tokens=3), attention_module(rng, heads=2, tokens=3, dim=5)):
        prog = _lowered(module, "xbar", hw)
        amortised = prog.clone()
        XbarBatchAmortisePass().apply(make_context(), amortised)
        three_in = [np.concatenate([x] * 3) for x in inputs]
        for fast in (False, True):
            one = run_xbar(prog, inputs, hw=hw, fast=fast).report["layers"]
            three = run_xbar(prog, three_in, hw=hw, fast=fast).report["layers"]
            once = run_xbar(amortised, three_in, hw=hw, fast=fast).report["layers"]
            for a, b, c in zip(one, three, once):
                assert b["executes"] == c["executes"] == 3 * a["executes"]
                assert b["writes"] == 3 * a["writes"] and b["cells_written"] == 3 * a["cells_written"]
                dynamic = a["kind"] == "matmul"
                assert c["writes"] == (3 if dynamic else 1) * a["writes"]


def test_lossy_adc_saturates_and_is_reported():
    rng = np.random.default_rng(9)
    module, inputs = linear_module(rng, k=60, n=8, tokens=4, w_bits=8, a_bits=8)
    hw = Hardware(rows=32, cols=32, cell_bits=4, dac_bits=2)
    prog = _lowered(module, "xbar", hw)
    lossy = dataclasses.replace(hw, adc_bits=5)
    out = compare_lossy(prog, inputs, lossy)
    assert out["saturations"] > 0 and out["layers"][0]["adc_saturations"] == out["saturations"]
    assert out["outputs"][0]["max_abs_error"] > 0
    assert out["layers"][0]["max_abs_error"] > 0
    exact = dataclasses.replace(hw, adc_bits=hw.lossless_adc_bits())
    clean = compare_lossy(prog, inputs, exact)
    assert clean["saturations"] == 0 and clean["outputs"][0]["max_abs_error"] == 0
    with pytest.raises(ExecutionError, match="fast path needs a lossless ADC"):
        run_xbar(prog, inputs, hw=lossy, fast=True)


def test_hardware_mismatch_is_an_error():
    rng = np.random.default_rng(1)
    module, inputs = linear_module(rng, k=10, n=4)
    prog = _lowered(module, "xbar", Hardware(rows=16, cols=16))
    with pytest.raises(ExecutionError, match="compiled for rows=16"):
        run_xbar(prog, inputs, hw=Hardware())
    res = run_xbar(prog, inputs, hw=None)  # the compiled geometry, lossless
    assert res.report["hardware"]["rows"] == 16


def test_run_at_level_report_and_table(capsys):
    from rich.console import Console
    from rich.table import Table

    rng = np.random.default_rng(3)
    module, inputs = conv_module(rng, cin=3, cout=4, k=3, size=6, a_signed=True)
    ref, _ = run_cimq(module, inputs)
    hw = Hardware(rows=8, cols=8, cell_bits=2)
    res = run_at_level(module, "xbar", inputs, hw=hw, progress=True)
    assert np.array_equal(res.outputs[0], ref[0])
    json.dumps(res.report)
    assert isinstance(res.counters_table, Table)
    Console(file=None).print(res.counters_table)
    assert "crossbar counters" in capsys.readouterr().out
    assert res.report["host_seconds"] >= 0
    assert res.report["total"]["writes"] == sum(r["writes"] for r in res.report["layers"])


def test_brevitas_zoo_models_exact(tmp_path):
    """Random Brevitas models (conv nets incl. grouped, MLPs, attention) through ONNX."""
    pytest.importorskip("brevitas")
    brevitas_zoo = pytest.importorskip("brevitas_zoo")
    from cimc.frontend import import_onnx

    rng = np.random.default_rng(0)
    for family in ("conv", "mlp", "attention"):
        for seed in range(3):
            case = brevitas_zoo.GENERATORS[family](seed)
            path = brevitas_zoo.export(case, tmp_path / f"{case.name}.onnx")
            module = import_onnx(path).module
            x = case.x.numpy()
            ref, _ = run_cimq(module, [x])
            hw = HWS[int(rng.integers(len(HWS)))]
            res = run_xbar(_lowered(module, "xbar", hw), [x], hw=hw, fast=False)
            assert all(np.array_equal(a, b) for a, b in zip(ref, res.outputs)), (case.name, hw)
