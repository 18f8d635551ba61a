"""Energy from counted events: counts x per-event parameters, presets, reports, bad presets."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.resources import files
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cimc.exec.xbar_exec import add_energy, run_xbar
from cimc.pipeline import lower
from cimc.report import energy_table, plot_report, report_table, xbar_report
from cimc.target import COUNTER_NAMES, Counters, LayerDesc, layer_counters, layer_geometry, latency_us
from cimc.target.energy import (
    COMPONENTS,
    EVENTS,
    NOT_PRICED,
    PARAMS,
    EnergyPresetError,
    adc_resolution,
    area_mm2,
    builtin_presets,
    check_counter_coverage,
    energy_model,
    load_preset,
    preset_from_dict,
)
from cimc.target.hw import Hardware
from cli_helpers import assert_one_line_error
from xbar_ir import attention_module, conv_module, linear_module

PRESETS = ("isaac-puma-32nm", "neurosim-22nm")
ROOT = Path(__file__).resolve().parent.parent


def _expected_pj(counts: dict[str, int], latency: float, preset, hw: Hardware) -> float:
    """sum over counters of count x parameter (at the hardware's resolutions) + leakage x latency."""
    total = 0.0
    for name, (_, key) in EVENTS.items():
        spec = PARAMS[key]
        bits = {"adc": adc_resolution(hw), "dac": hw.dac_bits}.get(spec.resolution or "")
        total += counts[name] * preset.params[key].at(bits)
    return total + preset.params["leakage"].at() * latency * 1e6


def _raw(name: str) -> dict:
    return yaml.safe_load(files("cimc.target").joinpath("presets", "energy", f"{name}.yaml").read_text())


# ---------------------------------------------------------------------------- presets


def test_builtin_presets_ship_and_load_through_package_resources():
    assert set(PRESETS) <= set(builtin_presets())
    for name in builtin_presets():
        assert load_preset(name).name == name


@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_entry_has_a_unit_and_a_source(name):
    raw = _raw(name)
    for key, entry in raw["parameters"].items():
        assert key in PARAMS
        assert entry["unit"], key
        src = entry["source"]
        assert isinstance(src["publication"], str) and src["publication"].strip(), key
        assert isinstance(src["year"], int) and 1990 <= src["year"] <= 2030, key
        assert isinstance(src["node"], str) and "nm" in src["node"], key
    for key, spec in PARAMS.items():
        assert key in raw["parameters"] or not spec.required


def test_presets_differ_by_more_than_10x_on_the_adc():
    isaac, neuro = load_preset("isaac-puma-32nm"), load_preset("neurosim-22nm")
    for bits in (4, 8, 12):
        ratio = isaac.params["adc_conversion"].at(bits) / neuro.params["adc_conversion"].at(bits)
        assert ratio > 10, (bits, ratio)


def test_published_figures_in_the_presets():
    isaac, neuro = load_preset("isaac-puma-32nm"), load_preset("neurosim-22nm")
    assert isaac.params["adc_conversion"].at(8) == pytest.approx(1.8e-3 / 1.28e9 * 1e12)  # pJ
    assert neuro.params["adc_conversion"].at(4) == pytest.approx((0.7213 * 4 + 3.3041) * 5e-3, rel=1e-4)
    assert neuro.params["cell_read"].at() == pytest.approx(0.5**2 / 100e3 * 10e-9 * 1e12)
    assert isaac.params["leakage"].at() == pytest.approx(0.2e-3)  # W


def test_resolution_tables_interpolate_geometrically_and_double_outside():
    p = preset_from_dict(_preset_dict(adc={"by_bits": {4: 1.0, 8: 16.0}, "unit": "pJ"}), "t.yaml")
    adc = p.params["adc_conversion"]
    assert adc.at(4) == 1.0 and adc.at(8) == 16.0
    assert adc.at(6) == pytest.approx(4.0)
    assert adc.at(10) == pytest.approx(64.0) and adc.at(2) == pytest.approx(0.25)


def test_every_counter_is_priced_or_listed():
    check_counter_coverage()
    assert set(EVENTS) | set(NOT_PRICED) == set(COUNTER_NAMES)
    assert {c for c, _ in EVENTS.values()} | {"leakage"} == set(COMPONENTS)


# ---------------------------------------------------------------------------- energy = counts x params


@settings(max_examples=60, deadline=None)
@given(
    m=st.integers(1, 600), n=st.integers(1, 600), p=st.integers(1, 50), h=st.integers(1, 4),
    w=st.integers(1, 8), a=st.integers(1, 8), c=st.sampled_from([1, 2, 3, 4]), d=st.sampled_from([1, 2, 4]),
    rows=st.sampled_from([16, 64, 128, 256]), cols=st.sampled_from([16, 64, 256]),
    mapping=st.sampled_from(["dc", "dr", "of"]), adc=st.one_of(st.none(), st.integers(3, 14)),
    batch=st.integers(1, 3), host=st.integers(0, 10_000), preset=st.sampled_from(PRESETS),
)
def test_energy_is_counters_times_parameters(m, n, p, h, w, a, c, d, rows, cols, mapping, adc, batch,
                                             host, preset):
    hw = Hardware(rows=rows, cols=cols, cell_bits=c, dac_bits=d, mapping=mapping, adc_bits=adc)
    geom = layer_geometry(LayerDesc("l", m, n, p, h), w, a, hw)
    counters = layer_counters(geom, batch=batch) + Counters(host_elements=host)
    lat = latency_us(counters, hw)
    pre = load_preset(preset)
    model = energy_model(pre, hw)
    parts = model.component_pj(counters, lat)
    assert sum(parts.values()) == pytest.approx(_expected_pj(counters.as_dict(), lat, pre, hw), rel=1e-12)
    # linear in the counts: twice the activity, twice the energy
    assert model.energy_pj(counters * 2, 2 * lat) == pytest.approx(2 * sum(parts.values()), rel=1e-12)
    assert all(v >= 0 for v in parts.values())


def _random_model(kind: str, rng: np.random.Generator):
    w, a = int(rng.integers(2, 9)), int(rng.integers(2, 9))
    if kind == "conv":
        return conv_module(rng, cin=3, cout=5, k=3, size=6, pad=1, w_bits=w, a_bits=a)
    if kind == "linear":
        return linear_module(rng, k=int(rng.integers(5, 70)), n=int(rng.integers(2, 40)),
                             tokens=int(rng.integers(0, 3)), w_bits=w, a_bits=a)
    return attention_module(rng, heads=2, tokens=4, dim=6, w_bits=w, a_bits=a)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kind=st.sampled_from(["conv", "linear", "attention"]), seed=st.integers(0, 10_000),
       rows=st.sampled_from([8, 16, 32]), c=st.sampled_from([1, 2, 4]), d=st.sampled_from([1, 2]),
       mapping=st.sampled_from(["dc", "dr", "of"]), preset=st.sampled_from(PRESETS))
