"""Validation of pass options: a bad option is a one-line diagnostic in every driver.

A pass checks its options when it is built (``__post_init__``), so ``cimc-opt``, ``cimc lower``
and the stock ``xdsl-opt`` all refuse ``xbar-tile{rows=0}`` before any IR is read. The error is
a :class:`PassOptionError`: a :class:`~cimc.errors.HardwareError` (one line in cimc's tools) and an
xDSL ``PassFailedException`` (a diagnostic for ``xdsl-opt --verify-diagnostics``); under the
stock ``xdsl-opt`` the plug-in (:mod:`cimc.universe`) prints it as one line, not a traceback.
"""

from __future__ import annotations

from collections.abc import Iterable

from xdsl.utils.exceptions import PassFailedException

from cimc.errors import HardwareError


class PassOptionError(HardwareError, PassFailedException):
    """A pass option (a crossbar parameter) is out of range or of the wrong type."""


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_int(pass_name: str, option: str, value: object, lo: int, hi: int | None = None) -> None:
    """``value`` is an integer in ``lo..hi`` (no upper bound when ``hi`` is None)."""
    if _is_int(value) and value >= lo and (hi is None or value <= hi):  # type: ignore[operator]
        return
    wanted = f"an integer >= {lo}" if hi is None else f"an integer in {lo}..{hi}"
    raise PassOptionError(f"{pass_name}{{{option}={value!r:.40}}}: {option} must be {wanted}")


def check_choice(pass_name: str, option: str, value: object, choices: Iterable[str]) -> None:
    choices = tuple(choices)
    if value in choices:
        return
    raise PassOptionError(
        f"{pass_name}{{{option}={value!r:.40}}}: {option} must be one of {', '.join(choices)}"
    )
