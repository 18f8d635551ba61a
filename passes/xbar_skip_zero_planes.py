"""``xbar-skip-zero-planes``: do not run a cycle whose input bit-plane is zero on every row of the tile.

A cycle drives one DAC chunk of one input vector on the rows of a tile. When that chunk is zero
on all of them (an all-zero patch at an image border, a ReLU output whose high bits are empty,
...) every column reads zero and every ADC code is zero, so the controller, which sees the DAC
inputs, skips the cycle. The pass marks every ``xbar.cycle`` ``{skip_zero}``; the executor then
counts the cycles it skipped (``skipped_cycles``), per layer and per bit-plane, and counts no
conversion, drive or ADC slot for them. The results are identical on any ADC (zero lies in every
ADC range).

Whether a plane is zero depends on the data, so this happens at run time: the static cost
(``cimc report``) is the worst case (nothing skipped), ``cimc run`` reports what was measured.
Signed inputs stream offset-encoded (``x + 2^(a-1)``, so their top plane is one for every
``x >= 0``) and rarely leave a plane empty.
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp, UnitAttr
from xdsl.passes import ModulePass

from cimc.dialects import xbar


@dataclass(frozen=True)
class XbarSkipZeroPlanesPass(ModulePass):
    """Mark every crossbar cycle as skippable when its plane is zero on the tile's rows."""

    name = "xbar-skip-zero-planes"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        for cycle in op.walk():
            if isinstance(cycle, xbar.CycleOp):
                cycle.properties["skip_zero"] = UnitAttr()
