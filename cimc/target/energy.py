"""Energy (and area) of counted events: the counters times per-event parameters from a preset.

Energy is never derived again from a layer's shape: it is a linear function of the
:class:`~cimc.target.counters.Counters` fields plus leakage over the latency::

    E = sum over events k of  count_k * e_k  +  P_leak * arrays * latency

:data:`EVENTS` says which counter is priced by which preset parameter and in which component
(``adc``, ``dac``, ``crossbar``, ``write``, ``digital``, ``host``); :data:`NOT_PRICED` lists the
counters that carry no energy of their own, with the reason. Every counter is in exactly one of
the two (a test holds new counters to it): a new counted event needs one line in :data:`EVENTS`
and, if it is a new kind of event, one parameter in :data:`PARAMS`.

Parameters whose energy depends on a converter's resolution (``adc_conversion``,
``dac_activation``, and the optional ``adc_area`` / ``dac_area``) are tables ``by_bits``. Between
two listed resolutions the value is interpolated geometrically; beyond the table it doubles per
bit above the largest entry and halves per bit below the smallest (a constant energy per
conversion step, Walden's figure of merit). The ADC resolution is the hardware's ``adc_bits``, or
for a lossless ADC the bits it needs for a full tile (:meth:`Hardware.lossless_adc_bits`); the DAC
resolution is ``dac_bits``.

A preset is a YAML file (the built-in ones are package data under ``presets/energy/``)::

    name: isaac-puma-32nm
    description: ...
    parameters:
      cell_read:
        value: 1.83
        unit: fJ
        source: {publication: "PUMA simulator constants (Ankit et al., ASPLOS 2019)",
                 year: 2019, node: 32 nm, note: "0.3 mW x 100 ns / (128 x 128) cells (derived)"}
      adc_conversion:
        by_bits: {4: 0.7, 8: 1.41}
        unit: pJ
        source: {...}

Every parameter has an explicit unit of its dimension (energy: aJ fJ pJ nJ uJ mJ J; power: nW
uW mW W; area: um^2 mm^2) and a source naming the publication, year and technology node. A bad
preset (missing unit, negative or non-numeric value, unknown key, wrong type) is one
:class:`EnergyPresetError` line naming the file and the key.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cimc.errors import CimcError
from cimc.target.counters import COUNTER_NAMES, Counters
from cimc.target.preset_file import preset_header, read_preset

if TYPE_CHECKING:
    from cimc.target.hw import Hardware


class EnergyPresetError(CimcError):
    """An energy preset file is missing, malformed or has a bad entry."""


UNITS: dict[str, dict[str, float]] = {
    "energy": {"aJ": 1e-6, "fJ": 1e-3, "pJ": 1.0, "nJ": 1e3, "uJ": 1e6, "mJ": 1e9, "J": 1e12},
    "power": {"nW": 1e-9, "uW": 1e-6, "mW": 1e-3, "W": 1.0},
    "area": {"um^2": 1e-6, "mm^2": 1.0},
}
"""Accepted units per dimension and their factor to cimc's internal unit (pJ, W, mm^2)."""


@dataclass(frozen=True)
class ParamSpec:
    """What a preset parameter is: its dimension, whether it is a table by resolution, its use."""

    dimension: str
    resolution: str | None
    required: bool
    doc: str


PARAMS: dict[str, ParamSpec] = {
    "adc_conversion": ParamSpec("energy", "adc", True, "one column conversion (by ADC bits)"),
    "dac_activation": ParamSpec("energy", "dac", True, "one row drive for one cycle (by DAC bits)"),
    "cell_read": ParamSpec("energy", None, True, "one cell read in one cycle (active row x column)"),
    "cell_write": ParamSpec("energy", None, True, "programming one cell"),
    "digital_op": ParamSpec("energy", None, True, "one digital shift-add / accumulate"),
    "host_op": ParamSpec("energy", None, True, "one element of a host compute op, or one "
                         "multiply-add of a product on the host"),
    "leakage": ParamSpec("power", None, True, "static power of one crossbar array with its periphery "
                         "(times the chip's arrays)"),
    "cell_area": ParamSpec("area", None, False, "one crossbar cell"),
    "adc_area": ParamSpec("area", "adc", False, "one ADC (by bits)"),
    "dac_area": ParamSpec("area", "dac", False, "one DAC (by bits)"),
}
"""Every parameter a preset may give; the energy ones are required, the area ones optional."""

