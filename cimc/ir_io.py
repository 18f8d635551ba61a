"""Reading and writing cimc IR files (``.mlir`` text + ``.weights.npz`` beside it)."""

from __future__ import annotations

import io
import os
from pathlib import Path

from xdsl.dialects.builtin import ModuleOp, StringAttr
from xdsl.parser import Parser
from xdsl.printer import Printer
from xdsl.utils.exceptions import ParseError, VerifyException

from cimc.context import make_context
from cimc.dialects.cimq import BlobAttr
from cimc.errors import InputFileError
from cimc.safe_read import LIMITS, read_text
from cimc.safe_write import OutputSet
from cimc.weights import WeightStore, blobs_npz_bytes, sidecar_path

LEVEL_ATTR = "cimc.level"


def module_level(module: ModuleOp) -> str | None:
    attr = module.attributes.get(LEVEL_ATTR)
    return attr.data if isinstance(attr, StringAttr) else None


def set_module_level(module: ModuleOp, level: str) -> None:
    module.attributes[LEVEL_ATTR] = StringAttr(level)


def module_blobs(module: ModuleOp) -> list[BlobAttr]:
    """Every ``#cimq.blob`` attribute of the module (properties and attributes), in walk order."""
    found: list[BlobAttr] = []
    for op in module.walk():
        for attr in (*op.attributes.values(), *op.properties.values()):
            if isinstance(attr, BlobAttr):
                found.append(attr)
    return found


def blob_digests(module: ModuleOp) -> set[str]:
    """Digests of every ``#cimq.blob`` referenced in the module."""
    return {attr.blob.data.digest for attr in module_blobs(module)}


def bind_blobs(module: ModuleOp, store: WeightStore) -> list[str]:
    """Fill the module's digest-only blobs from ``store``; returns the digests it lacks."""
    missing = []
    for attr in module_blobs(module):
        blob = attr.blob.data
        if blob.loaded:
            continue
        if blob.digest in store:
            blob.fill(store.get(blob.digest))
        else:
            missing.append(blob.digest)
    return missing


def module_text(module: ModuleOp, *, generic: bool = False) -> str:
    buf = io.StringIO()
    Printer(stream=buf, print_generic_format=generic).print_op(module)
    buf.write("\n")
    return buf.getvalue()


def write_module(module: ModuleOp, path: str | os.PathLike[str], *, generic: bool = False,
                 outputs: OutputSet | None = None) -> Path | None:
    """Write the module text (and its weights beside it, if it has any), all or nothing.

    With ``outputs`` both files are only added to that set (the caller commits it). Written to a
    device or stream (``/dev/stdout``) the text goes alone: there is no "beside" for the weights.
    """
    text = module_text(module, generic=generic)
    blobs = [attr.blob.data for attr in module_blobs(module)]
    outs = OutputSet() if outputs is None else outputs
    side = sidecar_path(path) if blobs and not outs.passthrough(path) else None
    outs.put(path, text, "IR")
    if side is not None:
        outs.put(side, blobs_npz_bytes(blobs), "weights")
    if outputs is None:
        outs.commit()
    return side


def parse_module_text(text: str, name: str = "<input>") -> ModuleOp:
    ctx = make_context()
    try:
        module = Parser(ctx, text, name).parse_module()
    except ParseError as exc:
        first = str(exc).strip().splitlines()
        msg = next((line for line in first if "error" in line.lower()), first[-1] if first else "")
        loc = first[0] if first else name
        raise InputFileError(f"{name}: malformed IR: {msg.strip()} ({loc.strip()})") from None
    except Exception as exc:  # the xDSL parser raises assorted errors on bad text
        raise InputFileError(f"{name}: malformed IR: {exc}".splitlines()[0]) from None
    try:
        module.verify()
    except VerifyException as exc:
        raise InputFileError(f"{name}: invalid IR: {str(exc).splitlines()[0]}") from None
    return module


def read_module(path: str | os.PathLike[str], weights: str | os.PathLike[str] | None = None) -> ModuleOp:
    """Parse a ``.mlir`` file; its blobs are filled from ``<stem>.weights.npz`` (or ``weights``)."""
    p = Path(path)
    text = read_text(p, "IR file", LIMITS["mlir"])
    side = Path(weights) if weights else sidecar_path(p)
    if side.exists():
        store = WeightStore.load(side)
    elif weights:
        raise InputFileError(f"{side}: weights file not found")
    else:
        store = WeightStore()
    module = parse_module_text(text, str(p))
    missing = bind_blobs(module, store)
    if missing:
        raise InputFileError(
            f"{p}: {len(missing)} constant(s) refer to weights that are not loaded; expected them in "
            f"{side}"
        )
    return module
