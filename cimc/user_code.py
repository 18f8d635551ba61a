"""A user's own Python file, ``FILE.py:FUNCTION``: loaded and called **by design**.

``cimc-rl --model FILE.py:FUNCTION`` and ``--dataset FILE.py:FUNCTION`` run the user's code (that
is their point); every other file cimc reads stays data (see :mod:`cimc.safe_read`). The file is
size-checked and read as UTF-8 text, executed once per process as a module of its own (its folder
is on ``sys.path`` while it loads, so it can import its neighbours) and cached until it changes on
disk. Every failure is one line naming the file and the function: a missing file, a syntax
error (with its line), an exception while loading or calling, a missing or non-callable function.
"""

from __future__ import annotations

import hashlib
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cimc.errors import InputFileError

#: Largest user source file read (bytes): a model or data recipe, not a data set.
MAX_SOURCE_BYTES = 4 * 2**20

_MODULES: dict[tuple[str, int, int], types.ModuleType] = {}


def is_code_spec(text: str) -> bool:
    """Whether ``text`` has the form ``FILE.py:FUNCTION``."""
    path, sep, func = text.rpartition(":")
    return bool(sep) and path.endswith(".py") and bool(func)


def parse_spec(text: str, option: str) -> tuple[Path, str]:
    """``(resolved file, function name)`` of ``FILE.py:FUNCTION``; one line naming ``option`` if
    the text is not of that form or the file does not exist."""
    path, sep, func = text.rpartition(":")
    if not sep or not path.endswith(".py") or not func:
        raise InputFileError(f"{option} {text}: expected FILE.py:FUNCTION")
    if not func.isidentifier():
        raise InputFileError(f"{option} {text}: '{func}' is not a Python function name")
    p = Path(path).expanduser()
    if not p.is_file():
        raise InputFileError(f"{p}: {option} file not found")
    return p.resolve(), func


def canonical(text: str, option: str) -> str:
    """``ABSOLUTE/FILE.py:FUNCTION``: the same file whatever the working directory."""
    path, func = parse_spec(text, option)
    return f"{path}:{func}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__


def load_module(path: Path, what: str) -> types.ModuleType:
    """The module of the user's file ``path`` (executed once, again after the file changes)."""
    from cimc.safe_read import check_regular, read_text

    st = check_regular(path, what, MAX_SOURCE_BYTES).stat()
    key = (str(path), st.st_mtime_ns, st.st_size)
    if key in _MODULES:
        return _MODULES[key]
    source = read_text(path, what, MAX_SOURCE_BYTES)
    digest = hashlib.sha1(f"{key}".encode()).hexdigest()[:12]
    name = f"cimc_user_{path.stem if path.stem.isidentifier() else 'file'}_{digest}"
    try:
        code = compile(source, str(path), "exec")
    except SyntaxError as exc:
        raise InputFileError(f"{path}:{exc.lineno}: syntax error in the {what}: {exc.msg}") from None
    module = types.ModuleType(name)
    module.__file__ = str(path)
    sys.modules[name] = module  # dataclasses, pickling and typing look the module up here
    sys.path.insert(0, str(path.parent))
    try:
        exec(code, module.__dict__)
    except Exception as exc:  # the user's code may raise anything
        sys.modules.pop(name, None)
        raise InputFileError(f"{path}: loading the {what} raised {_first_line(exc)}") from None
    finally:
        try:
            sys.path.remove(str(path.parent))
        except ValueError:
            pass
    _MODULES[key] = module
    return module


def load_function(text: str, option: str, what: str) -> tuple[str, Callable[[], Any]]:
    """``(canonical spec, function)`` of ``FILE.py:FUNCTION``."""
    path, func = parse_spec(text, option)
    module = load_module(path, what)
    fn = getattr(module, func, None)
    if fn is None:
        defined = sorted(k for k, v in vars(module).items()
                         if callable(v) and not k.startswith("_") and getattr(v, "__module__", None) == module.__name__)
        known = f"; it defines {', '.join(defined[:8])}" if defined else ""
        raise InputFileError(f"{path}: no function '{func}' ({option}){known}")
    if not callable(fn):
        raise InputFileError(f"{path}: '{func}' is a {type(fn).__name__}, not a function ({option})")
    return f"{path}:{func}", fn


def call_function(text: str, option: str, what: str) -> tuple[str, Any]:
    """``(canonical spec, FUNCTION())``; an exception in the user's function is one line."""
    spec, fn = load_function(text, option, what)
    path = spec.rpartition(":")[0]
    sys.path.insert(0, str(Path(path).parent))
    try:
        return spec, fn()
    except Exception as exc:
        raise InputFileError(f"{spec}: calling it raised {_first_line(exc)}") from None
    finally:
        try:
            sys.path.remove(str(Path(path).parent))
        except ValueError:
            pass
