"""Helpers shared by the ``cimc``, ``cimc-opt`` and ``cimc-rl`` entry points."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path

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


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike[str], mode: str = "w") -> Iterator[object]:
    """Open a temporary file beside ``path`` and move it into place only on success.

    Nothing half-written is left on disk when the body raises.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; give the usual permissions
        with os.fdopen(fd, mode) as fh:
            yield fh
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_output(path, "wb") as fh:
        fh.write(data)  # type: ignore[attr-defined]


def console(*, stderr: bool = False):
    """A rich console: the terminal's width on a terminal, 160 columns when piped or logged.

    (rich falls back to 80 columns without a terminal, which would truncate the report tables.)
    """
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else int(os.environ.get("COLUMNS", "160"))
    return Console(stderr=stderr, width=width)
