"""``xbar-batch-amortise``: program every static tile once for the whole batch.

In the paper's model every inference programs every tile again (56 us a write), so a run of ``B``
inputs writes each tile ``B`` times. A tile whose cells do not depend on the input can instead be
written once and then driven with the vectors of all ``B`` inputs: the pass marks the
``xbar.program`` of every static layer ``{amortised}``, and the executor counts one write per run
for it (``writes = H * X`` instead of ``B * H * X``). Cycles do not change (each input still
needs its own), nor do the results. Run-time written tiles (attention's ``K`` and ``V``) differ
per input and are left alone.

On one array this is the only way to avoid re-writing; with resident weights on a chip
(``residency``) tiles are not re-written anyway and the pass gains nothing there.
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp, UnitAttr
from xdsl.passes import ModulePass

from cimc.dialects import xbar


@dataclass(frozen=True)
class XbarBatchAmortisePass(ModulePass):
    """Mark the tile writes of static layers as once per batch."""

    name = "xbar-batch-amortise"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        for layer in op.walk():
            if not isinstance(layer, xbar.LayerOp) or layer.is_dynamic:
                continue
            for prog in layer.body.walk():
                if isinstance(prog, xbar.ProgramOp):
                    prog.properties["amortised"] = UnitAttr()
