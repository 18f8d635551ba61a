"""Imperfect devices: off by default, seeded, each effect as defined, presets and their errors."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from cimc.exec.noise_runs import compare_noise, crossbar_accuracy
from cimc.exec.xbar_exec import run_xbar
from cimc.pipeline import lower
from cimc.target.hw import Hardware
from cimc.target.kernels import crossbar_layer, tile_cycles
from cimc.target.noise import (
    PARAMS,
    Device,
    NoiseModel,
    NoisePresetError,
    builtin_noise_presets,
    load_noise,
    normal_table,
)
from cli_helpers import assert_one_line_error
from xbar_ir import attention_module, conv_module, linear_module

ROOT = Path(__file__).resolve().parent.parent
MODERATE = load_noise("rram-moderate")
HW = Hardware(rows=16, cols=16)


def _program(kind: str, hw: Hardware = HW, seed: int = 0):
    rng = np.random.default_rng(seed)
    if kind == "conv":
        module, inputs = conv_module(rng, cin=3, cout=5, k=3, size=6, pad=1, w_bits=6, a_bits=5)
    elif kind == "linear":
        module, inputs = linear_module(rng, k=40, n=9, tokens=3, w_bits=8, a_bits=4, a_signed=True)
    else:
        module, inputs = attention_module(rng, heads=2, tokens=5, dim=6, w_bits=5, a_bits=6)
    prog = module.clone()
    lower(prog, "xbar", hw=hw)
    return prog, inputs


def _same(a, b) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(a.outputs, b.outputs))


def _counts(res) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in res.report["layers"]]


@pytest.mark.parametrize("kind", ["conv", "linear", "attention"])
@pytest.mark.parametrize("fuse", [True, False])
def test_ideal_device_changes_nothing(kind, fuse):
    """All parameters 0 through the device path: outputs and counters as without a device."""
    prog, inputs = _program(kind)
    plain = run_xbar(prog, inputs, hw=HW, fast=False, fuse=fuse)
    ideal = run_xbar(prog, inputs, hw=HW, fast=False, fuse=fuse, noise=load_noise("ideal"), seed=3)
    assert _same(plain, ideal) and _counts(plain) == _counts(ideal)
    assert ideal.report["noise"]["name"] == "ideal" and "noise" not in plain.report


@pytest.mark.parametrize("kind", ["conv", "linear", "attention"])
def test_same_seed_same_outputs_other_seed_differs(kind):
    prog, inputs = _program(kind)
    ideal = run_xbar(prog, inputs, hw=HW, fast=False)
    for fuse in (True, False):
        a = run_xbar(prog, inputs, hw=HW, fast=False, fuse=fuse, noise=MODERATE, seed=7)
        b = run_xbar(prog, inputs, hw=HW, fast=False, fuse=fuse, noise=MODERATE, seed=7)
        c = run_xbar(prog, inputs, hw=HW, fast=False, fuse=fuse, noise=MODERATE, seed=8)
        assert _same(a, b) and _counts(a) == _counts(b)
        assert not _same(a, c) and not _same(a, ideal)
        for ra, ri in zip(_counts(a), _counts(ideal)):  # noise changes values, not the events
            assert {k: v for k, v in ra.items() if k != "adc_saturations"} == \
                   {k: v for k, v in ri.items() if k != "adc_saturations"}


def test_stuck_rate_zero_changes_nothing():
    prog, inputs = _program("conv")
    base = NoiseModel(programming_sigma=0.1, read_sigma=0.03, adc_offset_sigma=0.4, adc_gain_sigma=0.02)
    zero = dataclasses.replace(base, stuck_on_rate=0.0, stuck_off_rate=0.0)
    a = run_xbar(prog, inputs, hw=HW, fast=False, noise=base, seed=5)
    b = run_xbar(prog, inputs, hw=HW, fast=False, noise=zero, seed=5)
    assert _same(a, b) and _counts(a) == _counts(b)
    stuck = dataclasses.replace(base, stuck_on_rate=0.05)
    assert not _same(a, run_xbar(prog, inputs, hw=HW, fast=False, noise=stuck, seed=5))
    # and without any other effect, stuck rate 0 is the ideal run
    ideal = run_xbar(prog, inputs, hw=HW, fast=False)
    assert _same(ideal, run_xbar(prog, inputs, hw=HW, fast=False, noise=NoiseModel(), seed=5))


def test_effects_use_independent_streams():
    """Turning one effect off leaves the draws of the others unchanged (the ADCs' gains and
    offsets, the stuck map)."""
    hw = Hardware(rows=32, cols=32)
    a = Device(MODERATE, hw, 11)
    b = Device(dataclasses.replace(MODERATE, programming_sigma=0.0, read_sigma=0.0), hw, 11)
    assert np.array_equal(a.adc_gain, b.adc_gain) and np.array_equal(a.adc_offset, b.adc_offset)
    assert np.array_equal(a.stuck, b.stuck)


# ---------------------------------------------------------------------------- each effect


def _tile_setup(rows=64, cols=48, n_vec=4000, seed=0):
    rng = np.random.default_rng(seed)
    g = rng.integers(0, 16, (rows, cols)).astype(np.float32)
    planes = (rng.random((n_vec, rows)) < 0.5).astype(np.float32)
    return g, planes


def test_stuck_off_everywhere_leaves_only_the_correction():
    """Every cell stuck at 0: every column reads 0, the layer's output is the signed-input
    correction alone, whatever the weights."""
    rng = np.random.default_rng(1)
    hw = Hardware(rows=32, cols=32)
    W = rng.integers(-7, 8, (50, 6))
    X = rng.integers(-8, 8, (5, 50))
    dev = Device(NoiseModel(stuck_off_rate=1.0), hw, 0)
    y = crossbar_layer(X, W, 4, 4, True, hw, device=dev)
    from cimc.target.mapping import correction

    assert np.array_equal(y, -np.broadcast_to(correction(W, 4, True), y.shape))


def test_stuck_on_cells_read_the_highest_level():
    hw = Hardware(rows=8, cols=8)
    dev = Device(NoiseModel(stuck_on_rate=0.3, stuck_off_rate=0.2), hw, 4)
    g = dev.program(np.full((8, 8), 5), np.float32)
    assert np.all(g[dev.stuck == 2] == 15) and np.all(g[dev.stuck == 1] == 0)
    assert np.all(g[dev.stuck == 0] == 5)
    assert 0 < (dev.stuck == 2).sum() and 0 < (dev.stuck == 1).sum()


def test_programming_noise_is_relative_per_level_and_fresh_per_write():
    hw = Hardware(rows=256, cols=256)
    dev = Device(NoiseModel(programming_sigma=0.1), hw, 2)
    levels = np.full((256, 256), 8)
    g1, g2 = dev.program(levels, np.float64), dev.program(levels, np.float64)
    assert not np.array_equal(g1, g2)  # each write draws again
    rel = g1 / 8 - 1
    assert abs(rel.mean()) < 0.002 and rel.std() == pytest.approx(0.1, rel=0.02)
    assert np.all(dev.program(np.zeros((4, 4)), np.float64) == 0)  # level 0 stays 0


def test_read_noise_has_the_stated_std():
    """Column noise std = read_sigma * g_max * sqrt(active rows), mean 0."""
    g, planes = _tile_setup()
    hw = Hardware(rows=64, cols=48)
    dev = Device(NoiseModel(read_sigma=0.02), hw, 9)
    lo, hi = -10**9, 10**9
    ideal = np.zeros((planes.shape[0], 48), np.int64)
    noisy = np.zeros_like(ideal)
    tile_cycles(planes, g, planes.shape[0], 1, 1, lo, hi, ideal, 0, 0)
    tile_cycles(planes, g, planes.shape[0], 1, 1, lo, hi, noisy, 0, 0, dev)
    z = (noisy - ideal) / (0.02 * 15 * np.sqrt(planes.sum(axis=1)))[:, None]
    assert abs(z.mean()) < 0.02 and z.std() == pytest.approx(np.sqrt(1 + 1 / (12 * 0.09 * 32)), rel=0.03)


def test_adc_offset_and_gain_per_column():
    g, planes = _tile_setup(n_vec=50)
    hw = Hardware(rows=64, cols=48)
    dev = Device(NoiseModel(adc_offset_sigma=2.0, adc_gain_sigma=0.05), hw, 3)
    lo, hi = -10**9, 10**9
    noisy = np.zeros((50, 48), np.int64)
    tile_cycles(planes, g, 50, 1, 1, lo, hi, noisy, 0, 0, dev)
    v = (planes.astype(np.float64) @ g)
    assert np.array_equal(noisy, np.rint(dev.adc_gain[:48] * v + dev.adc_offset[:48]).astype(np.int64))


def test_normal_table_is_standard():
    t = normal_table()
    assert len(t) == 4096 and abs(t.mean()) < 1e-12 and t.std() == pytest.approx(1.0)


def test_fast_path_and_xbar_mm_refuse_noise():
    from cimc.errors import ExecutionError

    prog, inputs = _program("linear")
    with pytest.raises(ExecutionError, match="ideal device"):
        run_xbar(prog, inputs, hw=HW, fast=True, noise=MODERATE)
    mm, inputs = linear_module(np.random.default_rng(0), k=20, n=4)
    lower(mm, "xbar-mm", hw=HW)
    with pytest.raises(ExecutionError, match="xbar level"):
        run_xbar(mm, inputs, hw=HW, noise=MODERATE)


def test_compare_noise_reports_layer_errors_and_accuracy():
    prog, inputs = _program("conv")
    x = np.concatenate([inputs[0], 0.5 * inputs[0], -inputs[0]])
    labels = np.array([0, 1, 2])
    cmp = compare_noise(prog, [x], HW, load_noise("rram-severe"), [0, 1, 2], labels=labels)
    assert [r["seed"] for r in cmp["runs"]] == [0, 1, 2]
    (layer,) = cmp["layers"]
    assert layer["rel_error"]["mean"] > 0 and layer["rel_error"]["std"] >= 0
    assert 0 <= cmp["accuracy_top1"]["mean"] <= 100
    ideal = compare_noise(prog, [x], HW, load_noise("ideal"), [0])
    assert ideal["layers"][0]["rel_error"]["mean"] == 0 and ideal["runs"][0]["top1_changed"] == 0


def test_crossbar_accuracy_batches_share_one_device():
    prog, inputs = _program("linear")
    x = np.concatenate([inputs[0]] * 4)
    y = np.zeros(len(x), dtype=np.int64)
    one = crossbar_accuracy(prog, x, y, HW, noise=MODERATE, seeds=[1, 2], batch=len(x))
    assert one["seeds"] == [1, 2] and len(one["per_seed"]) == 2
    ideal = crossbar_accuracy(prog, x, y, HW)
    assert ideal["images"] == len(x) and 0 <= ideal["accuracy_top1"] <= 100


# ---------------------------------------------------------------------------- presets


def test_builtin_noise_presets_load():
    assert {"ideal", "rram-moderate", "rram-severe"} <= set(builtin_noise_presets())
    for name in builtin_noise_presets():
        model = load_noise(name)
        assert model.name == name
    assert all(v == 0 for v in load_noise("ideal").params().values())


def _noise_yaml(**params) -> dict:
    base = {k: {"value": 0.0, "unit": unit} for k, (unit, _) in PARAMS.items()}
    for k, v in params.items():
        if v is None:
            base.pop(k)
        else:
            base[k] = v
    return {"name": "t", "parameters": base}


BAD = {
    "missing unit": (dict(read_sigma={"value": 0.1}), "parameters.read_sigma.unit", "missing"),
    "negative": (dict(read_sigma={"value": -0.1, "unit": "relative"}), "parameters.read_sigma.value", "negative"),
    "unknown key": (dict(read_noise={"value": 0.1, "unit": "relative"}), "parameters.read_noise", "unknown"),
    "wrong type": (dict(read_sigma={"value": "high", "unit": "relative"}), "parameters.read_sigma.value",
                   "not a finite number"),
    "wrong unit": (dict(adc_offset_sigma={"value": 1, "unit": "mV"}), "parameters.adc_offset_sigma.unit",
                   "not the unit"),
    "rate above 1": (dict(stuck_on_rate={"value": 2, "unit": "fraction"}), "parameters.stuck_on_rate.value",
                     "fraction"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_noise_presets_give_one_line_errors(tmp_path, case):
    params, key, words = BAD[case]
    path = tmp_path / "n.yaml"
    path.write_text(yaml.safe_dump(_noise_yaml(**params)))
    with pytest.raises(NoisePresetError) as err:
        load_noise(path)
    msg = err.value.message
    assert "\n" not in msg and str(path) in msg and f"'{key}'" in msg and words in msg, msg


def test_noise_overrides():
    m = MODERATE.with_overrides("programming_sigma=0.2, read_sigma=0")
    assert m.programming_sigma == 0.2 and m.read_sigma == 0 and m.stuck_on_rate == MODERATE.stuck_on_rate
    for bad in ("colour=1", "read_sigma=lots", "read_sigma=-1"):
        with pytest.raises(NoisePresetError, match="--noise-set"):
            MODERATE.with_overrides(bad)


# ---------------------------------------------------------------------------- CLI


def _cimc(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(Path(sys.executable).parent / "cimc"), *args], capture_output=True, text=True,
                          timeout=300, cwd=ROOT)


def test_cli_run_with_noise_repeat(tmp_path):
    from cimc.ir_io import write_module

    module, inputs = linear_module(np.random.default_rng(2), k=30, n=10, w_bits=6, a_bits=5)
    model = tmp_path / "m.mlir"
    write_module(module, model)
    x = np.concatenate([inputs[0], -inputs[0], 0.5 * inputs[0], 2 * inputs[0]])
    np.save(tmp_path / "x.npy", x)
    labels = tmp_path / "y.npy"
    np.save(labels, np.array([0, 1, 2, 3]))
    out = tmp_path / "r.json"
    res = _cimc("run", str(model), "--level", "xbar", "--input", str(tmp_path / "x.npy"), "--labels",
                str(labels), "--hw-set", "rows=16,cols=16", "--noise", "rram-moderate", "--noise-set",
                "programming_sigma=0.1", "--seed", "4", "--repeat", "2", "--report", str(out), "--no-progress")
    assert res.returncode == 0, res.stderr
    rep = json.loads(out.read_text())
    assert rep["noise"]["seeds"] == [4, 5] and rep["noise"]["noise"]["programming_sigma"] == 0.1
    assert len(rep["noise"]["layers"]) == 1 and "accuracy_top1" in rep["noise"]
    assert rep["total"]["energy_uj"] > 0
    assert "against the ideal run" in res.stdout
    assert_one_line_error(_cimc("run", str(model), "--noise", "rram-moderate"), "--level xbar")
    assert_one_line_error(_cimc("run", str(model), "--level", "xbar", "--noise", "nope"), "unknown noise preset")
    assert_one_line_error(_cimc("run", str(model), "--level", "xbar", "--repeat", "2"), "--noise")


@pytest.mark.parametrize("fuse", [True, False])
def test_skipped_cycles_convert_nothing_on_a_noisy_device(fuse):
    """With zero-plane skipping (xbar-opt), a skipped cycle gives code 0 on a noisy device too:
    the ideal device gives the ideal outputs and the same counts, skipped cycles included."""
    from cimc.passes.xbar_skip_zero_planes import XbarSkipZeroPlanesPass
    from cimc.context import make_context

    prog, inputs = _program("conv")
    XbarSkipZeroPlanesPass().apply(make_context(), prog)
    x = [np.where(np.arange(inputs[0].size).reshape(inputs[0].shape) % 3 == 0, 0.0, inputs[0])]
    plain = run_xbar(prog, x, hw=HW, fast=False, fuse=fuse)
    assert plain.report["total"]["skipped_cycles"] > 0
    ideal = run_xbar(prog, x, hw=HW, fast=False, fuse=fuse, noise=NoiseModel(), seed=1)
    assert _same(plain, ideal) and _counts(plain) == _counts(ideal)
    offset = run_xbar(prog, x, hw=HW, fast=False, fuse=fuse, noise=NoiseModel(adc_offset_sigma=3.0), seed=1)
    assert not _same(plain, offset)
    assert offset.report["total"]["skipped_cycles"] == plain.report["total"]["skipped_cycles"]
    # all-zero inputs: every cycle is skipped, so even a large ADC offset changes nothing
    zeros = [np.zeros_like(inputs[0])]
    a = run_xbar(prog, zeros, hw=HW, fast=False, fuse=fuse)
    b = run_xbar(prog, zeros, hw=HW, fast=False, fuse=fuse, noise=NoiseModel(adc_offset_sigma=3.0), seed=1)
    assert _same(a, b) and b.report["total"]["executes"] == 0