def test_report_and_run_energy_equal_counters_times_parameters(kind, seed, rows, c, d, mapping, preset):
    """Random models on random hardware: every layer's energy in ``cimc report`` (counts read off
    the program) and in a bit-serial run (counts counted) is sum(counters x parameters)."""
    rng = np.random.default_rng(seed)
    module, inputs = _random_model(kind, rng)
    hw = Hardware(rows=rows, cols=rows, cell_bits=c, dac_bits=d, mapping=mapping)
    pre = load_preset(preset)
    rep = xbar_report(module, hw, baseline=False, energy=pre)
    for row in rep["layers"]:
        expect = _expected_pj(row, row["latency_us"], pre, hw) / 1e6
        assert row["energy_uj"] == pytest.approx(expect, rel=1e-12)
        assert sum(row["energy_uj_by_component"].values()) == pytest.approx(row["energy_uj"], rel=1e-12)
    host = rep["host"]
    assert host["energy_uj"] == pytest.approx((host["host_elements"] + host["host_macs"])
                                              * pre.params["host_op"].at() / 1e6)
    total = rep["total"]
    assert total["energy_uj"] == pytest.approx(sum(r["energy_uj"] for r in (*rep["layers"], host)))
    assert total["edp_uj_us"] == pytest.approx(total["energy_uj"] * total["latency_us"])
    prog = module.clone()
    lower(prog, "xbar", hw=hw)
    run = add_energy(run_xbar(prog, inputs, hw=hw, fast=False).report, hw, pre)
    for got, want in zip(run["layers"], rep["layers"]):
        assert got["energy_uj"] == pytest.approx(want["energy_uj"], rel=1e-12)
    assert run["total"]["energy_uj"] == pytest.approx(total["energy_uj"], rel=1e-12)
    assert run["total"]["edp_uj_us"] == pytest.approx(total["edp_uj_us"], rel=1e-12)


