"""The hardware description of the CIM target: one crossbar, its cells, DAC, ADC and timings.

:class:`Hardware` is a frozen dataclass whose defaults are the paper's target (a 256 x 256
crossbar, 4-bit cells, 1-bit DAC, differential-column mapping, 56 us per tile write and 1.4 us per
crossbar cycle) plus a lossless ADC. It loads from two YAML layouts:

* cimc's own flat layout, whose keys are the field names (``rows: 128``); an unknown key is an
  error that names it;
* the layout of the CIM-AQ authors' hardware file (``crossbar.size.m``, ``crossbar.size.n``,
  ``crossbar.resolution_weight_bits``, ``crossbar.resolution_input_bits``,
  ``crossbar.mvm_write_latency``, ``crossbar.mvm_execute_latency``, ``mapper.mapping_type``);
  keys cimc does not use are ignored.

ADC model. One crossbar cycle drives ``rows_used`` physical rows with a ``d``-bit DAC chunk
(0 .. 2^d - 1) against cells of ``c`` bits (levels 0 .. 2^c - 1). A column value is therefore

* ``dc`` / ``of``: an unsigned sum in ``[0, rows_used * (2^d - 1) * (2^c - 1)]`` (the ``of``
  reference column holds level 1 and stays inside that range);
* ``dr``: a signed difference (minus rows are driven with inverted polarity) in
  ``[-V, V]`` with ``V = rows_used * (2^d - 1) * (2^c - 1)``.

A lossless ADC (``adc_bits=None``) converts that whole range. A ``b``-bit ADC clips to
``[0, 2^b - 1]`` (``dc``/``of``) or ``[-2^(b-1), 2^(b-1) - 1]`` (``dr``): whether it is signed
is derived from the mapping, not a field.

The chip. ``arrays`` crossbars of that size (default 1: the paper's single crossbar), whose
columns share ADCs: ``cols_per_adc`` columns per ADC (default 1, one ADC per column as the paper
assumes), so an array has ``adcs = ceil(cols / cols_per_adc)`` ADCs and a cycle that uses
``k`` columns converts them in ``ceil(k / adcs)`` ADC slots. ``t_exec_us`` is a whole cycle with
one slot; every further slot adds ``t_adc_us`` (so with one ADC per column ``t_adc_us`` never
matters). ``residency`` says what stays on the arrays between inferences:

* ``none`` (default, the paper): every tile is programmed again for every inference;
* ``greedy``: static tiles are programmed once and kept while they fit; when they do not, the
  schedule (:mod:`cimc.target.schedule`) keeps the tiles that save most and re-programs the rest;
* ``all``: every static tile must stay resident; a model that does not fit is an error.

The defaults reproduce the paper's single-crossbar numbers exactly.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cimc.errors import CimcError, HardwareError
from cimc.safe_read import LIMITS, read_text, short, yaml_load

MAPPINGS: tuple[str, ...] = ("dc", "dr", "of")
"""Signed-weight mappings: differential column, differential row, offset (reference column)."""

RESIDENCY: tuple[str, ...] = ("none", "greedy", "all")
"""Residency modes: re-program every inference (the paper), keep what fits, keep everything."""

AUTHORS_KEYS: dict[str, str] = {
    "crossbar.size.m": "cols",
    "crossbar.size.n": "rows",
    "crossbar.resolution_weight_bits": "cell_bits",
    "crossbar.resolution_input_bits": "dac_bits",
    "crossbar.mvm_write_latency": "t_write_us",
    "crossbar.mvm_execute_latency": "t_exec_us",
    "mapper.mapping_type": "mapping",
}
"""Dotted keys of the CIM-AQ authors' hardware YAML and the :class:`Hardware` field each sets."""

_AUTHORS_TOP = frozenset(key.split(".")[0] for key in AUTHORS_KEYS)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(float(value))  # type: ignore[arg-type]


def column_value_max(rows_used: int, cell_bits: int, dac_bits: int) -> int:
    """The largest magnitude one column can reach in one cycle with ``rows_used`` rows driven."""
    return rows_used * ((1 << dac_bits) - 1) * ((1 << cell_bits) - 1)


def lossless_adc_bits(rows_used: int, cell_bits: int, dac_bits: int, mapping: str) -> int:
    """Bits an ADC needs to convert every possible column value of one cycle without clipping.

    ``dc``/``of`` columns are unsigned sums in ``[0, V]``: ``bit_length(V)`` bits. ``dr`` columns
    are signed differences in ``[-V, V]``: one more bit for the sign.
    """
    if mapping not in MAPPINGS:
        raise HardwareError(f"mapping: '{mapping}' is not one of {', '.join(MAPPINGS)}")
    vmax = column_value_max(max(rows_used, 1), cell_bits, dac_bits)
    bits = max(vmax.bit_length(), 1)
    return bits + 1 if mapping == "dr" else bits


