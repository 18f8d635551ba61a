"""Issue 11 item 5: a graph input whose batch is not on axis 0 (``--batch-axis``).

A sequence-first file with fixed shapes (``[tokens, batch, dim]``: the corpus' ``qmha_sf`` and
``graph_attn_sf``) cannot say which axis is the batch; given ``--batch-axis 1`` (or the input's
name), its layers report the same per-inference (m, n, P, H) and cost as the batch-first twin
exported from the same weights, and run the same integers at ``xbar`` as at ``cimq``. A
symbolic dimension off axis 0 says it itself. The one-line refusals of the option are in the
bad-input corpus (``tests/bad_input_cases.py``).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

import corpus
from cimc.frontend import import_onnx
from cimc.report import xbar_report

TWINS = {"qmha_sf": "qmha_bf", "graph_attn_sf": "graph_attn_bf"}


def _rows(report: dict) -> list[tuple[int, int, int, int]]:
    return [(r["m"], r["n"], r["P"], r["H"]) for r in report["layers"]]


def _cost(report: dict) -> tuple[float, ...]:
    t = report["total"]
    return (t["latency_us"], t["writes"], t["executes"],
            sum(r["adc_conversions"] for r in report["layers"]),
            sum(r["cells_written"] for r in report["layers"]), report["chip"]["time_per_inference_us"])


@pytest.mark.parametrize("sf", sorted(TWINS))
@pytest.mark.parametrize("spec", ["all", "named"])
def test_sequence_first_twin_costs_like_batch_first(sf: str, spec: str, capsys) -> None:
    pytest.importorskip("qonnx", reason="the corpus needs qonnx (pip install '.[qonnx]')")
    model = corpus.build(sf)
    names = [i.name for i in import_onnx(model.path).inputs]
    axis: int | dict = 1 if spec == "all" else {names[0]: 1}
    got = xbar_report(import_onnx(model.path, batch_axis=axis).module, baseline=False)
    twin = xbar_report(import_onnx(corpus.build(TWINS[sf]).path).module, baseline=False)
    assert got["warnings"] == [] and twin["warnings"] == []
    assert _rows(got) == _rows(twin)
    assert _cost(got) == pytest.approx(_cost(twin))
    plain = xbar_report(import_onnx(model.path).module, baseline=False)  # without the option
    assert _rows(plain) != _rows(twin)
    assert len(plain["warnings"]) == 1 and "--batch-axis" in plain["warnings"][0]
    with capsys.disabled():
        print(f"\n[{sf} --batch-axis {axis}] (m,n,P,H) {_rows(got)} == {TWINS[sf]}; latency "
              f"{got['total']['latency_us']:.1f} us == {twin['total']['latency_us']:.1f} us; "
              f"without the option {_rows(plain)}", end="")


@pytest.mark.parametrize("sf", sorted(TWINS))
def test_sequence_first_xbar_equals_cimq(sf: str) -> None:
    pytest.importorskip("qonnx", reason="the corpus needs qonnx (pip install '.[qonnx]')")
    from cimc.exec import run_at_level
    from cimc.target.hw import Hardware

    model = corpus.build(sf)
    module = import_onnx(model.path, batch_axis=1).module
    x = corpus.input_for(model)
    ref = run_at_level(module, "cimq", [x]).outputs
    for fast in (True, False):
        res = run_at_level(module, "xbar", [x], hw=Hardware(rows=16, cols=16), fast=fast)
        for a, b in zip(res.outputs, ref):
            np.testing.assert_array_equal(a, b)
    assert res.report["batch"] == model.input_shape[1]


def _export_sf_symbolic(path: Path) -> Path:
    """Brevitas' sequence-first QuantMultiheadAttention exported with a symbolic batch on
    axis 1 (``[5, "batch", 16]``)."""
    import brevitas.nn as qnn
    import torch
    from brevitas.export import export_onnx_qcdq

    class Block(torch.nn.Module):
        def __init__(self, batch_first: bool) -> None:
            super().__init__()
            self.mha = qnn.QuantMultiheadAttention(16, 2, batch_first=batch_first,
                                                   in_proj_weight_bit_width=4)

        def forward(self, x):
            return self.mha(x, x, x, need_weights=False)[0]

    torch.manual_seed(1)
    block = Block(False).eval()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        export_onnx_qcdq(block, args=torch.randn(5, 2, 16), export_path=str(path), dynamo=False,
                         opset_version=13, input_names=["x"], dynamic_axes={"x": {1: "batch"}})
    return path


def test_symbolic_dim_off_axis_0_is_the_batch(tmp_path: Path) -> None:
    """The file says it: a symbolic dim on axis 1 is the batch, without the option; the module
    is typed at one batch (1 by default, or the one asked for) and costs the same per inference."""
    path = _export_sf_symbolic(tmp_path / "sf.onnx")
    rows = {}
    for batch in (None, 1, 3):
        result = import_onnx(path, batch=batch)
        assert result.inputs[0].shape == (5, batch or 1, 16)
        rep = xbar_report(result.module, baseline=False)
        assert rep["warnings"] == []
        rows[batch] = _rows(rep)
    assert rows[None] == rows[1] == rows[3] == [(48, 16, 5, 1), (5, 8, 5, 2), (8, 5, 5, 2), (16, 16, 5, 1)]
    assert _rows(xbar_report(import_onnx(path, batch_axis=1).module, baseline=False)) == rows[1]


def test_batch_axis_survives_an_ir_file(tmp_path: Path) -> None:
    """``cimc lower -o`` writes the axes into ``@main`` (``cimq.batch_axes``): the IR file costs
    the same as the ONNX file with the option."""
    pytest.importorskip("qonnx", reason="the corpus needs qonnx (pip install '.[qonnx]')")
    from cimc.ir_io import read_module, write_module

    module = import_onnx(corpus.build("qmha_sf").path, batch_axis=1).module
    out = tmp_path / "sf.mlir"
    write_module(module, out)
    assert "cimq.batch_axes" in out.read_text()
    assert _rows(xbar_report(read_module(out), baseline=False)) == \
        _rows(xbar_report(module, baseline=False))


@pytest.mark.parametrize("sf", sorted(TWINS))
def test_run_labels_count_along_the_batch_axis(sf: str, tmp_path: Path, capsys) -> None:
    """``cimc run --batch-axis 1 --labels``: one label per input along axis 1, top-1 per input
    equal to the batch-first twin's on the same data, and the same accuracy."""
    pytest.importorskip("qonnx", reason="the corpus needs qonnx (pip install '.[qonnx]')")
    from cimc.cli import run

    model, twin = corpus.build(sf), corpus.build(TWINS[sf])
    x = corpus.input_for(model)
    batch = x.shape[1]
    assert batch > 1 and x.shape[0] != batch  # the test needs the axes told apart
    np.save(tmp_path / "x_sf.npy", x)
    np.save(tmp_path / "x_bf.npy", np.ascontiguousarray(np.moveaxis(x, 1, 0)))
    reports = {}
    for name, path, extra in (("bf", twin.path, []), ("sf", model.path, ["--batch-axis", "1"])):
        out = tmp_path / f"y_{name}.npy"
        assert run(["run", str(path), "--level", "xbar", "--input", str(tmp_path / f"x_{name}.npy"),
                    "--output", str(out), *extra]) == 0
        reports[name] = np.load(out)
    np.testing.assert_array_equal(np.moveaxis(reports["sf"], 1, 0), reports["bf"])
    classes = reports["bf"].shape[-1]
    pred = reports["bf"].reshape(batch, -1).argmax(axis=1)  # the twin's top-1, over (tokens, dim)
    labels = np.where(np.arange(batch) == 0, (pred + 1) % classes, pred % classes)
    np.save(tmp_path / "labels.npy", labels)
    expect = 100.0 * float((labels == pred).mean())
    acc = {}
    for name, path, extra in (("bf", twin.path, []), ("sf", model.path, ["--batch-axis", "1"])):
        rep = tmp_path / f"r_{name}.json"
        assert run(["run", str(path), "--level", "xbar", "--input", str(tmp_path / f"x_{name}.npy"),
                    "--labels", str(tmp_path / "labels.npy"), "--report", str(rep), *extra]) == 0
        acc[name] = __import__("json").loads(rep.read_text())["accuracy_top1"]
    assert acc["sf"] == acc["bf"] == pytest.approx(expect)
    capsys.readouterr()
    # labels counted along axis 0 (the tokens) are refused, as is a random batch the model is not typed at
    np.save(tmp_path / "tokens.npy", np.zeros(x.shape[0], np.int64))
    assert run(["run", str(model.path), "--batch-axis", "1", "--input", str(tmp_path / "x_sf.npy"),
                "--labels", str(tmp_path / "tokens.npy")]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {tmp_path / 'tokens.npy'}: {x.shape[0]} labels for a batch of {batch} inputs"]
    assert run(["run", str(model.path), "--batch-axis", "1", "--batch", str(batch + 1)]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: --batch {batch + 1}: the model is typed at batch {batch}")