def _strip_energy(obj):
    if isinstance(obj, dict):
        return {k: _strip_energy(v) for k, v in obj.items()
                if "energy" not in k and "edp" not in k}
    if isinstance(obj, list):
        return [_strip_energy(v) for v in obj]
    return obj


def test_swapping_presets_changes_only_energy():
    rng = np.random.default_rng(4)
    module, _ = conv_module(rng, cin=4, cout=8, k=3, size=8, pad=1, w_bits=4, a_bits=6)
    hw = Hardware(rows=32, cols=32)
    a = xbar_report(module, hw, energy=load_preset("isaac-puma-32nm"))
    b = xbar_report(module, hw, energy=load_preset("neurosim-22nm"))
    plain = xbar_report(module, hw)
    assert _strip_energy(a) == _strip_energy(b) == plain
    adc = [r["total"]["energy_uj_by_component"]["adc"] for r in (a, b)]
    assert adc[0] > 10 * adc[1] > 0 and a["total"]["energy_uj"] > b["total"]["energy_uj"] > 0
    assert a["energy"]["preset"] != b["energy"]["preset"]


def test_energy_table_plot_and_baseline(tmp_path):
    from rich.console import Console

    rng = np.random.default_rng(2)
    module, _ = linear_module(rng, k=40, n=12, tokens=2, w_bits=4, a_bits=4)
    rep = xbar_report(module, Hardware(rows=16, cols=16), energy=load_preset("neurosim-22nm"))
    assert rep["baseline"]["energy_uj"] > rep["total"]["energy_uj"] > 0
    assert rep["energy_saving"] == pytest.approx(rep["baseline"]["energy_uj"] / rep["total"]["energy_uj"])
    assert rep["edp_gain"] == pytest.approx(rep["baseline"]["edp_uj_us"] / rep["total"]["edp_uj_us"])
    console = Console(file=open(tmp_path / "t.txt", "w"), width=200)
    console.print(report_table(rep))
    console.print(energy_table(rep))
    console.file.close()
    text = (tmp_path / "t.txt").read_text()
    assert "energy-delay product" in text and "leakage" in text and "neurosim-22nm" in text
    png = plot_report(rep, tmp_path / "r.png")
    assert png[:4] == b"\x89PNG" and (tmp_path / "r.png").read_bytes() == png
    json.dumps(rep)  # JSON-able


def test_energy_follows_the_chip():
    """Resident weights are not written again (their programming is reported once, apart);
    shared ADCs convert the same columns (same ADC energy) over a longer time (more leakage)."""
    rng = np.random.default_rng(6)
    module, _ = conv_module(rng, cin=8, cout=16, k=3, size=8, pad=1, w_bits=8, a_bits=8)
    pre = load_preset("isaac-puma-32nm")
    base = Hardware(rows=32, cols=32, arrays=64)
    paper = xbar_report(module, base, energy=pre, baseline=False)
    resident = xbar_report(module, Hardware(rows=32, cols=32, arrays=64, residency="all"), energy=pre,
                           baseline=False)
    comp = lambda r, c: r["total"]["energy_uj_by_component"][c]  # noqa: E731
    assert comp(paper, "write") > 0 and comp(resident, "write") == 0
    assert comp(resident, "adc") == pytest.approx(comp(paper, "adc"))
    once = resident["energy"]["one_time_programming"]
    cell_uj = pre.params["cell_write"].at() / 1e6
    program_cells = sum(r["cells_written"] for r in paper["layers"])
    assert once["cells_written"] == resident["chip"]["programming_cells"] >= program_cells > 0  # copies too
    assert once["energy_uj"] == pytest.approx(once["cells_written"] * cell_uj)
    tiles = sum(r["writes"] for r in paper["layers"])  # one array per tile: no copies
    exact = xbar_report(module, Hardware(rows=32, cols=32, arrays=tiles, residency="all"), energy=pre,
                        baseline=False)["energy"]["one_time_programming"]
    one = xbar_report(module, Hardware(rows=32, cols=32, arrays=tiles), energy=pre, baseline=False)
    assert exact["cells_written"] == program_cells
    assert exact["energy_uj"] == pytest.approx(comp(one, "write")) == pytest.approx(program_cells * cell_uj)
    shared = xbar_report(module, Hardware(rows=32, cols=32, arrays=64, cols_per_adc=8), energy=pre,
                         baseline=False)
    assert comp(shared, "adc") == pytest.approx(comp(paper, "adc"))
    assert shared["total"]["latency_us"] > paper["total"]["latency_us"]
    assert comp(shared, "leakage") > comp(paper, "leakage")
    # leakage is drawn by every array of the chip over the run
    assert comp(paper, "leakage") == pytest.approx(
        pre.params["leakage"].at() * 64 * paper["total"]["latency_us"] * 1e6 / 1e6)


