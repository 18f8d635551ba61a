"""``cimc report``: the paper's single-layer checks T1-T9, the closed form, the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cimc.target import LayerDesc, layer_cost, network_cost, uniform_policy
from cimc.errors import CimcError
from cimc.target.hw import Hardware
from cimc.ir_io import parse_module_text, write_module
from cimc.report import plot_report, report_table, xbar_report
from xbar_ir import attention_module, conv_module, linear_module

# case: (builder kwargs, (m, n, P, H), w, a, c, mapping, writes, executes, latency)
TABLE = {
    "T1": (("conv", dict(cin=64, cout=64, k=3, size=56, pad=1)), 8, 8, 4, "dc", 3, 75264, 105537.6),
    "T2": (("conv", dict(cin=64, cout=64, k=3, size=56, pad=1)), 4, 4, 4, "dc", 3, 37632, 52852.8),
    "T3": (("linear", dict(k=512, n=1000)), 8, 8, 4, "dc", 32, 256, 2150.4),
    "T4": (("attention", dict(heads=12, tokens=50, dim=64)), 8, 8, 4, "dc", 12, 4800, 7392.0),
    "T6": (("conv", dict(cin=3, cout=64, k=7, size=224, stride=2, pad=3)), 2, 1, 2, "dc", 1, 12544, 17617.6),
    "T7": (("conv", dict(cin=128, cout=256, k=3, size=14, pad=1)), 8, 8, 4, "dr", 18, 28224, 40521.6),
    "T8": (("conv", dict(cin=128, cout=256, k=3, size=14, pad=1)), 8, 8, 4, "of", 15, 23520, 33768.0),
    "T9": (("conv", dict(cin=128, cout=128, k=3, size=28, pad=1)), 5, 8, 4, "dc", 10, 62720, 88368.0),
}
BUILDERS = {"conv": conv_module, "linear": linear_module, "attention": attention_module}


def _module(spec, w, a, seed=0):
    kind, kw = spec
    return BUILDERS[kind](np.random.default_rng(seed), w_bits=w, a_bits=a, **kw)[0]


@pytest.mark.parametrize("case", sorted(TABLE))
def test_paper_table(case):
    spec, w, a, c, mapping, writes, executes, latency = TABLE[case]
    hw = Hardware(cell_bits=c, mapping=mapping)
    rep = xbar_report(_module(spec, w, a), hw)
    (row,) = rep["layers"]
    assert (row["writes"], row["executes"]) == (writes, executes)
    assert row["latency_us"] == pytest.approx(latency)
    assert rep["total"]["latency_us"] == pytest.approx(latency)
    base = layer_cost(LayerDesc("x", row["m"], row["n"], row["P"], row["H"]), 8, 8, hw)
    assert rep["baseline"]["latency_us"] == pytest.approx(base.latency_us)
    assert rep["speedup"] == pytest.approx(base.latency_us / latency)


def test_paper_table_t5():
    """(4096, 25088, 1, 1) at 4/8: 3136 writes (zero weights: mapping the 100 M weights is the cost)."""
    module, _ = linear_module(np.random.default_rng(0), k=25088, n=4096, w_bits=4, a_bits=8, zero=True)
    (row,) = xbar_report(module, Hardware(), baseline=False)["layers"]
    assert (row["m"], row["n"], row["P"], row["H"]) == (4096, 25088, 1, 1)
    assert (row["writes"], row["executes"]) == (3136, 25088)
    assert row["latency_us"] == pytest.approx(210739.2)


@pytest.mark.parametrize("case", ["T1", "T3", "T4", "T6", "T9"])
@pytest.mark.parametrize("mapping", ["dc", "dr", "of"])
@pytest.mark.parametrize("c", [2, 4])
def test_table_shapes_all_mappings_and_cells(case, mapping, c):
    spec, w, a, *_ = TABLE[case]
    hw = Hardware(cell_bits=c, mapping=mapping)
    rep = xbar_report(_module(spec, w, a), hw, baseline=False)
    (row,) = rep["layers"]
    cost = layer_cost(LayerDesc(case, row["m"], row["n"], row["P"], row["H"]), w, a, hw)
    assert (row["writes"], row["executes"], row["slices"]) == (cost.writes, cost.executes, cost.slices)
    assert row["latency_us"] == pytest.approx(cost.latency_us)
    assert row["lossless_adc_bits"] == cost.lossless_adc_bits


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    kind=st.sampled_from(["linear", "conv", "attention"]),
    m=st.integers(1, 70), n=st.integers(1, 70), p=st.integers(1, 6),
    w=st.integers(1, 8), a=st.integers(1, 8), signed=st.booleans(),
    rows=st.integers(4, 80), cols=st.integers(4, 80), c=st.integers(1, 8), d=st.integers(1, 8),
    mapping=st.sampled_from(["dc", "dr", "of"]), groups=st.sampled_from([1, 2, 3]),
)
def test_report_equals_closed_form(kind, m, n, p, w, a, signed, rows, cols, c, d, mapping, groups):
    rng = np.random.default_rng(m * 1000 + n)
    if kind == "linear":
        module, _ = linear_module(rng, k=n, n=m, tokens=p, w_bits=w, a_bits=a, a_signed=signed)
    elif kind == "conv":
        module, _ = conv_module(rng, cin=groups * (1 + n % 4), cout=groups * (1 + m % 5), k=1 + p % 3,
                                size=4, pad=1, groups=groups, w_bits=w, a_bits=a, a_signed=signed)
    else:
        w = max(w, 2)  # the written operand is a signed activation: s1 has no positive value
        module, _ = attention_module(rng, heads=groups, tokens=p, dim=1 + n % 9, keys=1 + m % 9,
                                     w_bits=w, a_bits=a, a_signed=signed)
    hw = Hardware(rows=rows, cols=cols, cell_bits=c, dac_bits=d, mapping=mapping)
    rep = xbar_report(module, hw)
    (row,) = rep["layers"]
    desc = LayerDesc("x", row["m"], row["n"], row["P"], row["H"])
    cost = layer_cost(desc, w, a, hw)
    assert (row["writes"], row["executes"]) == (cost.writes, cost.executes)
    assert row["latency_us"] == pytest.approx(cost.latency_us)
    base = network_cost([desc], uniform_policy([desc]), hw)
    assert rep["baseline"]["latency_us"] == pytest.approx(base.latency_us)


def test_table_json_and_plot(tmp_path):
    from rich.console import Console

    rep = xbar_report(_module(TABLE["T9"][0], 5, 8), Hardware())
    console = Console(record=True, width=160)
    console.print(report_table(rep))
    text = console.export_text()
    assert "T9" not in text and "conv" in text and "62,720" in text and "speedup" in text
    json.loads(json.dumps(rep))
    png = plot_report(rep, tmp_path / "r.png")
    assert png[:4] == b"\x89PNG" and (tmp_path / "r.png").read_bytes() == png


def test_no_crossbar_layer_is_an_error():
    text = """
