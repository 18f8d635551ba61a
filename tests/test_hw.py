"""Tests for cimc.target.hw: the hardware description, its YAML layouts, overrides and ADC ranges."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cimc.errors import CimcError, HardwareError
from cimc.target.hw import Hardware, lossless_adc_bits

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "hw"


def test_defaults_are_the_paper_target() -> None:
    hw = Hardware()
    assert (hw.rows, hw.cols, hw.cell_bits, hw.dac_bits) == (256, 256, 4, 1)
    assert (hw.adc_bits, hw.mapping, hw.t_write_us, hw.t_exec_us) == (None, "dc", 56.0, 1.4)
    assert hw.lossless
    # the chip's defaults: one array, one ADC per column (one slot per cycle), re-programmed
    assert (hw.arrays, hw.cols_per_adc, hw.residency) == (1, 1, "none")
    assert hw.adcs == 256 and hw.adc_slots(256) == 1 and hw.adc_slots(1) == 1


def test_adc_sharing_slots() -> None:
    hw = Hardware(cols=256, cols_per_adc=8)
    assert hw.adcs == 32
    assert [hw.adc_slots(k) for k in (1, 32, 33, 64, 200, 256)] == [1, 1, 2, 2, 7, 8]
    odd = Hardware(cols=10, cols_per_adc=3)  # ADCs of 3, 3, 3 and 1 columns
    assert odd.adcs == 4 and odd.adc_slots(10) == 3 and odd.adc_slots(4) == 1
    assert Hardware(cols=16, cols_per_adc=16).adc_slots(16) == 16


def test_both_example_files_load_to_the_defaults() -> None:
    assert Hardware.from_yaml(EXAMPLES / "paper.yaml") == Hardware()
    assert Hardware.from_yaml(EXAMPLES / "cim-aq-authors.yaml") == Hardware()


def test_authors_layout_maps_every_key(tmp_path: Path) -> None:
    p = tmp_path / "hw.yaml"
    p.write_text(
        "crossbar:\n  size: {m: 128, n: 64}\n  resolution_weight_bits: 2\n"
        "  resolution_input_bits: 2\n  mvm_write_latency: 10\n  mvm_execute_latency: 0.5\n"
        "  vendor: someone\nmapper:\n  mapping_type: of\n  extra: 1\nother: [1, 2]\n"
    )
    hw = Hardware.from_yaml(p)
    assert hw == Hardware(rows=64, cols=128, cell_bits=2, dac_bits=2, mapping="of",
                          t_write_us=10.0, t_exec_us=0.5)


def test_authors_layout_partial_keeps_defaults(tmp_path: Path) -> None:
    p = tmp_path / "hw.yaml"
    p.write_text("mapper: {mapping_type: dr}\n")
    assert Hardware.from_yaml(p) == Hardware(mapping="dr")


def test_authors_bad_value_names_the_authors_key_and_file(tmp_path: Path) -> None:
    p = tmp_path / "hw.yaml"
    p.write_text("mapper: {mapping_type: linear-scaling}\n")
    with pytest.raises(HardwareError, match=r"hw\.yaml: mapper\.mapping_type: 'linear-scaling'"):
        Hardware.from_yaml(p)


def test_flat_unknown_key_is_an_error(tmp_path: Path) -> None:
    p = tmp_path / "hw.yaml"
    p.write_text("rows: 128\ncolumns: 64\n")
    with pytest.raises(HardwareError, match="unknown hardware key 'columns'"):
        Hardware.from_yaml(p)


def test_mixed_layouts_are_an_error(tmp_path: Path) -> None:
    p = tmp_path / "hw.yaml"
    p.write_text("rows: 128\ncrossbar: {size: {m: 64}}\n")
    with pytest.raises(HardwareError, match="mixes"):
        Hardware.from_yaml(p)


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(HardwareError, match="not found"):
        Hardware.from_yaml(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("rows: [1, 2\n")
    with pytest.raises(HardwareError, match=r"bad\.yaml: invalid YAML"):
        Hardware.from_yaml(bad)
    notmap = tmp_path / "list.yaml"
    notmap.write_text("- 1\n- 2\n")
    with pytest.raises(HardwareError, match="list.yaml"):
        Hardware.from_yaml(notmap)


def test_empty_file_is_the_default(tmp_path: Path) -> None:
    p = tmp_path / "empty.yaml"
    p.write_text("")
    assert Hardware.from_yaml(p) == Hardware()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("rows", 0), ("cols", -3), ("rows", 2.5), ("rows", True), ("cell_bits", 0),
        ("cell_bits", 9), ("dac_bits", 9), ("adc_bits", 0), ("adc_bits", 33),
        ("mapping", "xy"), ("t_write_us", -1.0), ("t_exec_us", float("nan")), ("t_exec_us", "1"),
        ("arrays", 0), ("arrays", -2), ("arrays", 1.5), ("cols_per_adc", 0), ("t_adc_us", -0.1),
        ("residency", "sometimes"),
    ],
)
def test_validation_names_field_and_value(field: str, value: object) -> None:
    with pytest.raises(HardwareError) as info:
        Hardware(**{field: value})
    msg = str(info.value)
    assert msg.startswith(f"{field}:") and repr(value) in msg and "\n" not in msg
    assert isinstance(info.value, CimcError)


def test_bad_value_in_file_names_file_and_field(tmp_path: Path) -> None:
    p = tmp_path / "hw.yaml"
    p.write_text("cell_bits: 12\n")
    with pytest.raises(HardwareError, match=r"hw\.yaml: cell_bits: 12"):
        Hardware.from_yaml(p)


def test_yaml_round_trip(tmp_path: Path) -> None:
    hw = Hardware(rows=128, cols=64, cell_bits=2, dac_bits=2, adc_bits=7, mapping="dr",
                  t_write_us=3.0, t_exec_us=0.25)
    p = tmp_path / "hw.yaml"
    p.write_text(hw.to_yaml())
    assert Hardware.from_yaml(p) == hw
    assert hw.to_dict()["adc_bits"] == 7


def test_overrides_flat_and_dotted() -> None:
    hw = Hardware().with_overrides("rows=128, cell_bits=2,crossbar.size.m=64,mapper.mapping_type=of")
    assert (hw.rows, hw.cols, hw.cell_bits, hw.mapping) == (128, 64, 2, "of")
    assert hw.with_overrides("adc_bits=6").adc_bits == 6
    assert hw.with_overrides("adc_bits=6").with_overrides("adc_bits=null").adc_bits is None
    assert hw.with_overrides("adc_bits=none").adc_bits is None
    assert Hardware().with_overrides("t_exec_us=2").t_exec_us == 2.0
    assert Hardware().with_overrides("") == Hardware()


def test_cols_per_adc_larger_than_the_columns() -> None:
    with pytest.raises(HardwareError) as info:
        Hardware(cols=64, cols_per_adc=65)
    assert str(info.value) == (
        "cols_per_adc: 65 is larger than cols (64): an ADC serves columns of one array")
    assert Hardware(cols=64, cols_per_adc=64).adcs == 1


def test_chip_fields_from_yaml_and_overrides(tmp_path: Path) -> None:
    p = tmp_path / "chip.yaml"
    p.write_text("arrays: 64\ncols_per_adc: 8\nt_adc_us: 0.05\nresidency: greedy\n")
    hw = Hardware.from_yaml(p)
    assert (hw.arrays, hw.cols_per_adc, hw.t_adc_us, hw.residency) == (64, 8, 0.05, "greedy")
    assert Hardware().with_overrides("arrays=4,residency=all").arrays == 4
    p.write_text("arrays: 0\n")
    with pytest.raises(HardwareError, match=r"chip\.yaml: arrays: 0 is not a positive integer"):
        Hardware.from_yaml(p)


@pytest.mark.parametrize(
    ("spec", "match"),
    [("bogus=1", "unknown hardware key 'bogus'"), ("rows", "not key=value"),
     ("rows=0", "rows: 0"), ("crossbar.size.q=3", "unknown hardware key 'crossbar.size.q'"),
     ("arrays=0", "arrays: 0 is not a positive integer"),
     ("cols_per_adc=300", "cols_per_adc: 300 is larger than cols"),
     ("residency=maybe", "residency: 'maybe' is not one of none, greedy, all")],
)
def test_override_errors(spec: str, match: str) -> None:
    with pytest.raises(HardwareError, match=match):
        Hardware().with_overrides(spec)


def test_lossless_bits_examples() -> None:
    # 256 rows x 1-bit DAC x 4-bit cells: max 256 * 15 = 3840 -> 12 bits; dr needs a sign bit.
    assert lossless_adc_bits(256, 4, 1, "dc") == 12
    assert lossless_adc_bits(256, 4, 1, "of") == 12
    assert lossless_adc_bits(256, 4, 1, "dr") == 13
    assert lossless_adc_bits(1, 1, 1, "dc") == 1
    assert lossless_adc_bits(255, 1, 1, "dc") == 8
    assert lossless_adc_bits(256, 1, 1, "dc") == 9


def test_adc_ranges() -> None:
    assert Hardware().adc_range(256) == (0, 3840)
    assert Hardware(mapping="dr").adc_range(100) == (-1500, 1500)
    assert Hardware(adc_bits=6).adc_range(256) == (0, 63)
    assert Hardware(adc_bits=6, mapping="of").adc_range(3) == (0, 63)
    assert Hardware(adc_bits=6, mapping="dr").adc_range(256) == (-32, 31)
    assert not Hardware(adc_bits=6).lossless
    assert Hardware(adc_bits=12).lossless


@given(
    rows_used=st.integers(1, 2048), c=st.integers(1, 8), d=st.integers(1, 8),
    mapping=st.sampled_from(["dc", "dr", "of"]),
)
def test_lossless_bits_cover_the_range_tightly(rows_used: int, c: int, d: int, mapping: str) -> None:
    bits = lossless_adc_bits(rows_used, c, d, mapping)
    vmax = rows_used * (2**d - 1) * (2**c - 1)
    hw = Hardware(rows=rows_used, cell_bits=c, dac_bits=d, mapping=mapping, adc_bits=min(bits, 32))
    lo, hi = hw.adc_range(rows_used)
    full_lo, full_hi = Hardware(rows=rows_used, cell_bits=c, dac_bits=d, mapping=mapping).adc_range(rows_used)
    assert (full_lo, full_hi) == ((-vmax, vmax) if mapping == "dr" else (0, vmax))
    if bits <= 32:
        assert lo <= full_lo and hi >= full_hi  # enough bits
    smaller = Hardware(rows=rows_used, cell_bits=c, dac_bits=d, mapping=mapping, adc_bits=bits - 1) \
        if bits > 1 else None
    if smaller is not None and bits - 1 <= 32:
        slo, shi = smaller.adc_range(rows_used)
        assert slo > full_lo or shi < full_hi  # one bit fewer clips


def test_authors_section_must_be_a_mapping(tmp_path: Path) -> None:
    p = tmp_path / "hw.yaml"
    p.write_text("crossbar: 256\n")
    with pytest.raises(HardwareError, match="'crossbar' must be a mapping"):
        Hardware.from_yaml(p)
