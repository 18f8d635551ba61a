"""Bit-width policies: ``(L, 2)`` int arrays of ``[w_bits, a_bits]`` per crossbar layer.

Files: ``.npy`` (the paper's format, an ``(L, 2)`` integer array) or ``.json``::

    {"model": "lenet", "layers": [{"name": "conv1", "w_bits": 8, "a_bits": 8}, ...]}

Rows are in the order of :func:`cimc.models.layer_names`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from cimc.cli_util import atomic_output
from cimc.errors import CimcError, InputFileError
from cimc.models.zoo import MAX_BITS, MIN_BITS, _as_int_array, layer_names, validate_policy

__all__ = ["MAX_BITS", "MIN_BITS", "load_policy", "save_policy", "validate_policy"]

def load_policy(path: str | Path) -> np.ndarray:
    """Read a policy from ``.npy`` or ``.json``; return an ``(L, 2)`` int64 array.

    Checks the shape and integrality only; use :func:`validate_policy` against a model.
    """
    p = Path(path)
    if not p.is_file():
        raise InputFileError(f"{p}: policy file not found")
    if p.suffix == ".npy":
        from cimc.safe_read import load_array

        return _as_int_array(load_array(p, "policy", npz=False), str(p))
    if p.suffix == ".json":
        return _as_int_array(_json_rows(p), str(p))
    raise InputFileError(f"{p}: policy files must end in .npy or .json")


def _json_rows(p: Path) -> list[list[int]]:
    try:
        doc = json.loads(_read(p))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputFileError(f"{p}: invalid JSON ({exc})") from None
    layers = doc.get("layers") if isinstance(doc, dict) else None
    if not isinstance(layers, list):
        raise InputFileError(f"{p}: expected an object with a 'layers' list")
    rows = []
    for i, layer in enumerate(layers):
        if not isinstance(layer, dict) or "w_bits" not in layer or "a_bits" not in layer:
            raise InputFileError(f"{p}: layer {i} needs 'w_bits' and 'a_bits'")
        rows.append([layer["w_bits"], layer["a_bits"]])
    if not rows:
        raise InputFileError(f"{p}: the policy has no layers")
    return rows


def _read(p: Path) -> str:
    from cimc.safe_read import LIMITS, read_text

    return read_text(p, "policy file", LIMITS["json"])


def policy_model(path: str | Path) -> str | None:
    """The ``"model"`` named in a ``.json`` policy file, or ``None``."""
    p = Path(path)
    if p.suffix != ".json" or not p.is_file():
        return None
    try:
        doc = json.loads(_read(p))
    except (json.JSONDecodeError, UnicodeDecodeError, InputFileError):
        return None
    return doc.get("model") if isinstance(doc, dict) else None


def save_policy(
    path: str | Path,
    policy: object,
    names: list[str] | None = None,
    model: str | None = None,
) -> Path:
    """Write a policy as ``.npy`` or ``.json`` (chosen by suffix), atomically.

    For JSON, layer names come from ``names``, else from ``model``'s layer list, else
    ``layer0, layer1, ...``.
    """
    p = Path(path)
    arr = _as_int_array(policy, "policy")
    if p.suffix == ".npy":
        with atomic_output(p, "wb") as fh:
            np.save(fh, arr)
        return p
    if p.suffix != ".json":
        raise CimcError(f"{p}: policy files must end in .npy or .json")
    if names is None and model is not None:
        names = layer_names(model)
    if names is None:
        names = [f"layer{i}" for i in range(len(arr))]
    if len(names) != len(arr):
        raise CimcError(f"{p}: {len(names)} layer names for a policy of {len(arr)} layers")
    doc = {
        "model": model,
        "layers": [
            {"name": n, "w_bits": int(w), "a_bits": int(a)} for n, (w, a) in zip(names, arr)
        ],
    }
    with atomic_output(p) as fh:
        fh.write(json.dumps(doc, indent=1) + "\n")  # type: ignore[attr-defined]
    return p


def round_to_cells(bits: int, cell_bits: int, b_min: int = 2, b_max: int = 8) -> int:
    """Round weight bits to the nearest multiple of ``cell_bits`` in ``[b_min, b_max]``.

    Ties go to the larger width (c = 4: 2..5 -> 4, 6..8 -> 8; c = 2: 3 -> 4, 5 -> 6, 7 -> 8).
    """
    allowed = [b for b in range(b_min, b_max + 1) if b % cell_bits == 0]
    if not allowed:
        raise CimcError(f"no multiple of cell_bits={cell_bits} lies in {b_min}..{b_max}")
    return min(allowed, key=lambda b: (abs(b - bits), -b))


def apply_constraints(
    policy: object,
    *,
    first_last: bool = True,
    cell_bits: int | None = None,
    b_min: int = 2,
    b_max: int = 8,
) -> np.ndarray:
    """Return a constrained copy of ``policy`` (cim-model.md section 4).

    ``cell_bits``: weight bits rounded to multiples of the cell resolution within
    ``[b_min, b_max]`` (see :func:`round_to_cells`). ``first_last``: the first and last crossbar
    layers forced to 8/8 (applied last, so they stay 8/8).
    """
    arr = _as_int_array(policy, "policy").copy()
    if cell_bits is not None:
        if cell_bits < 1:
            raise CimcError(f"cell_bits must be >= 1, got {cell_bits}")
        arr[:, 0] = [round_to_cells(int(w), cell_bits, b_min, b_max) for w in arr[:, 0]]
    if first_last and len(arr):
        arr[0] = (MAX_BITS, MAX_BITS)
        arr[-1] = (MAX_BITS, MAX_BITS)
    return arr