func.func @main(%x: tensor<1x4xf32>) -> tensor<1x4xf32> {
  %y = cimq.relu %x : (tensor<1x4xf32>) -> tensor<1x4xf32>
  func.return %y : tensor<1x4xf32>
}"""
    with pytest.raises(CimcError, match="no crossbar layer"):
        xbar_report(parse_module_text(text), Hardware())


def _app():
    import typer

    from cimc.report_cli import register

    app = typer.Typer()
    app.callback()(lambda: None)
    register(app)
    return app


def test_cli_on_mlir(tmp_path):
    from typer.testing import CliRunner

    module, _ = conv_module(np.random.default_rng(0), cin=128, cout=128, k=3, size=28, pad=1, w_bits=5)
    path = tmp_path / "m.mlir"
    write_module(module, path)
    hw_file = tmp_path / "hw.yaml"
    hw_file.write_text("crossbar:\n  size: {m: 256, n: 256}\n  resolution_weight_bits: 4\nmapper:\n  mapping_type: dc\n")
    out_json, out_png = tmp_path / "r.json", tmp_path / "r.png"
    res = CliRunner().invoke(_app(), ["report", str(path), "--hw", str(hw_file), "--json", str(out_json),
                                      "--plot", str(out_png)])
    assert res.exit_code == 0, res.output
    data = json.loads(out_json.read_text())
    assert data["layers"][0]["writes"] == 10 and data["total"]["latency_us"] == pytest.approx(88368.0)
    assert out_png.stat().st_size > 0
    res = CliRunner().invoke(_app(), ["report", str(path), "--hw-set", "rows=0"])
    assert res.exit_code != 0 and isinstance(res.exception, CimcError)
    res = CliRunner().invoke(_app(), ["report", str(path), "--hw-set", "cell_bits=2", "--no-baseline", "--opt"])
    assert res.exit_code == 0, res.output


def test_cli_on_brevitas_onnx(tmp_path):
    """T1, T3 and T9 shapes as Brevitas QCDQ exports, through the importer."""
    pytest.importorskip("brevitas")
    import copy

    import brevitas.nn as qnn
    import brevitas.quant as bq
    import torch
    from brevitas.export import export_onnx_qcdq
    from typer.testing import CliRunner

    cases = {
        "T1": (qnn.QuantConv2d(64, 64, 3, padding=1, bias=False, weight_bit_width=8,
                               input_quant=bq.Uint8ActPerTensorFloat, input_bit_width=8), (1, 64, 56, 56),
               105537.6),
        "T3": (qnn.QuantLinear(512, 1000, bias=True, weight_bit_width=8,
                               input_quant=bq.Int8ActPerTensorFloat, input_bit_width=8), (1, 512), 2150.4),
        "T9": (qnn.QuantConv2d(128, 128, 3, padding=1, bias=False, weight_bit_width=5,
                               input_quant=bq.Uint8ActPerTensorFloat, input_bit_width=8), (1, 128, 28, 28),
               88368.0),
    }
    for name, (layer, shape, latency) in cases.items():
        path = tmp_path / f"{name}.onnx"
        model = copy.deepcopy(layer).eval()
        x = torch.rand(*shape)
        with torch.no_grad():
            model(x)
            export_onnx_qcdq(model, args=x, export_path=str(path), dynamo=False, opset_version=19,
                             keep_initializers_as_inputs=False, input_names=["x"])
        out = tmp_path / f"{name}.json"
        res = CliRunner().invoke(_app(), ["report", str(path), "--json", str(out)])
        assert res.exit_code == 0, res.output
        data = json.loads(out.read_text())
        assert data["total"]["latency_us"] == pytest.approx(latency), name
