"""``xbar-pack``: pack small matrices into shared crossbars (:mod:`cimc.target.packing`).

* **Block-diagonal repeats** (``blocks``): a layer whose ``H`` repeats (groups of a grouped or
  depthwise convolution, heads of an attention product) are each much smaller than a tile is
  rebuilt with ``k`` repeats per block-diagonal matrix, the largest ``k`` that fits one tile.
  The ``k`` sub-matrices have disjoint rows and columns and see their vectors at the same time,
  so one cycle serves all of them: ``ceil(H/k)`` programmed repeats, fewer writes *and* cycles.
* **Shared arrays** (``share``): consecutive layers (of one function) of one tile each (static
  weights) are placed
  side by side in one array (shelf packing in program order); the first layer's write programs
  the whole group (``xbar.program {group, offset}``) and the others find it programmed
  (``{shared}``): fewer writes, the same cycles. Only consecutive layers share, so the array is
  not overwritten in between even on one crossbar; the executor checks that it still holds the
  group.

Both are exact: every product reads only its own rows and columns.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp, StringAttr, UnitAttr
from xdsl.passes import ModulePass
from xdsl.rewriter import Rewriter

from cimc.analysis import analyse_layer, module_layers
from cimc.dialects import xbar
from cimc.dialects.cimq import i64_array
from cimc.passes.xbar_tile import build_layer, layer_crossbar, read_plan
from cimc.target.packing import max_blocks, shelf_pack


def _pack_repeats(module: ModuleOp) -> None:
    for layer in module_layers(module):
        plan = read_plan(layer)
        h = layer.value("H")
        if plan.blocks > 1 or plan.columns is not None or plan.tiles is not None or h < 2:
            continue
        hw = layer_crossbar(layer)
        k = max_blocks(h, layer.value("n"), layer.value("m"), layer.value("slices"), hw.mapping, hw.rows, hw.cols)
        if k < 2:
            continue
        new = build_layer(layer.input, layer.weight, name=layer.layer.data, kind=layer.kind.data,
                          w_bits=layer.value("w_bits"), a_bits=layer.value("a_bits"),
                          dynamic=layer.is_dynamic, hw=hw, plan=dataclasses.replace(plan, blocks=k))
        Rewriter.replace_op(layer, new)


def _single_tile(layer: xbar.LayerOp) -> tuple[int, int] | None:
    """``(rows, cols)`` in use of a static layer programmed as one tile, else None."""
    if layer.is_dynamic or "group" in read_plan(layer).program:
        return None
    geom = analyse_layer(layer).geometry
    if geom.repeats * geom.tiles != 1:
        return None
    return min(geom.phys_rows, geom.tile_rows), min(geom.phys_cols, geom.tile_cols)


def _share_arrays(module: ModuleOp) -> None:
    runs: list[list[tuple[xbar.LayerOp, tuple[int, int]]]] = [[]]
    block = None
    for layer in module_layers(module):
        size = _single_tile(layer)
        if size is None or layer.parent_block() is not block:  # consecutive in one block only
            runs.append([])
        block = layer.parent_block()
        if size is not None:
            runs[-1].append((layer, size))
    n_groups = 0
    for run in runs:
        if len(run) < 2:
            continue
        hw = layer_crossbar(run[0][0])
        places = shelf_pack([s for _, s in run], hw.rows, hw.cols)
        members: dict[int, list[tuple[xbar.LayerOp, int, int]]] = {}
        for (layer, _), (arr, r0, c0) in zip(run, places):
            members.setdefault(arr, []).append((layer, r0, c0))
        for group in members.values():
            if len(group) < 2:
                continue
            name = f"pack{n_groups}"
            n_groups += 1
            for i, (layer, r0, c0) in enumerate(group):
                prog = next(op for op in layer.body.walk() if isinstance(op, xbar.ProgramOp))
                prog.properties["group"] = StringAttr(name)
                prog.properties["offset"] = i64_array([r0, c0])
                if i:
                    prog.properties["shared"] = UnitAttr()


@dataclass(frozen=True)
class XbarPackPass(ModulePass):
    """Block-diagonal packing of repeats and shared arrays for consecutive one-tile layers."""

    name = "xbar-pack"

    blocks: bool = True
    share: bool = True

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        if self.blocks:
            _pack_repeats(op)
        if self.share:
            _share_arrays(op)
