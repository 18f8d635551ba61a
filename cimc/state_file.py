"""State files that are data, never code: a zip of ``state.json`` plus raw ``.npy`` arrays.

A search checkpoint (or any nested state: dicts, lists, tuples, numbers, strings, numpy arrays,
numpy scalars, torch tensors) is written as

- ``state.json``: the tree, with arrays replaced by references (``{"$ndarray": "a3"}``,
  ``{"$tensor": "a4"}``), tuples as ``{"$tuple": [...]}``, dicts whose keys are not plain strings
  as ``{"$dict": [[key, value], ...]}`` and numpy scalars as ``{"$scalar": "a5"}``;
- ``arrays/<ref>.npy``: each array in the ``.npy`` format, written and read with
  ``allow_pickle=False``.

Reading checks the file size, that members are stored uncompressed (no zip bomb), that every
member has a known name, and that every reference resolves; no byte of the file is ever
unpickled, so a crafted file cannot run code. The first member is a format tag
(:data:`FORMAT`), so a file of another kind is reported as such.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from cimc.errors import InputFileError

FORMAT = "cimc-state/1"
#: Largest state file read (bytes); ``CIMC_MAX_STATE_MB`` overrides.
MAX_STATE_BYTES = int(float(os.environ.get("CIMC_MAX_STATE_MB", "2048")) * 2**20)
_TAGS = ("$ndarray", "$tensor", "$scalar", "$tuple", "$dict")


class _Encoder:
    def __init__(self) -> None:
        self.arrays: dict[str, np.ndarray] = {}

    def _put(self, arr: np.ndarray) -> str:
        ref = f"a{len(self.arrays)}"
        if arr.dtype.hasobject:
            raise TypeError("state_file: object arrays cannot be stored")
        self.arrays[ref] = arr if arr.flags.c_contiguous else arr.copy(order="C")
        return ref

    def encode(self, obj: Any) -> Any:
        if obj is None or isinstance(obj, (bool, int, float, str)):
            return obj
        if isinstance(obj, np.ndarray):
            return {"$ndarray": self._put(obj)}
        if isinstance(obj, np.generic):
            return {"$scalar": self._put(np.asarray(obj))}
        if isinstance(obj, (list, tuple)):
            items = [self.encode(v) for v in obj]
            return items if isinstance(obj, list) else {"$tuple": items}
        if isinstance(obj, dict):
            if all(isinstance(k, str) and not k.startswith("$") for k in obj):
                return {k: self.encode(v) for k, v in obj.items()}
            return {"$dict": [[self.encode(k), self.encode(v)] for k, v in obj.items()]}
        if type(obj).__module__.startswith("torch"):
            return {"$tensor": self._put(_tensor_to_numpy(obj))}
        raise TypeError(f"state_file: cannot store a {type(obj).__name__}")


def _tensor_to_numpy(t: Any) -> np.ndarray:
    import torch

    if not isinstance(t, torch.Tensor):
        raise TypeError(f"state_file: cannot store a {type(t).__name__}")
    return t.detach().cpu().contiguous().numpy().copy()


def dumps_state(tree: Any) -> bytes:
    """The bytes of a state file holding ``tree``."""
    enc = _Encoder()
    doc = {"format": FORMAT, "tree": enc.encode(tree)}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr("state.json", json.dumps(doc, allow_nan=True))
        for ref, arr in enc.arrays.items():
            member = io.BytesIO()
            np.save(member, arr, allow_pickle=False)
            zf.writestr(f"arrays/{ref}.npy", member.getvalue())
    return buf.getvalue()


class _Decoder:
    def __init__(self, arrays: dict[str, np.ndarray], where: str) -> None:
        self.arrays = arrays
        self.where = where

    def _get(self, ref: Any) -> np.ndarray:
        if not isinstance(ref, str) or ref not in self.arrays:
            raise InputFileError(f"{self.where}: refers to a missing array {ref!r:.40}")
        return self.arrays[ref]

    def decode(self, obj: Any) -> Any:
        if isinstance(obj, list):
            return [self.decode(v) for v in obj]
        if not isinstance(obj, dict):
            return obj
        tag = next((t for t in _TAGS if t in obj), None)
        if tag is None:
            return {k: self.decode(v) for k, v in obj.items()}
        if len(obj) != 1:
            raise InputFileError(f"{self.where}: malformed entry {tag}")
        value = obj[tag]
        if tag == "$ndarray":
            return self._get(value)
        if tag == "$scalar":
            return self._get(value)[()]
        if tag == "$tensor":
            import torch

            return torch.from_numpy(self._get(value).copy())
        if not isinstance(value, list):
            raise InputFileError(f"{self.where}: malformed entry {tag}")
        if tag == "$tuple":
            return tuple(self.decode(v) for v in value)
        if not all(isinstance(kv, list) and len(kv) == 2 for kv in value):
            raise InputFileError(f"{self.where}: malformed entry $dict")
        return {_hashable(self.decode(k), self.where): self.decode(v) for k, v in value}


def _hashable(key: Any, where: str) -> Any:
    try:
        hash(key)
    except TypeError:
        raise InputFileError(f"{where}: malformed dict key") from None
    return key


def loads_state(data: bytes, where: str = "<state>") -> Any:
    """The tree stored in state-file bytes (errors name ``where``)."""
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError, OSError):
        raise InputFileError(f"{where}: not a cimc state file (not a zip archive)") from None
    with zf:
        infos = zf.infolist()
        names = [i.filename for i in infos]
        if "state.json" not in names:
            raise InputFileError(f"{where}: not a cimc state file (no state.json)")
        for info in infos:
            _check_member(info, where)
        try:
            doc = json.loads(zf.read("state.json").decode("utf-8"))
        except (ValueError, UnicodeDecodeError, RecursionError, zipfile.BadZipFile) as exc:
            raise InputFileError(f"{where}: state.json is not valid JSON ({type(exc).__name__})") from None
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            got = doc.get("format") if isinstance(doc, dict) else None
            raise InputFileError(f"{where}: state format {str(got)[:40]!r} is not {FORMAT!r}")
        arrays = {}
        for name in names:
            if name.startswith("arrays/"):
                arrays[name[len("arrays/"):-len(".npy")]] = _read_npy(zf, name, where)
    try:
        return _Decoder(arrays, where).decode(doc.get("tree"))
    except RecursionError:
        raise InputFileError(f"{where}: state nested too deeply") from None


def _check_member(info: zipfile.ZipInfo, where: str) -> None:
    name = info.filename
    ok = name == "state.json" or (
        name.startswith("arrays/") and name.endswith(".npy") and "/" not in name[7:]
    )
    if not ok:
        raise InputFileError(f"{where}: unexpected member {name[:60]!r} in the state file")
    if info.compress_type != zipfile.ZIP_STORED or info.file_size != info.compress_size:
        raise InputFileError(f"{where}: member {name} is compressed; cimc state files are stored")


def _read_npy(zf: zipfile.ZipFile, name: str, where: str) -> np.ndarray:
    try:
        with zf.open(name) as fh:
            arr = np.lib.format.read_array(io.BytesIO(fh.read()), allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise InputFileError(f"{where}: member {name} is not a plain .npy array ({exc})"[:300]) from None
    return arr


def save_state(path: str | os.PathLike[str], tree: Any) -> None:
    """Write ``tree`` to ``path`` atomically (see the module docstring for the format)."""
    from cimc.safe_write import OutputSet

    with OutputSet() as outs:
        outs.put(path, dumps_state(tree), "state file")


def load_state(path: str | os.PathLike[str], what: str = "state file") -> Any:
    """Read a state file written by :func:`save_state`; never unpickles anything."""
    from cimc.safe_read import read_bytes

    p = Path(path)
    return loads_state(read_bytes(p, what, MAX_STATE_BYTES), str(p))