def test_area_from_the_preset():
    hw = Hardware()
    area = area_mm2(load_preset("isaac-puma-32nm"), hw)
    assert area is not None and set(area) == {"cells", "adc", "dac"}
    assert area["adc"] == pytest.approx(256 * load_preset("isaac-puma-32nm").params["adc_area"].at(12))
    assert area_mm2(load_preset("neurosim-22nm"), hw) is None


# ---------------------------------------------------------------------------- bad presets


def _preset_dict(adc=None, **changes) -> dict:
    src = {"publication": "test", "year": 2024, "node": "22 nm"}
    params = {
        "adc_conversion": adc or {"by_bits": {8: 1.0}, "unit": "pJ"},
        "dac_activation": {"by_bits": {1: 0.1}, "unit": "fJ"},
        "cell_read": {"value": 1.0, "unit": "fJ"},
        "cell_write": {"value": 1.0, "unit": "pJ"},
        "digital_op": {"value": 0.1, "unit": "pJ"},
        "host_op": {"value": 1.0, "unit": "pJ"},
        "leakage": {"value": 0.1, "unit": "mW"},
    }
    for entry in params.values():
        entry.setdefault("source", dict(src))
    for key, value in changes.items():
        if value is None:
            del params[key]
        else:
            params[key] = value
    return {"name": "test", "parameters": params}


def _entry(**kw):
    base = {"value": 1.0, "unit": "fJ", "source": {"publication": "p", "year": 2020, "node": "22 nm"}}
    base.update(kw)
    return {k: v for k, v in base.items() if v is not None}


BAD = {
    "missing unit": (dict(cell_read=_entry(unit=None)), "parameters.cell_read.unit", "missing"),
    "negative energy": (dict(cell_read=_entry(value=-1.0)), "parameters.cell_read.value", "negative"),
    "unknown key": (dict(cell_red=_entry()), "parameters.cell_red", "unknown parameter"),
    "unknown sub-key": (dict(cell_read=_entry(units="fJ")), "parameters.cell_read.units", "unknown key"),
    "wrong type": (dict(cell_read=_entry(value="lots")), "parameters.cell_read.value", "not a number"),
    "wrong unit": (dict(cell_read=_entry(unit="mW")), "parameters.cell_read.unit", "not a energy unit"),
    "missing source": (dict(cell_read=_entry(source=None)), "parameters.cell_read.source", "missing"),
    "source without year": (dict(cell_read=_entry(source={"publication": "p", "node": "22 nm"})),
                            "parameters.cell_read.source.year", "missing"),
    "missing parameter": (dict(cell_write=None), "parameters.cell_write", "missing"),
    "table for a scalar": (dict(cell_read=_entry(value=None, by_bits={4: 1.0})),
                           "parameters.cell_read.by_bits", "give value"),
    "negative table entry": (dict(adc_conversion={"by_bits": {8: -2.0}, "unit": "pJ",
                                                  "source": {"publication": "p", "year": 2020, "node": "x nm"}}),
                             "parameters.adc_conversion.by_bits.8", "negative"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_presets_give_one_line_errors_naming_key_and_file(tmp_path, case):
    changes, key, words = BAD[case]
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(_preset_dict(**changes)))
    with pytest.raises(EnergyPresetError) as err:
        load_preset(path)
    msg = err.value.message
    assert "\n" not in msg and str(path) in msg and f"'{key}'" in msg and words in msg, msg


def test_bad_preset_files(tmp_path):
    with pytest.raises(EnergyPresetError, match="not found"):
        load_preset(tmp_path / "none.yaml")
    with pytest.raises(EnergyPresetError, match="unknown energy preset 'nope'"):
        load_preset("nope")
    bad = tmp_path / "b.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(EnergyPresetError, match="invalid YAML"):
        load_preset(bad)
    bad.write_text(yaml.safe_dump({**_preset_dict(), "colour": "red"}))
    with pytest.raises(EnergyPresetError, match="key 'colour'"):
        load_preset(bad)


def test_a_users_preset_file_loads(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(_preset_dict()))
    pre = load_preset(path)
    assert pre.origin == str(path) and pre.params["leakage"].at() == pytest.approx(1e-4)


def run_cli(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(Path(sys.executable).parent / "cimc"), *args], capture_output=True,
                          text=True, timeout=300, cwd=ROOT)


