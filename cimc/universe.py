"""``xdsl.universe`` entry point: stock ``xdsl-opt`` sees cimc's dialects and passes."""

from __future__ import annotations

from xdsl.universe import Universe

from cimc.dialects import get_all_dialects
from cimc.passes import get_all_passes

UNIVERSE = Universe(all_dialects=get_all_dialects(), all_passes=get_all_passes())
