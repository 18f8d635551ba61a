"""Helpers shared by the ``cimc``, ``cimc-opt`` and ``cimc-rl`` entry points."""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable

from cimc.errors import CimcError


def debug_requested(argv: list[str] | None = None) -> bool:
    argv = sys.argv if argv is None else argv
    return "--debug" in argv or os.environ.get("CIMC_DEBUG") == "1"


def run_guarded(entry: Callable[[], object], argv: list[str] | None = None) -> int:
    """Run ``entry``; turn a :class:`CimcError` (or any crash) into one line and an exit code.

    With ``--debug`` (or ``CIMC_DEBUG=1``) the traceback is printed as well.
    """
    debug = debug_requested(argv)
    try:
        entry()
    except SystemExit as exc:  # typer / click exit
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except CimcError as exc:
        if debug:
            traceback.print_exc()
        print(f"error: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # an internal error: still one line unless --debug
        if debug:
            traceback.print_exc()
        first = str(exc).splitlines()[0] if str(exc) else ""
        print(
            f"internal error: {type(exc).__name__}: {first} (run with --debug for the traceback)",
            file=sys.stderr,
        )
        return 3
    return 0


def atomic_output(path: str | os.PathLike[str], mode: str = "w"):
    """Open an in-memory file whose content replaces ``path`` only when the block succeeds.

    See :mod:`cimc.safe_write`: fsynced and size checked, nothing half-written on failure,
    devices and fifos written in place, one-line errors naming the path.
    """
    from cimc.safe_write import atomic_output as _atomic

    return _atomic(path, mode)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    from cimc.safe_write import OutputSet

    with OutputSet() as outs:
        outs.put(path, data)


def console(*, stderr: bool = False):
    """A rich console: the terminal's width on a terminal, 160 columns when piped or logged.

    (rich falls back to 80 columns without a terminal, which would truncate the report tables.)
    """
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else int(os.environ.get("COLUMNS", "160"))
    return Console(stderr=stderr, width=width)