EVENTS: dict[str, tuple[str, str]] = {
    "adc_conversions": ("adc", "adc_conversion"),
    "dac_activations": ("dac", "dac_activation"),
    "cell_reads": ("crossbar", "cell_read"),
    "cells_written": ("write", "cell_write"),
    "shift_adds": ("digital", "digital_op"),
    "recombine_adds": ("digital", "digital_op"),
    "host_elements": ("host", "host_op"),
    "host_macs": ("host", "host_op"),
}
"""Counter -> (component, parameter): the energy of a counter is ``count * parameter``."""

NOT_PRICED: dict[str, str] = {
    "writes": "tile writes; their energy is the cells they program (cells_written)",
    "executes": "crossbar cycles; their energy is the reads, drives and conversions they hold, "
    "their time is the latency that leakage is drawn over",
    "adc_saturations": "a property of conversions already priced (adc_conversions)",
    "adc_slots": "ADC time slots; a shared ADC converts the same columns (adc_conversions), its "
    "extra time is in the latency that leakage is drawn over",
    "skipped_cycles": "cycles not executed: no reads, drives or conversions to price",
}
"""Counters without an energy of their own, and why."""

COMPONENTS: tuple[str, ...] = ("adc", "dac", "crossbar", "write", "digital", "host", "leakage")
"""The energy components, in report order."""

PJ_PER_UJ = 1e6
_SOURCE_KEYS = ("publication", "year", "node")
_PRESET_DIR = ("presets", "energy")


@dataclass(frozen=True)
class Param:
    """One preset entry in cimc's internal unit (pJ, W or mm^2): a value, or a table by bits."""

    key: str
    value: float | None
    by_bits: tuple[tuple[int, float], ...] | None
    unit: str
    source: dict[str, Any]

    def at(self, bits: int | None = None) -> float:
        """The value (at ``bits`` for a table: geometric interpolation, x2 per bit outside)."""
        if self.by_bits is None:
            assert self.value is not None
            return self.value
        assert bits is not None, f"{self.key} is a table by resolution"
        table = self.by_bits
        (b_lo, v_lo), (b_hi, v_hi) = table[0], table[-1]
        if bits <= b_lo:
            return v_lo * 2.0 ** (bits - b_lo)
        if bits >= b_hi:
            return v_hi * 2.0 ** (bits - b_hi)
        for (b0, v0), (b1, v1) in zip(table, table[1:]):
            if b0 <= bits <= b1:
                if bits == b0:
                    return v0
                if v0 == 0.0 or v1 == 0.0:
                    return v0 + (v1 - v0) * (bits - b0) / (b1 - b0)
                return v0 * (v1 / v0) ** ((bits - b0) / (b1 - b0))
        raise AssertionError("unreachable")  # pragma: no cover


@dataclass(frozen=True)
class EnergyPreset:
    """Per-event energies, leakage power and (optionally) areas, each with its unit and source."""

    name: str
    description: str
    params: dict[str, Param]
    origin: str

    @property
    def has_area(self) -> bool:
        return all(k in self.params for k, s in PARAMS.items() if s.dimension == "area")

    def to_dict(self) -> dict[str, Any]:
        """The preset as JSON (values in the preset's own units, as written)."""
        out: dict[str, Any] = {}
        for key, p in self.params.items():
            scale = UNITS[PARAMS[key].dimension][p.unit]
            entry: dict[str, Any] = {"unit": p.unit, "source": p.source}
            if p.by_bits is not None:
                entry["by_bits"] = {b: v / scale for b, v in p.by_bits}
            else:
                entry["value"] = p.value / scale  # type: ignore[operator]
            out[key] = entry
        return {"name": self.name, "description": self.description, "origin": self.origin,
                "parameters": out}


# ---------------------------------------------------------------------------- loading


def _fail(where: str, key: str, problem: str) -> EnergyPresetError:
    return EnergyPresetError(f"{where}: key '{key}': {problem}")


