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

    With ``--debug`` (or ``CIMC_DEBUG=1``) the traceback is printed as well. An ``int`` returned
    by ``entry`` is the exit code (typer/click in non-standalone mode return it for ``--help``).
    """
    debug = debug_requested(argv)
    try:
        code = entry()
    except SystemExit as exc:  # typer / click exit
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except CimcError as exc:
        return _fail(exc.message, exc.exit_code, debug)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        return _fail("out of memory (the input or batch is too large for this machine)", 1, debug)
    except OSError as exc:  # the environment, not cimc: a file cimc was not told about, a full disk
        where = f"{exc.filename}: " if exc.filename else ""
        return _fail(f"{where}{exc.strerror or type(exc).__name__}", 1, debug)
    except Exception as exc:  # an internal error: still one line unless --debug
        if _is_usage_error(exc):
            return _fail(_usage_line(exc), getattr(exc, "exit_code", 2), debug)
        if debug:
            traceback.print_exc()
        first = str(exc).splitlines()[0] if str(exc) else ""
        print(
            f"internal error: {type(exc).__name__}: {first} (run with --debug for the traceback)",
            file=sys.stderr,
        )
        return 3
    return code if isinstance(code, int) else 0


def _fail(message: str, code: int, debug: bool) -> int:
    if debug:
        traceback.print_exc()
    print(f"error: {' '.join(message.split())}", file=sys.stderr)
    return code


def _is_usage_error(exc: BaseException) -> bool:
    from typer._click.exceptions import ClickException

    return isinstance(exc, ClickException)


def _usage_line(exc: BaseException) -> str:
    """A click/typer usage error as one line, with the command's help hint."""
    message = exc.format_message()  # type: ignore[attr-defined]
    ctx = getattr(exc, "ctx", None)
    hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
    return f"{message}{hint}"


def run_app(app, argv: list[str], prog_name: str) -> int:
    """Run a typer ``app`` on ``argv`` as its console script does; returns the exit code.

    Usage errors (a bad option value, an unknown option, a missing argument) are one
    ``error: ...`` line like every other error; ``app`` with no arguments prints its help.
    """
    from typer._click.exceptions import NoArgsIsHelpError

    def entry() -> object:
        try:
            return app(argv, prog_name=prog_name, standalone_mode=False)
        except NoArgsIsHelpError as exc:
            print(exc.ctx.get_help() if exc.ctx is not None else exc.format_message())
            return 2

    return run_guarded(entry, argv)


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

    (rich falls back to 80 columns without a terminal.) Print tables with :func:`print_table`.
    """
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else int(os.environ.get("COLUMNS", "160"))
    return Console(file=stream, width=width)


def print_table(table, *, stderr: bool = False) -> None:
    """Print a rich table without ever cutting a number or a word.

    Piped or redirected, the table is printed at its natural width: one line per row, whole
    numbers. On a terminal narrower than the table, the widest columns wrap between words, never
    below their longest word; if even that does not fit, the table is printed at that minimum
    width and the terminal wraps its lines (every number stays whole).
    """
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    lines = [[_cell_text(c) for c in [col.header, *col.cells]] for col in table.columns]
    longest_word = [max((len(w) for t in cells for w in t.split()), default=1) for cells in lines]
    natural = [max((len(line) for t in cells for line in t.splitlines() or [""]), default=1) for cells in lines]
    pad = table.padding[1] + table.padding[3] if hasattr(table, "padding") else 2
    frame = len(table.columns) + 1 + pad * len(table.columns)
    on_terminal = stream.isatty()
    width = Console(file=stream).width if on_terminal else sum(natural) + frame
    widths = _fit_widths(natural, longest_word, width - frame)
    if widths != natural:
        for column, w in zip(table.columns, widths):
            column.width = w
            column.overflow = "fold"
    need = sum(widths) + frame
    out = Console(file=stream, width=max(width, need), soft_wrap=False, force_terminal=on_terminal or None)
    out.print(table)


def _cell_text(cell) -> str:
    return cell.plain if hasattr(cell, "plain") else str(cell)


def _fit_widths(natural: list[int], minimum: list[int], budget: int) -> list[int]:
    """Column widths that fit ``budget`` by narrowing the widest columns, never below ``minimum``."""
    widths = list(natural)
    while sum(widths) > budget:
        slack = [(w - m, w, i) for i, (w, m) in enumerate(zip(widths, minimum)) if w > m]
        if not slack:
            break
        _, _, i = max(slack, key=lambda t: (t[1], t[0]))
        widths[i] -= 1
    return widths


def check_number(option: str, value: float | int | None, *, lo: float | None = None,
                 hi: float | None = None, lo_open: bool = False) -> None:
    """Refuse an option value that is NaN, infinite or outside ``[lo, hi]`` (``(lo, hi]`` with
    ``lo_open``), with one line naming the option. ``None`` (not given) passes."""
    import math

    if value is None:
        return
    if isinstance(value, float) and not math.isfinite(value):
        raise CimcError(f"{option}: {value} is not a finite number")
    if lo is not None and (value <= lo if lo_open else value < lo):
        raise CimcError(f"{option}: expected {'>' if lo_open else '>='} {lo:g}, got {value:g}")
    if hi is not None and value > hi:
        raise CimcError(f"{option}: expected <= {hi:g}, got {value:g}")


def check_choice(option: str, value: str | None, choices: tuple[str, ...] | list[str]) -> None:
    """Refuse a value that is not one of ``choices`` (``None`` passes)."""
    if value is not None and value not in choices:
        raise CimcError(f"{option}: '{value}' is not one of {', '.join(choices)}")


def show_progress(progress: bool | None) -> bool:
    """``--progress/--no-progress`` when given, else whether stderr is a terminal."""
    return sys.stderr.isatty() if progress is None else progress
