"""Imperfect devices: programming noise, read noise, stuck cells and ADC errors, seeded.

A :class:`NoiseModel` (a YAML preset, the built-in ones are package data under
``presets/noise/``) says how far the crossbar is from ideal; a :class:`Device` is that model
drawn for one hardware and one seed, and is what the bit-serial kernels
(:mod:`cimc.target.kernels`) take at their hook points. Off by default: without a device the
kernels run exactly as before, bit for bit.

The effects, in the units of cimc's crossbar model (a cell at level ``l`` in ``0 .. 2^c - 1``
conducts ``l`` level steps; a column value is an integer count of level steps x DAC units, and
one ADC LSB is one such unit):

* ``programming_sigma`` (relative): every time a tile is programmed, each cell's conductance is
  ``l * (1 + sigma * N(0, 1))``, clipped at 0 (a fresh draw per write: tiles are re-programmed);
* ``read_sigma`` (relative to the largest conductance ``g_max = 2^c - 1``): in every cycle each
  cell's conductance fluctuates by ``read_sigma * g_max * N(0, 1)``, independently per cell and
  cycle and independently of its state (additive read noise). The column then carries Gaussian
  noise of standard deviation ``read_sigma * g_max * sqrt(sum_r x_r^2)`` (the driven rows), one
  draw per conversion. (A state-dependent model, ``g * read_sigma``, would need a second product
  per cycle for ``sum_r x_r^2 g_rc^2`` and double the cost of a noisy run.)
* ``stuck_on_rate`` / ``stuck_off_rate`` (fractions of the crossbar's cells): cells stuck at the
  highest level or at 0, whatever is programmed; one map of the physical ``rows x cols``
  crossbar per seed, shared by every tile programmed onto it;
* ``adc_offset_sigma`` (LSB) and ``adc_gain_sigma`` (relative): each column's ADC has an offset
  ``N(0, offset_sigma)`` and a gain ``1 + N(0, gain_sigma)``, drawn once per seed; a code is
  ``clip(rint(gain * value + offset))`` to the ADC's range (a clip counts as a saturation).

Random streams: the seed is split (``numpy.random.SeedSequence``) into independent streams for
the stuck map, the ADCs, programming and reading, so a parameter at 0 draws nothing and leaves
the other effects' draws unchanged. Programming draws follow the order of the writes, reading
draws the order of the tile calls: the same program, inputs and seed give the same outputs.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from cimc.errors import CimcError
from cimc.target.preset_file import preset_header, read_preset

if TYPE_CHECKING:
    from cimc.target.hw import Hardware


class NoisePresetError(CimcError):
    """A noise preset file is missing, malformed or has a bad entry."""


PARAMS: dict[str, tuple[str, str]] = {
    "programming_sigma": ("relative", "relative std of a programmed cell's conductance (per write)"),
    "read_sigma": ("relative", "std of a cell's conductance in each read cycle, relative to g_max"),
    "stuck_on_rate": ("fraction", "fraction of crossbar cells stuck at the highest level"),
    "stuck_off_rate": ("fraction", "fraction of crossbar cells stuck at level 0"),
    "adc_offset_sigma": ("LSB", "std of each column ADC's offset, in LSB"),
    "adc_gain_sigma": ("relative", "relative std of each column ADC's gain"),
}
"""Noise parameters: their unit (the only one accepted) and meaning. A missing one is 0."""

_PRESET_DIR = ("presets", "noise")


@dataclass(frozen=True)
class NoiseModel:
    """How far the crossbar is from ideal (all zero: ideal)."""

    name: str = "custom"
    programming_sigma: float = 0.0
    read_sigma: float = 0.0
    stuck_on_rate: float = 0.0
    stuck_off_rate: float = 0.0
    adc_offset_sigma: float = 0.0
    adc_gain_sigma: float = 0.0
    origin: str = ""

    def __post_init__(self) -> None:
        for key in PARAMS:
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise NoisePresetError(f"{key}: {value!r} is not a finite number")
            if value < 0:
                raise NoisePresetError(f"{key}: negative value {value!r}")
            object.__setattr__(self, key, float(value))
        if self.stuck_on_rate + self.stuck_off_rate > 1:
            raise NoisePresetError(
                f"stuck_on_rate + stuck_off_rate = {self.stuck_on_rate + self.stuck_off_rate} > 1")

    def params(self) -> dict[str, float]:
        return {k: getattr(self, k) for k in PARAMS}

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "origin": self.origin, **self.params()}

    def with_overrides(self, spec: str) -> NoiseModel:
        """A copy with ``key=value`` pairs applied (``programming_sigma=0.1,read_sigma=0``)."""
        changes: dict[str, Any] = {}
        for item in (part.strip() for part in spec.split(",")):
            if not item:
                continue
            key, sep, raw = item.partition("=")
            key = key.strip()
            if not sep or key not in PARAMS:
                raise NoisePresetError(
                    f"--noise-set: '{item}' is not key=value with a key of {', '.join(PARAMS)}")
            try:
                changes[key] = float(raw)
            except ValueError:
                raise NoisePresetError(f"--noise-set: {key}: {raw.strip()!r} is not a number") from None
        try:
            return dataclasses.replace(self, **changes)
        except NoisePresetError as exc:
            raise NoisePresetError(f"--noise-set: {exc.message}") from None


def _fail(where: str, key: str, problem: str) -> NoisePresetError:
    return NoisePresetError(f"{where}: key '{key}': {problem}")


def noise_from_dict(data: Any, where: str) -> NoiseModel:
    """Check and build a noise model from parsed YAML; errors name ``where`` and the key."""
    name, _, params = preset_header(data, where, NoisePresetError)
    params = params or {}
    if not isinstance(params, dict):
        raise _fail(where, "parameters", "not a mapping")
    values: dict[str, float] = {}
    for key, entry in params.items():
        path = f"parameters.{key}"
        if key not in PARAMS:
            raise _fail(where, path, f"unknown parameter (known: {', '.join(PARAMS)})")
        unit = PARAMS[key][0]
        if not isinstance(entry, dict):
            raise _fail(where, path, f"expected a mapping with value and unit, got {type(entry).__name__}")
        for sub in entry:
            if sub not in ("value", "unit", "note"):
                raise _fail(where, f"{path}.{sub}", "unknown key (known: value, unit, note)")
        if "unit" not in entry:
            raise _fail(where, f"{path}.unit", f"missing (the unit of {key} is '{unit}')")
        if entry["unit"] != unit:
            raise _fail(where, f"{path}.unit", f"{entry['unit']!r} is not the unit of {key} ('{unit}')")
        value = entry.get("value")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise _fail(where, f"{path}.value", f"{value!r} is not a finite number")
        if value < 0:
            raise _fail(where, f"{path}.value", f"negative value {value!r}")
        if unit == "fraction" and value > 1:
            raise _fail(where, f"{path}.value", f"{value!r} is not a fraction in [0, 1]")
        values[key] = float(value)
    try:
        return NoiseModel(name=name, origin=where, **values)
    except NoisePresetError as exc:
        raise NoisePresetError(f"{where}: {exc.message}") from None


def builtin_noise_presets() -> list[str]:
    """Names of the noise presets shipped with cimc (package data)."""
    from importlib.resources import files

    folder = files("cimc.target").joinpath(*_PRESET_DIR)
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def load_noise(spec: str | os.PathLike[str]) -> NoiseModel:
    """A built-in noise preset by name (:func:`builtin_noise_presets`) or a YAML file by path."""
    data, where = read_preset(os.fspath(spec), "noise", builtin_noise_presets(), _PRESET_DIR, NoisePresetError)
    return noise_from_dict(data, where)


# ---------------------------------------------------------------------------- one device

NORMAL_TABLE_BITS = 12


def _normal_table() -> np.ndarray:
    """``2^12`` equiprobable standard-normal quantiles (tails to about 3.7 sigma, rescaled to unit
    variance), the draws of read noise: a uniform 12-bit index picks one. The 32 KB table stays
    in the L1 cache of the numba ADC kernel, which is what keeps read noise cheap."""
    from statistics import NormalDist

    n = 1 << NORMAL_TABLE_BITS
    inv = NormalDist().inv_cdf
    half = np.array([inv((i + 0.5) / n) for i in range(n // 2)])
    table = np.concatenate([half, -half[::-1]])
    return table / table.std()


_TABLE: np.ndarray | None = None


def normal_table() -> np.ndarray:
    global _TABLE
    if _TABLE is None:
        _TABLE = _normal_table()
    return _TABLE


def _mix64(x: int) -> int:
    """SplitMix64's output function (a bijective 64-bit hash)."""
    m = 0xFFFFFFFFFFFFFFFF
    z = x & m
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & m
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & m
    return z ^ (z >> 31)


