"""``xdsl.universe`` entry point: stock ``xdsl-opt`` sees cimc's dialects and passes.

Loading the plug-in also makes cimc's own errors (:class:`~cimc.errors.CimcError`, e.g. a pass
option out of range: ``xdsl-opt -p 'xbar-tile{rows=0}'``) print as one ``error: ...`` line with
exit status 1 instead of a traceback; every other exception is left to the previous hook.
``CIMC_DEBUG=1`` restores the traceback.
"""

from __future__ import annotations

import os
import sys

from xdsl.universe import Universe

from cimc.dialects import get_all_dialects
from cimc.errors import CimcError
from cimc.passes import get_all_passes


def _install_error_hook() -> None:
    previous = sys.excepthook
    if getattr(previous, "_cimc_hook", False):
        return

    def hook(exc_type, exc, tb) -> None:
        if isinstance(exc, CimcError) and os.environ.get("CIMC_DEBUG") != "1":
            print(f"error: {' '.join(exc.message.split())}", file=sys.stderr)
            return
        previous(exc_type, exc, tb)

    hook._cimc_hook = True  # type: ignore[attr-defined]
    sys.excepthook = hook


_install_error_hook()

UNIVERSE = Universe(all_dialects=get_all_dialects(), all_passes=get_all_passes())
