"""Shared checks for tests that run cimc's command-line tools in a subprocess."""

from __future__ import annotations

import subprocess


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    """A user error: non-zero exit, one ``error: ...`` line on stderr, no traceback."""
    assert proc.returncode != 0, proc.stdout
    err = proc.stderr.strip()
    assert "Traceback" not in err, err
    assert len(err.splitlines()) == 1, err
    assert err.startswith("error: "), err
    for needle in needles:
        assert needle in err, err