def test_cli_report_and_run_with_energy(tmp_path):
    model = "examples/lenet_fmnist_mixed.onnx"
    out = tmp_path / "r.json"
    res = run_cli(["report", model, "--energy", "neurosim-22nm", "--json", str(out), "--no-baseline"])
    assert res.returncode == 0, res.stderr
    rep = json.loads(out.read_text())
    assert rep["energy"]["preset"] == "neurosim-22nm" and rep["total"]["energy_uj"] > 0
    assert "energy-delay product" in res.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(_preset_dict(cell_read=_entry(unit=None))))
    res = run_cli(["report", model, "--energy", str(bad)])
    assert_one_line_error(res, str(bad), "parameters.cell_read.unit")
    run_json = tmp_path / "run.json"
    res = run_cli(["run", model, "--level", "xbar", "--report", str(run_json), "--no-progress"])
    assert res.returncode == 0, res.stderr
    run = json.loads(run_json.read_text())
    assert run["energy"]["preset"] == "isaac-puma-32nm"
    assert run["total"]["edp_uj_us"] == pytest.approx(run["total"]["energy_uj"] * run["total"]["latency_us"])


def test_energy_with_a_host_layer(tmp_path):
    """A Conv on the host (host fallback) has no crossbar energy; its output elements and its
    multiply-adds (4x6x6 outputs of 3x3x3 each) are host ops, priced in the host row, counted at
    run time as the report reads them off the IR."""
    from cimc.frontend import import_onnx
    from test_host_fallback import first_layer_float

    module = import_onnx(first_layer_float(tmp_path)).module
    hw, pre = Hardware(rows=16, cols=16), load_preset("neurosim-22nm")
    rep = xbar_report(module, hw, energy=pre)
    host_layer = rep["layers"][0]
    assert host_layer["kind"] == "host" and host_layer["energy_uj"] == 0.0
    assert rep["host"]["host_elements"] >= 4 * 6 * 6  # the host conv's outputs at least
    assert rep["host"]["host_macs"] == 4 * 6 * 6 * (3 * 3 * 3)  # its products, not only its outputs
    assert rep["host"]["energy_uj"] == pytest.approx(
        (rep["host"]["host_elements"] + rep["host"]["host_macs"]) * pre.params["host_op"].at() / 1e6)
    assert rep["total"]["energy_uj"] == pytest.approx(sum(r["energy_uj"] for r in rep["layers"])
                                                      + rep["host"]["energy_uj"])
    x = np.random.default_rng(0).standard_normal((1, 3, 6, 6)).astype(np.float32)
    run = add_energy(run_xbar(lower(module.clone(), "xbar", hw=hw), [x], hw=hw).report, hw, pre)
    assert run["host"]["host_elements"] == rep["host"]["host_elements"]
    assert run["host"]["host_macs"] == rep["host"]["host_macs"]
    assert run["host"]["energy_uj"] == pytest.approx(rep["host"]["energy_uj"])


@pytest.mark.parametrize("kind", ["energy", "noise"])
def test_preset_files_are_read_like_every_input(kind: str, tmp_path) -> None:
    """A preset YAML whose aliases expand to millions of nodes is refused in one line (the
    limit of cimc.safe_read), for energy and noise presets alike."""
    from cimc.target.energy import EnergyPresetError, load_preset
    from cimc.target.noise import NoisePresetError, load_noise

    lines = ["name: x", "a0: &a0 [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("\n".join(lines) + "\nparameters: {}\n")
    load, error = (load_preset, EnergyPresetError) if kind == "energy" else (load_noise, NoisePresetError)
    with pytest.raises(error) as info:
        load(bomb)
    assert "aliases" in str(info.value) and "\n" not in str(info.value)
