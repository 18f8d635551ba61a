"""The ``xbar`` dialect: crossbar products and the explicit bit-serial crossbar program.

Two IR levels use it.

``xbar-mm`` (from ``convert-cimq-to-xbar``): every crossbar product is one layer-level integer
matrix product on a 4-D operand ``[B, H, P, n]`` (batch, repeats, MVMs, inputs):

* :class:`MatMulOp` with a static weight ``[H, n, m]`` (conv via :class:`Im2ColOp` /
  :class:`Col2ImOp`, linear via ``cimq.reshape`` / :class:`UnpackOp`);
* :class:`MatMulDynOp` whose right operand ``[B, H, n, m]`` is written to the crossbar at run
  time (attention; ``H`` = heads).

A grouped / depthwise convolution with ``G`` groups is ``H = G`` repeats of an
``(m = C_out/G, n = C_in/G*kh*kw, P = Ho*Wo)`` layer: groups never share a tile.

``xbar`` (from ``xbar-tile``): every product is an :class:`LayerOp` whose region is the crossbar
program with its loops kept in the IR (``scf.for`` over repeats, row tiles, column tiles and
DAC input chunks)::

    %g, %r, %k = xbar.map %w {...} : ... -> !xbar.cells<1x27x32, c4> // sliced + mapped weights
    %xu  = xbar.offset %x {a_bits = 8, signed}                      // offset-encoded inputs
    %buf = xbar.alloc : !xbar.buf<1x32>                             // physical column sums
    scf.for %h, %rt, %ct {
      %t = xbar.program %g[%h, %rt, %ct]                            // one tile write
      scf.for %i {
        %p = xbar.plane %xu[%h, %rt], %i                            // DAC chunk i, all vectors
        %c = xbar.cycle %t, %p                                      // one cycle per vector, ADC
        xbar.shift_add %buf[%h, %ct], %c, %i
      }
    }
    %y = xbar.recombine %buf, %r, %k                                // slices, signs, offset
    %z = xbar.zp_correct %y, %x {w_zp = 100}                        // a weight zero point

Every op does a whole tile's or plane's work for all ``B * P`` vectors. Integer data are builtin
integer tensors (``i32``); quantized operands keep their ``!cimq.q`` types (the weight of
:class:`MatMulOp` is on its integer grid: scale 1). Constants are ``#cimq.blob`` references
(:mod:`cimc.weights`) or inline ``dense``.

Batch: types carry the module's static batch; the executor accepts any batch at run time
(axis 0). Static tiles are programmed once per inference and used for every vector of the batch;
dynamic tiles (:class:`MapOp` of a run-time operand) are programmed once per batch element.

The dialect is a package laid out like xDSL's larger dialects: :mod:`.attrs` (types),
:mod:`.helpers` (verifier helpers), and the ops by level in :mod:`.ops_mm` (``xbar-mm``),
:mod:`.ops_layer` and :mod:`.ops_tile` (``xbar``). This module defines the
:class:`~xdsl.ir.Dialect` and re-exports every op and type, so ``xbar.LayerOp`` keeps working.
"""

from __future__ import annotations

from xdsl.ir import Dialect

from cimc.dialects.xbar.attrs import (
    BufType,
    CellsType,
    ColumnsType,
    PlaneType,
    TileType,
)
from cimc.dialects.xbar.helpers import (
    i64_attr,
    operand_bits,
    unsigned_cells,
)
from cimc.dialects.xbar.ops_layer import (
    AllocOp,
    ConstOp,
    LayerOp,
    MapOp,
    OffsetOp,
    PackBlocksOp,
    UnpackBlocksOp,
    YieldOp,
)
from cimc.dialects.xbar.ops_mm import (
    Col2ImOp,
    Im2ColOp,
    MatMulDynOp,
    MatMulOp,
    UnpackOp,
)
from cimc.dialects.xbar.ops_tile import (
    PROGRAM_PLAN,
    CycleOp,
    PlaneOp,
    ProgramOp,
    RecombineOp,
    ShiftAddOp,
    TileAtOp,
    ZpCorrectOp,
)

XBAR = Dialect(
    "xbar",
    [
        Im2ColOp,
        Col2ImOp,
        UnpackOp,
        MatMulOp,
        MatMulDynOp,
        LayerOp,
        YieldOp,
        ConstOp,
        MapOp,
        OffsetOp,
        AllocOp,
        PackBlocksOp,
        UnpackBlocksOp,
        TileAtOp,
        ProgramOp,
        PlaneOp,
        CycleOp,
        ShiftAddOp,
        RecombineOp,
        ZpCorrectOp,
    ],
    [CellsType, TileType, PlaneType, ColumnsType, BufType],
)

#: The ops that are hardware work (everything else executes on the host CPU).
CROSSBAR_OPS = (MatMulOp, MatMulDynOp, LayerOp)

__all__ = [
    "AllocOp",
    "BufType",
    "CROSSBAR_OPS",
    "CellsType",
    "Col2ImOp",
    "ColumnsType",
    "ConstOp",
    "CycleOp",
    "Im2ColOp",
    "LayerOp",
    "MapOp",
    "MatMulDynOp",
    "MatMulOp",
    "OffsetOp",
    "PROGRAM_PLAN",
    "PackBlocksOp",
    "PlaneOp",
    "PlaneType",
    "ProgramOp",
    "RecombineOp",
    "ShiftAddOp",
    "TileAtOp",
    "TileType",
    "UnpackBlocksOp",
    "UnpackOp",
    "XBAR",
    "YieldOp",
    "ZpCorrectOp",
    "i64_attr",
    "operand_bits",
    "unsigned_cells",
]
