"""Reading user files as data: size limits before parsing, YAML without code or alias bombs,
``.npy``/``.npz`` without pickle.

Every reader refuses a path that is not a regular file (a directory, a device such as
``/dev/zero``, a fifo) and a file larger than its limit, with one line that names the file and
the limit, before a byte is parsed. Limits are in bytes; ``CIMC_MAX_INPUT_MB`` raises the limit
of every kind at once (for very large models).
"""

from __future__ import annotations

import os
import stat
import zipfile
from pathlib import Path
from typing import Any

from cimc.errors import InputFileError

_MB = 2**20


def _scaled(default_mb: float) -> int:
    override = os.environ.get("CIMC_MAX_INPUT_MB")
    try:
        mb = max(float(override), default_mb) if override else default_mb
    except ValueError:
        mb = default_mb
    return int(mb * _MB)


#: Default size limits per kind of file (bytes).
LIMITS: dict[str, int] = {
    "yaml": _scaled(1),  # a hardware description is a few hundred bytes
    "json": _scaled(64),  # configs, policies, checkpoint metadata
    "mlir": _scaled(1024),  # IR text (weights live in the .npz beside it)
    "array": _scaled(4096),  # .npy / .npz inputs, labels, weights
    "onnx": _scaled(4096),  # protobuf limit is 2 GiB; external data is checked per file
    "checkpoint": _scaled(4096),
}
#: Most nodes a YAML document may expand to (aliases counted at every use).
YAML_MAX_NODES = 10_000


def human_bytes(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


def short(value: Any, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters (error messages stay one short line)."""
    text = reprlib_repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def reprlib_repr(value: Any) -> str:
    import reprlib

    r = reprlib.Repr()
    r.maxlevel, r.maxlist, r.maxdict, r.maxstring, r.maxother = 2, 4, 4, 40, 40
    return r.repr(value)


def check_regular(path: str | os.PathLike[str], what: str, limit: int) -> Path:
    """``path`` as a :class:`Path` once it is an existing regular file of at most ``limit`` bytes."""
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise InputFileError(f"{p}: {what} not found") from None
    except OSError as exc:
        raise InputFileError(f"{p}: cannot read the {what} ({exc.strerror})") from None
    if stat.S_ISDIR(st.st_mode):
        raise InputFileError(f"{p}: is a directory, expected a {what}")
    if not stat.S_ISREG(st.st_mode):
        raise InputFileError(f"{p}: not a regular file (a device, fifo or socket), expected a {what}")
    if st.st_size > limit:
        raise InputFileError(
            f"{p}: {what} is {human_bytes(st.st_size)}, more than the {human_bytes(limit)} cimc reads "
            "(CIMC_MAX_INPUT_MB raises the limit)"
        )
    return p


def read_bytes(path: str | os.PathLike[str], what: str, limit: int) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes."""
    p = check_regular(path, what, limit)
    try:
        with open(p, "rb") as fh:
            data = fh.read(limit + 1)
    except OSError as exc:
        raise InputFileError(f"{p}: cannot read the {what} ({exc.strerror})") from None
    if len(data) > limit:  # grew after the check
        raise InputFileError(f"{p}: {what} is larger than {human_bytes(limit)}")
    return data


def read_text(path: str | os.PathLike[str], what: str, limit: int) -> str:
    """The UTF-8 text of a regular file of at most ``limit`` bytes."""
    data = read_bytes(path, what, limit)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputFileError(f"{path}: {what} is not UTF-8 text (byte {exc.start})") from None


def read_json(path: str | os.PathLike[str], what: str, limit: int | None = None) -> Any:
    """A JSON document from a regular file (one-line errors with the line and column)."""
    import json

    text = read_text(path, what, LIMITS["json"] if limit is None else limit)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputFileError(f"{path}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    except RecursionError:
        raise InputFileError(f"{path}: JSON nested too deeply") from None


# --------------------------------------------------------------------------------------------
# YAML
# --------------------------------------------------------------------------------------------


def _expanded_nodes(root: Any, limit: int) -> int:
    """Nodes of the YAML graph with every alias expanded (stops counting past ``limit``)."""
    import yaml

    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(node: Any) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in active:
            raise InputFileError("recursive YAML alias")
        active.add(key)
        total = 1
        if isinstance(node, yaml.SequenceNode):
            children = node.value
        elif isinstance(node, yaml.MappingNode):
            children = [x for kv in node.value for x in kv]
        else:
            children = []
        for child in children:
            total += size(child)
            if total > limit:
                break
        active.discard(key)
        sizes[key] = total
        return total

    return size(root)


def yaml_load(text: str, where: str) -> Any:
    """``yaml.safe_load`` of ``text`` (plain data tags only) that refuses documents whose
    aliases expand to more than :data:`YAML_MAX_NODES` nodes."""
    import yaml

    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        try:
            n = _expanded_nodes(node, YAML_MAX_NODES)
        except InputFileError as exc:
            raise InputFileError(f"{where}: {exc.message}") from None
        except RecursionError:
            raise InputFileError(f"{where}: YAML nested too deeply") from None
        if n > YAML_MAX_NODES:
            raise InputFileError(
                f"{where}: YAML expands to more than {YAML_MAX_NODES:,} nodes (aliases); refused"
            )
        return loader.construct_document(node)
    finally:
        loader.dispose()


# --------------------------------------------------------------------------------------------
# numpy arrays
# --------------------------------------------------------------------------------------------


def load_array(path: str | os.PathLike[str], what: str, *, npz: bool = True, limit: int | None = None):
    """A ``.npy`` array (or, with ``npz``, the arrays of an ``.npz`` as a dict) from a user file.

    Never unpickles (object arrays are refused); ``.npz`` members must not expand beyond the
    limit (compressed members are checked by their stored size before they are read).
    """
    import numpy as np

    limit = LIMITS["array"] if limit is None else limit
    kinds = ".npy/.npz" if npz else ".npy"
    p = check_regular(path, f"{what} file", limit)
    try:
        with open(p, "rb") as fh:
            magic = fh.read(6)
    except OSError as exc:
        raise InputFileError(f"{p}: cannot read the {what} file ({exc.strerror})") from None
    if magic.startswith(b"PK"):
        if not npz:
            raise InputFileError(f"{p}: is an .npz archive; expected a {kinds} array file")
        return _load_npz(p, what, limit)
    if not magic.startswith(b"\x93NUMPY"):
        raise InputFileError(f"{p}: not a {kinds} array file (no .npy header)")
    try:
        return np.load(p, allow_pickle=False)
    except Exception as exc:  # ValueError for object arrays, others for bad headers
        raise InputFileError(f"{p}: not a {kinds} array file ({str(exc).splitlines()[0][:120]})") from None


def _load_npz(p: Path, what: str, limit: int) -> dict[str, Any]:
    import numpy as np

    try:
        with zipfile.ZipFile(p) as zf:
            total = sum(i.file_size for i in zf.infolist())
            if total > limit:
                raise InputFileError(
                    f"{p}: {what} archive expands to {human_bytes(total)}, more than {human_bytes(limit)}"
                )
        with np.load(p, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except InputFileError:
        raise
    except Exception as exc:
        raise InputFileError(f"{p}: not a .npy/.npz array file ({str(exc).splitlines()[0][:120]})") from None
