"""User-facing errors.

Every problem a user can cause (a bad file, an unsupported op, a bad hardware value) is raised as a
:class:`CimcError` whose message is one line that says what and where. The command-line entry
points print that line and exit non-zero; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations


class CimcError(Exception):
    """An error caused by the user's input, reported as one line without a traceback."""

    exit_code = 1

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class UnsupportedModelError(CimcError):
    """The model uses something cimc cannot compile (an op, a dtype, a bit width, a shape)."""


class InputFileError(CimcError):
    """A file given on the command line is missing, unreadable or of the wrong kind."""


class HardwareError(CimcError):
    """A hardware description is invalid."""


class ExecutionError(CimcError):
    """A program cannot be run with the given inputs."""
