"""``xbar-skip-zero-weights``: no column for an all-zero weight slice, no write or cycle for an all-zero tile.

A weight slice whose cells are zero in every row (the top slice of an output whose weights are all
small, the ``W+`` slices of an output whose weights are never positive, ...) is a physical column
that only ever reads zero: the pass drops such columns from the layer (``xbar.map {columns}``
keeps the others, with their recombination rows) and tiles the remaining ones, so fewer columns
can mean fewer column tiles, writes and cycles. A tile whose cells are then all zero (a row block
where the kept columns are zero) is not programmed nor driven: the layer loops over the list of
tiles that hold a non-zero cell (``xbar.tile_at``). Both are decided at compile time from the
weight values (:mod:`cimc.target.occupancy`, without building the cells), apply to static
weights only, and are exact: a dropped column or tile only ever contributes zero.

The ``of`` mapping stores ``w + 2^(w-1)``, so its cells are rarely zero; dense trained weights
rarely leave a whole slice or tile empty either (the benchmark reports what it finds).
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
from cimc.target.geometry import tile_bounds
from cimc.target.occupancy import column_occupancy, kept_columns, present_tiles
from cimc.target.packing import block_diagonal


class SkipZeroWeights(RewritePattern):
    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: xbar.LayerOp, rewriter: PatternRewriter) -> None:
        plan = read_plan(op)
        if op.is_dynamic or plan.columns is not None or plan.tiles is not None:
            return
        W = np.asarray(weight_array(op.weight, f"layer '{op.layer.data}'"))
        if plan.blocks > 1:
            W = block_diagonal(W, plan.blocks)
        hw = layer_crossbar(op)
        occ = column_occupancy(W, op.value("w_bits"), hw.cell_bits, hw.mapping, op.value("slices"), hw.rows,
                               signed=not op.w_unsigned)
        keep = kept_columns(occ)
        tiles = present_tiles(occ, keep, hw.cols)
        all_cols = occ.shape[2]
        grid = occ.shape[0] * occ.shape[1] * len(tile_bounds(len(keep), hw.cols))
        if len(keep) == all_cols and len(tiles) == grid:
            return
        new_plan = dataclasses.replace(
            plan, columns=None if len(keep) == all_cols else tuple(int(k) for k in keep),
            tiles=None if len(tiles) == grid else tuple(tiles),
        )
        rewriter.replace(op, [build_layer(op.input, op.weight, name=op.layer.data, kind=op.kind.data,
                                          w_bits=op.value("w_bits"), a_bits=op.value("a_bits"),
                                          dynamic=False, hw=hw, plan=new_plan)])


@dataclass(frozen=True)
class XbarSkipZeroWeightsPass(ModulePass):
    """Drop all-zero weight slices (columns) and all-zero tiles of static layers."""

    name = "xbar-skip-zero-weights"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        PatternRewriteWalker(SkipZeroWeights(), apply_recursively=False).rewrite_module(op)
