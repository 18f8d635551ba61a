"""Policy files, validation and the search's constraints."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cimc.errors import CimcError, InputFileError
from cimc.models import apply_constraints, layer_names, load_policy, save_policy, validate_policy
from cimc.models.policy import policy_model, round_to_cells


def test_npy_roundtrip(tmp_path) -> None:
    pol = np.array([[8, 8], [4, 3], [2, 5], [6, 7], [8, 8]])
    path = save_policy(tmp_path / "p.npy", pol)
    got = load_policy(path)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, pol)


def test_json_roundtrip_with_model_names(tmp_path) -> None:
    pol = np.array([[8, 8], [4, 3], [2, 5], [6, 7], [8, 8]])
    path = save_policy(tmp_path / "p.json", pol, model="lenet")
    doc = json.loads(path.read_text())
    assert doc["model"] == "lenet"
    assert [layer["name"] for layer in doc["layers"]] == layer_names("lenet")
    assert doc["layers"][1] == {"name": "conv2", "w_bits": 4, "a_bits": 3}
    np.testing.assert_array_equal(load_policy(path), pol)
    assert policy_model(path) == "lenet"


def test_json_default_names(tmp_path) -> None:
    path = save_policy(tmp_path / "p.json", [[2, 3]])
    assert json.loads(path.read_text())["layers"][0]["name"] == "layer0"


@pytest.mark.parametrize("content,suffix,match", [
    ("{not json", ".json", "invalid JSON"),
    ('{"layers": [{"w_bits": 4}]}', ".json", "layer 0 needs"),
    ('{"layers": []}', ".json", "no layers"),
    ("x", ".txt", "must end in .npy or .json"),
    ("garbage", ".npy", "not a .npy array file"),
])
def test_bad_files(tmp_path, content: str, suffix: str, match: str) -> None:
    path = tmp_path / f"p{suffix}"
    path.write_text(content)
    with pytest.raises(InputFileError, match=match):
        load_policy(path)


def test_missing_file(tmp_path) -> None:
    with pytest.raises(InputFileError, match="not found"):
        load_policy(tmp_path / "none.npy")


def test_npy_wrong_shape(tmp_path) -> None:
    np.save(tmp_path / "p.npy", np.zeros(5, dtype=np.int64))
    with pytest.raises(CimcError, match=r"shape \(L, 2\)"):
        load_policy(tmp_path / "p.npy")


def test_validate() -> None:
    ok = validate_policy([[8, 8]] * 5, "lenet")
    assert ok.shape == (5, 2) and ok.dtype == np.int64
    with pytest.raises(CimcError, match="has 6 layers, the model has 5"):
        validate_policy([[8, 8]] * 6, "lenet")
    with pytest.raises(CimcError, match="layer 4 'fc3': a_bits = 9"):
        validate_policy([[8, 8]] * 4 + [[8, 9]], "lenet")
    with pytest.raises(CimcError, match="unknown model"):
        validate_policy([[8, 8]], "nope")
    with pytest.raises(CimcError, match="integers"):
        validate_policy(np.array([["a", "b"]] * 5), "lenet")


def test_cell_rounding_examples() -> None:
    assert [round_to_cells(b, 4) for b in range(2, 9)] == [4, 4, 4, 4, 8, 8, 8]
    assert [round_to_cells(b, 2) for b in range(2, 9)] == [2, 4, 4, 6, 6, 8, 8]
    assert round_to_cells(5, 1) == 5
    with pytest.raises(CimcError, match="no multiple"):
        round_to_cells(4, 16)


def test_apply_constraints() -> None:
    pol = np.array([[2, 3], [5, 2], [7, 6], [3, 3]])
    got = apply_constraints(pol, cell_bits=4)
    np.testing.assert_array_equal(got, [[8, 8], [4, 2], [8, 6], [8, 8]])
    got = apply_constraints(pol, first_last=False, cell_bits=2)
    np.testing.assert_array_equal(got, [[2, 3], [6, 2], [8, 6], [4, 3]])
    np.testing.assert_array_equal(apply_constraints(pol, first_last=False), pol)
    np.testing.assert_array_equal(pol, [[2, 3], [5, 2], [7, 6], [3, 3]])  # input untouched
