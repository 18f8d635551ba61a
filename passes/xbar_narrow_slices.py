"""``xbar-narrow-slices``: store only the magnitude bits of narrow-range weights (dc / dr).

With a differential mapping (``dc`` column pairs, ``dr`` row pairs) the sign lives in the pair,
so a narrow ``w``-bit weight (``|w| <= 2^(w-1) - 1``, Brevitas' default) needs ``w - 1``
magnitude bits: ``S = ceil((w-1)/c)`` slices instead of the paper's ``ceil(w/c)``. That saves a
slice whenever ``c`` divides ``w - 1`` (w=5 with c=4, w=3 with c=2, any w with c=1): fewer
physical columns (``dc``, ``dr``), fewer column tiles, so fewer writes and cycles.

The pass rebuilds every static ``xbar.layer`` that qualifies (its weight is a constant whose
values are within the narrow range) with :func:`cimc.passes.xbar_tile.build_layer`. The
``offset`` mapping stores ``w + 2^(w-1)``, which needs all ``w`` bits, and dynamic (attention)
operands are not narrow: both are left as they are. It is not in the default pipeline (the
paper's formula is the default); the ``xbar-opt`` level runs it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import (
    PatternRewriter,
    PatternRewriteWalker,
    RewritePattern,
    op_type_rewrite_pattern,
)

from cimc.dialects import xbar
from cimc.passes.convert_cimq_to_xbar import weight_array
from cimc.passes.xbar_tile import build_layer, layer_crossbar, read_plan
from cimc.target.geometry import slices


def _narrow_values(layer: xbar.LayerOp) -> bool:
    W = weight_array(layer.weight, f"layer '{layer.layer.data}'")
    bound = (1 << (layer.value("w_bits") - 1)) - 1
    return not W.size or int(np.abs(W).max()) <= bound


class NarrowSlices(RewritePattern):
    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: xbar.LayerOp, rewriter: PatternRewriter) -> None:
        if op.is_dynamic or op.mapping.data not in ("dc", "dr"):
            return
        w, c = op.value("w_bits"), op.value("cell_bits")
        if w < 2 or op.value("slices") <= slices(w, c, narrow=True) or not _narrow_values(op):
            return
        plan = read_plan(op)
        if plan.blocks > 1 or plan.columns is not None:  # already packed / compacted at full slices
            return
        new = build_layer(
            op.input, op.weight, name=op.layer.data, kind=op.kind.data, w_bits=w,
            a_bits=op.value("a_bits"), dynamic=False, hw=layer_crossbar(op),
            plan=dataclasses.replace(plan, narrow=True, tiles=None),
        )
        rewriter.replace(op, [new])


@dataclass(frozen=True)
class XbarNarrowSlicesPass(ModulePass):
    """Use ``ceil((w-1)/c)`` weight slices for narrow weights on differential mappings."""

    name = "xbar-narrow-slices"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        PatternRewriteWalker(NarrowSlices(), apply_recursively=False).rewrite_module(op)