def _number(where: str, key: str, value: Any, dimension: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _fail(where, key, f"{value!r} is not a number")
    if not math.isfinite(value):
        raise _fail(where, key, f"{value!r} is not finite")
    if value < 0:
        raise _fail(where, key, f"negative {dimension} {value!r}")
    return float(value)


def _source(where: str, key: str, raw: Any) -> dict[str, Any]:
    if raw is None:
        raise _fail(where, key, "missing (a mapping with publication, year, node)")
    if not isinstance(raw, dict):
        raise _fail(where, key, f"expected a mapping with publication, year, node, got {type(raw).__name__}")
    for sub in raw:
        if sub not in (*_SOURCE_KEYS, "note"):
            raise _fail(where, f"{key}.{sub}", "unknown key (known: publication, year, node, note)")
    for sub in _SOURCE_KEYS:
        value = raw.get(sub)
        if value is None or (isinstance(value, str) and not value.strip()):
            raise _fail(where, f"{key}.{sub}", "missing")
    if isinstance(raw["year"], bool) or not isinstance(raw["year"], int):
        raise _fail(where, f"{key}.year", f"{raw['year']!r} is not an integer year")
    for sub in ("publication", "node", "note"):
        if sub in raw and not isinstance(raw[sub], str):
            raise _fail(where, f"{key}.{sub}", f"{raw[sub]!r} is not a string")
    return dict(raw)


def _param(where: str, key: str, raw: Any) -> Param:
    spec = PARAMS[key]
    path = f"parameters.{key}"
    if not isinstance(raw, dict):
        raise _fail(where, path, f"expected a mapping (value or by_bits, unit, source), got {type(raw).__name__}")
    shape = "by_bits" if spec.resolution else "value"
    for sub in raw:
        if sub not in (shape, "unit", "source"):
            hint = (f"'{key}' depends on the {spec.resolution.upper()} resolution: give by_bits"
                    if spec.resolution and sub == "value" else
                    f"'{key}' does not depend on a resolution: give value" if sub == "by_bits" else
                    f"known: {shape}, unit, source")
            raise _fail(where, f"{path}.{sub}", f"unknown key ({hint})")
    unit = raw.get("unit")
    units = UNITS[spec.dimension]
    if unit is None:
        raise _fail(where, f"{path}.unit", f"missing (a {spec.dimension} unit: {', '.join(units)})")
    if not isinstance(unit, str) or unit not in units:
        raise _fail(where, f"{path}.unit", f"{unit!r} is not a {spec.dimension} unit ({', '.join(units)})")
    scale = units[unit]
    source = _source(where, f"{path}.source", raw.get("source"))
    if shape not in raw:
        raise _fail(where, f"{path}.{shape}", "missing")
    if spec.resolution is None:
        value = _number(where, f"{path}.value", raw["value"], spec.dimension) * scale
        return Param(key, value, None, unit, source)
    table = raw["by_bits"]
    if not isinstance(table, dict) or not table:
        raise _fail(where, f"{path}.by_bits", "expected a non-empty mapping of bits to values")
    rows = []
    for bits, value in table.items():
        if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= 32:
            raise _fail(where, f"{path}.by_bits.{bits}", "bits must be an integer in 1..32")
        rows.append((bits, _number(where, f"{path}.by_bits.{bits}", value, spec.dimension) * scale))
    return Param(key, None, tuple(sorted(rows)), unit, source)


def preset_from_dict(data: Any, where: str) -> EnergyPreset:
    """Check and build a preset from parsed YAML; errors name ``where`` (the file) and the key."""
    name, description, params = preset_header(data, where, EnergyPresetError)
    if not isinstance(params, dict):
        raise _fail(where, "parameters", "missing or not a mapping")
    for key in params:
        if key not in PARAMS:
            raise _fail(where, f"parameters.{key}", f"unknown parameter (known: {', '.join(PARAMS)})")
    for key, spec in PARAMS.items():
        if spec.required and key not in params:
            raise _fail(where, f"parameters.{key}", f"missing ({spec.doc})")
    area = [k for k, s in PARAMS.items() if s.dimension == "area"]
    given = [k for k in area if k in params]
    if given and len(given) != len(area):
        missing = next(k for k in area if k not in params)
        raise _fail(where, f"parameters.{missing}", f"missing (area needs all of {', '.join(area)})")
    return EnergyPreset(name, description, {k: _param(where, k, params[k]) for k in params}, where)


def builtin_presets() -> list[str]:
    """Names of the presets shipped with cimc (package data)."""
    from importlib.resources import files

    folder = files("cimc.target").joinpath(*_PRESET_DIR)
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


DEFAULT_PRESET = "isaac-puma-32nm"
"""The preset used when none is asked for."""


def load_preset(spec: str | os.PathLike[str] | None = None) -> EnergyPreset:
    """A built-in preset by name (:func:`builtin_presets`) or a user's YAML file by path."""
    spec = DEFAULT_PRESET if spec is None else spec
    data, where = read_preset(os.fspath(spec), "energy", builtin_presets(), _PRESET_DIR, EnergyPresetError)
    return preset_from_dict(data, where)


# ---------------------------------------------------------------------------- the model


def adc_resolution(hw: Hardware) -> int:
    """The ADC's bits: ``hw.adc_bits``, or what a lossless ADC needs for a full tile."""
    return hw.adc_bits if hw.adc_bits is not None else hw.lossless_adc_bits()


@dataclass(frozen=True)
class EnergyModel:
    """A preset resolved for one hardware: the energy of one event per counter, leakage power."""

    preset: EnergyPreset
    per_event_pj: dict[str, float]
    leakage_w: float
    arrays: int
    adc_bits: int
    dac_bits: int

    def component_pj(self, counters: Counters, latency_us: float) -> dict[str, float]:
        """Energy per component in pJ: counts x per-event energies, leakage x latency."""
        out = dict.fromkeys(COMPONENTS, 0.0)
        for name, (component, _) in EVENTS.items():
            out[component] += getattr(counters, name) * self.per_event_pj[name]
        out["leakage"] = self.leakage_w * self.arrays * latency_us * 1e6  # W * us = 1e6 pJ
        return out

    def energy_pj(self, counters: Counters, latency_us: float) -> float:
        """Total energy in pJ of counted activity lasting ``latency_us``."""
        return sum(self.component_pj(counters, latency_us).values())

    def fields(self, counters: Counters, latency_us: float) -> dict[str, Any]:
        """Report fields: ``energy_uj`` and ``energy_uj_by_component`` (microjoules)."""
        parts = {k: v / PJ_PER_UJ for k, v in self.component_pj(counters, latency_us).items()}
        return {"energy_uj": sum(parts.values()), "energy_uj_by_component": parts}

    def summary(self) -> dict[str, Any]:
        """JSON: the preset's name and origin, the resolutions used, the per-event energies."""
        return {"preset": self.preset.name, "origin": self.preset.origin, "adc_bits": self.adc_bits,
                "dac_bits": self.dac_bits, "per_event_pj": dict(self.per_event_pj),
                "leakage_w": self.leakage_w, "arrays": self.arrays}


def total_fields(rows: Any, latency_us: float) -> dict[str, Any]:
    """Totals of report rows carrying :meth:`EnergyModel.fields`, and the energy-delay product
    ``edp_uj_us`` = total energy x ``latency_us``."""
    rows = list(rows)
    parts = {k: sum(r["energy_uj_by_component"][k] for r in rows) for k in COMPONENTS}
    energy = sum(parts.values())
    return {"energy_uj": energy, "energy_uj_by_component": parts, "edp_uj_us": energy * latency_us}


def energy_model(preset: EnergyPreset, hw: Hardware) -> EnergyModel:
    """Resolve ``preset`` for ``hw``: each counter's per-event energy at the hardware's resolutions."""
    bits = {"adc": adc_resolution(hw), "dac": hw.dac_bits}
    per_event = {}
    for name, (_, key) in EVENTS.items():
        spec = PARAMS[key]
        per_event[name] = preset.params[key].at(bits[spec.resolution] if spec.resolution else None)
    return EnergyModel(preset, per_event, preset.params["leakage"].at(), hw.arrays, bits["adc"], bits["dac"])


def area_mm2(preset: EnergyPreset, hw: Hardware) -> dict[str, float] | None:
    """Chip area by part (cells, ADCs, DACs) in mm^2, or None when the preset has no area.

    ``arrays`` crossbars of ``rows x cols`` cells, each with ``adcs`` ADCs (one per
    ``cols_per_adc`` columns) and one DAC per row.
    """
    if not preset.has_area:
        return None
    p = preset.params
    return {
        "cells": hw.arrays * hw.rows * hw.cols * p["cell_area"].at(),
        "adc": hw.arrays * hw.adcs * p["adc_area"].at(adc_resolution(hw)),
        "dac": hw.arrays * hw.rows * p["dac_area"].at(hw.dac_bits),
    }


def check_counter_coverage() -> None:
    """Every counter is priced (:data:`EVENTS`) or listed as not priced (:data:`NOT_PRICED`)."""
    missing = [n for n in COUNTER_NAMES if n not in EVENTS and n not in NOT_PRICED]
    extra = [n for n in (*EVENTS, *NOT_PRICED) if n not in COUNTER_NAMES]
    if missing or extra:
        raise AssertionError(f"energy: counters not mapped {missing}, unknown names {extra}")