@dataclass(frozen=True)
class Hardware:
    """One M x N RRAM crossbar with its converters and timings (defaults: the paper's target).

    ``rows`` is N (crossbar inputs), ``cols`` is M (crossbar outputs). ``adc_bits=None`` means a
    lossless ADC. Latencies are in microseconds.
    """

    rows: int = 256
    cols: int = 256
    cell_bits: int = 4
    dac_bits: int = 1
    adc_bits: int | None = None
    mapping: str = "dc"
    t_write_us: float = 56.0
    t_exec_us: float = 1.4
    arrays: int = 1
    cols_per_adc: int = 1
    t_adc_us: float = 0.1
    residency: str = "none"

    def __post_init__(self) -> None:
        for name in ("rows", "cols", "arrays", "cols_per_adc"):
            value = getattr(self, name)
            if not _is_int(value) or value < 1:
                raise HardwareError(f"{name}: {short(value)} is not a positive integer")
        for name, hi in (("cell_bits", 8), ("dac_bits", 8)):
            value = getattr(self, name)
            if not _is_int(value) or not 1 <= value <= hi:
                raise HardwareError(f"{name}: {short(value)} is not an integer in 1..{hi}")
        if self.adc_bits is not None and (not _is_int(self.adc_bits) or not 1 <= self.adc_bits <= 32):
            raise HardwareError(
                f"adc_bits: {short(self.adc_bits)} is not an integer in 1..32 (or null for lossless)"
            )
        if self.mapping not in MAPPINGS:
            raise HardwareError(f"mapping: {short(self.mapping)} is not one of {', '.join(MAPPINGS)}")
        if self.cols_per_adc > self.cols:
            raise HardwareError(
                f"cols_per_adc: {self.cols_per_adc} is larger than cols ({self.cols}): an ADC "
                "serves columns of one array"
            )
        if self.residency not in RESIDENCY:
            raise HardwareError(
                f"residency: {short(self.residency)} is not one of {', '.join(RESIDENCY)}"
            )
        for name in ("t_write_us", "t_exec_us", "t_adc_us"):
            value = getattr(self, name)
            if not _is_number(value) or value < 0:
                raise HardwareError(f"{name}: {short(value)} is not a finite number >= 0")
            object.__setattr__(self, name, float(value))

    # ---------------------------------------------------------------- ADC

    @property
    def adcs(self) -> int:
        """ADCs per array: ``ceil(cols / cols_per_adc)``."""
        return -(-self.cols // self.cols_per_adc)

    def adc_slots(self, cols_used: int) -> int:
        """ADC slots of one cycle that converts ``cols_used`` columns: ``ceil(cols_used / adcs)``."""
        return -(-cols_used // self.adcs)

    @property
    def adc_signed(self) -> bool:
        """Whether column values (and so ADC codes) are signed: only for ``dr``."""
        return self.mapping == "dr"

    @property
    def lossless(self) -> bool:
        """True when the ADC resolves every column value of every tile of this crossbar."""
        return self.adc_bits is None or self.adc_bits >= self.lossless_adc_bits(self.rows)

    def lossless_adc_bits(self, rows_used: int | None = None) -> int:
        """:func:`lossless_adc_bits` for this crossbar (``rows_used`` defaults to all rows)."""
        rows_used = self.rows if rows_used is None else rows_used
        return lossless_adc_bits(rows_used, self.cell_bits, self.dac_bits, self.mapping)

    def adc_range(self, rows_used: int) -> tuple[int, int]:
        """The clip range ``(lo, hi)`` of one conversion in a tile with ``rows_used`` rows driven.

        Lossless: the full possible column range. Otherwise an ``adc_bits``-bit code range,
        unsigned for ``dc``/``of`` and signed (two's complement) for ``dr``.
        """
        if self.adc_bits is None:
            vmax = column_value_max(rows_used, self.cell_bits, self.dac_bits)
            return (-vmax, vmax) if self.adc_signed else (0, vmax)
        if self.adc_signed:
            half = 1 << (self.adc_bits - 1)
            return -half, half - 1
        return 0, (1 << self.adc_bits) - 1

    # ---------------------------------------------------------------- I/O

    def to_dict(self) -> dict[str, Any]:
        """The fields as a plain dict (cimc's flat YAML layout)."""
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        """cimc's flat YAML layout; :meth:`from_yaml` reads it back."""
        import yaml

        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Hardware:
        """Build from either layout (flat cimc keys or the authors' nested ``crossbar``/``mapper``)."""
        if not isinstance(data, dict):
            raise HardwareError(f"expected a mapping of hardware keys, got {type(data).__name__}")
        fields = {f.name for f in dataclasses.fields(cls)}
        if set(data) & _AUTHORS_TOP:
            mixed = sorted(set(data) & fields)
            if mixed:
                raise HardwareError(
                    f"hardware key '{mixed[0]}' mixes cimc's flat layout with the authors' "
                    "'crossbar'/'mapper' layout"
                )
            return _authors_hardware(cls, data)
        for key in data:
            if key not in fields:
                raise HardwareError(
                    f"unknown hardware key '{key}' (known: {', '.join(sorted(fields))})"
                )
        return cls(**data)

    @classmethod
    def from_yaml(cls, path: str | os.PathLike[str]) -> Hardware:
        """Load a hardware YAML file in either layout; errors name the file."""
        import yaml

        p = Path(path)
        try:
            text = read_text(p, "hardware file", LIMITS["yaml"])
            data = yaml_load(text, str(p))
        except CimcError as exc:
            raise HardwareError(exc.message) from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark is not None else ""
            problem = getattr(exc, "problem", None) or "invalid YAML"
            raise HardwareError(f"{p}: invalid YAML{where}: {problem}") from None
        data = {} if data is None else data
        try:
            return cls.from_dict(data)
        except HardwareError as exc:
            raise HardwareError(f"{p}: {exc.message}") from None
        except TypeError as exc:  # pragma: no cover - from_dict checks keys first
            raise HardwareError(f"{p}: {exc}") from None

    def with_overrides(self, spec: str) -> Hardware:
        """A copy with ``key=value`` pairs applied, e.g. ``rows=128,cell_bits=2``.

        Keys are field names or the authors' dotted keys (``crossbar.size.n=128``); values are
        decimal integers, decimal numbers, ``null``/``none``/``lossless`` or words (``mapping=dr``).
        """
        if not spec.strip():
            return self
        fields = {f.name for f in dataclasses.fields(self)}
        changes: dict[str, Any] = {}
        for item in (part.strip() for part in spec.split(",")):
            if not item:
                raise HardwareError(f"--hw-set: empty entry in {short(spec)}; expected key=value,key=value")
            key, sep, raw = item.partition("=")
            key = key.strip()
            if not sep or not key:
                raise HardwareError(f"--hw-set: {short(item)} is not key=value")
            name = AUTHORS_KEYS.get(key, key)
            if name not in fields:
                raise HardwareError(
                    f"--hw-set: unknown hardware key '{key}' (known: {', '.join(sorted(fields))})"
                )
            if name in changes:
                raise HardwareError(f"--hw-set: '{key}' is given twice")
            changes[name] = _override_value(key, raw.strip())
        try:
            return dataclasses.replace(self, **changes)
        except HardwareError as exc:
            raise HardwareError(f"--hw-set: {exc.message}") from None


def _override_value(key: str, raw: str) -> Any:
    """An ``--hw-set`` value: decimal int, decimal number, null, or a word (no YAML tricks)."""
    import re

    if not raw:
        raise HardwareError(f"--hw-set: '{key}=' has no value")
    if raw.lower() in ("null", "none", "lossless"):
        return None
    if re.fullmatch(r"-?[0-9]+", raw):
        return int(raw)
    if re.fullmatch(r"-?([0-9]+\.[0-9]*|\.[0-9]+|[0-9]+(\.[0-9]*)?[eE][-+]?[0-9]+)", raw):
        return float(raw)
    if re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]*", raw):
        return raw
    raise HardwareError(f"--hw-set: {key}={short(raw)} is not a decimal number or a word")


def _authors_hardware(cls: type[Hardware], data: dict[str, Any]) -> Hardware:
    """Build from the authors' layout; a bad value's message names the authors' key."""
    try:
        return cls(**_from_authors(data))
    except HardwareError as exc:
        field = exc.message.split(":", 1)[0]
        dotted = {v: k for k, v in AUTHORS_KEYS.items()}.get(field)
        if dotted is None:
            raise
        raise HardwareError(f"{dotted}: {exc.message.split(':', 1)[1].strip()}") from None


def _from_authors(data: dict[str, Any]) -> dict[str, Any]:
    """Field values from the authors' nested layout; keys cimc does not use are ignored."""
    for top in _AUTHORS_TOP:
        if top in data and not isinstance(data[top], dict):
            raise HardwareError(f"'{top}' must be a mapping, got {type(data[top]).__name__}")
    out: dict[str, Any] = {}
    for dotted, name in AUTHORS_KEYS.items():
        node: Any = data
        parts = dotted.split(".")
        for depth, part in enumerate(parts):
            if node is not None and not isinstance(node, dict):
                where = ".".join(parts[:depth])
                raise HardwareError(f"{where}: expected a mapping, got {type(node).__name__}")
            if node is None or part not in node:
                node = None
                break
            node = node[part]
        if node is not None:
            out[name] = node
    return out