class Device:
    """A :class:`NoiseModel` drawn for one hardware and seed: the stuck-cell map, the column
    ADCs' gains and offsets, and the programming and read streams (consumed in order)."""

    def __init__(self, model: NoiseModel, hw: Hardware, seed: int):
        self.model, self.hw, self.seed = model, hw, int(seed)
        stuck_ss, adc_ss, prog_ss, read_ss = np.random.SeedSequence(self.seed).spawn(4)
        self.stuck: np.ndarray | None = None
        if model.stuck_on_rate or model.stuck_off_rate:
            u = np.random.default_rng(stuck_ss).random((hw.rows, hw.cols))
            off = u < model.stuck_off_rate
            on = ~off & (u < model.stuck_off_rate + model.stuck_on_rate)
            self.stuck = np.where(off, 1, np.where(on, 2, 0)).astype(np.int8)
        adc_rng = np.random.default_rng(adc_ss)
        self.adc_gain = np.ones(hw.cols)
        self.adc_offset = np.zeros(hw.cols)
        if model.adc_gain_sigma:
            self.adc_gain = 1.0 + model.adc_gain_sigma * adc_rng.standard_normal(hw.cols)
        if model.adc_offset_sigma:
            self.adc_offset = model.adc_offset_sigma * adc_rng.standard_normal(hw.cols)
        self._prog = np.random.default_rng(prog_ss)
        self._read_base = int(read_ss.generate_state(1, np.uint64)[0])
        self._read_calls = 0
        self.g_max = float((1 << hw.cell_bits) - 1)

    def program(self, levels: np.ndarray, dtype: type) -> np.ndarray:
        """One write of ``levels`` (``[r, c]`` or ``[B, r, c]``): the conductances the tile holds."""
        g = np.asarray(levels, dtype=np.float64)
        if self.model.programming_sigma:
            g = g * (1.0 + self.model.programming_sigma * self._prog.standard_normal(g.shape))
            np.maximum(g, 0.0, out=g)
        if self.stuck is not None:
            mask = self.stuck[: g.shape[-2], : g.shape[-1]]
            g = np.where(mask == 1, 0.0, np.where(mask == 2, self.g_max, g))
        return np.ascontiguousarray(g, dtype=dtype)

    def read_seed(self) -> int:
        """The seed of the next tile call's read noise: a hashed, fresh 64-bit stream per call."""
        self._read_calls += 1
        return _mix64(self._read_base + 0x9E3779B97F4A7C15 * self._read_calls)

    def adc(self, cols: int) -> tuple[np.ndarray, np.ndarray]:
        """Gains and offsets of the first ``cols`` column ADCs (a tile starts at column 0)."""
        return self.adc_gain[:cols], self.adc_offset[:cols]

    def summary(self) -> dict[str, Any]:
        return {**self.model.to_dict(), "seed": self.seed}
