"""Per-layer crossbar geometry: the one definition of slices, physical shape, tiles and chunks.

A crossbar layer is the paper's descriptor ``(m, n, P, H)`` (:class:`LayerDesc`: ``m`` outputs,
``n`` inputs, ``P`` MVMs per inference, ``H`` repeats). At weight bits ``w`` and input bits ``a``
on a :class:`~cimc.target.hw.Hardware` with an ``M x N`` crossbar (``M = hw.cols`` outputs,
``N = hw.rows`` inputs), cell bits ``c`` and DAC bits ``d`` (:func:`layer_geometry`)::

    S     = ceil(w / c)            (narrow magnitude slicing, dc/dr: ceil((w - 1) / c))
    cols  = 2 * m * S  (dc)    m * S  (dr)    m * S + 1  (of)
    rows  = n          (dc)    2 * n  (dr)    n          (of)
    tiles = ceil(rows / N) row tiles x ceil(cols / M) column tiles
    chunks = ceil(a / d)           (input bit planes, one crossbar cycle each)

Layer descriptors: Conv2d is ``(C_out, C_in * kh * kw, H_out * W_out, 1)``, Linear on ``T``
tokens ``(out, in, T, 1)``, attention ``Q @ K^T`` ``(T, head_dim, T, heads)`` and ``A @ V``
``(head_dim, T, T, heads)``. A conv with ``G`` groups (not covered by the paper) is ``G``
independent layers: ``m = C_out / G``, ``n = C_in / G * kh * kw``, ``H = G``; groups never share
a tile (``kind = "depthwise"`` when every group has one input channel).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from cimc.errors import CimcError
from cimc.target.hw import MAPPINGS

if TYPE_CHECKING:
    from cimc.target.hw import Hardware

KINDS: tuple[str, ...] = ("conv", "depthwise", "linear", "matmul")
"""Layer kinds: conv (incl. grouped), depthwise conv, linear/gemm, attention matmul."""


def ceil_div(a: int, b: int) -> int:
    """``ceil(a / b)`` for non-negative integers, exactly."""
    return -(-a // b)


def slices(w_bits: int, cell_bits: int, *, narrow: bool = False) -> int:
    """Weight slices per weight: ``S = ceil(w / c)``; ``narrow``: ``ceil((w - 1) / c)``.

    Narrow slicing stores only the magnitude of a narrow-range weight (``|w| <= 2^(w-1) - 1``):
    the differential mappings (``dc``, ``dr``) keep the sign in the column or row pair.
    """
    return ceil_div(w_bits - 1 if narrow else w_bits, cell_bits)


def physical_shape(n: int, m: int, n_slices: int, mapping: str) -> tuple[int, int]:
    """``(rows, cols)`` of an ``n x m`` weight with ``n_slices`` slices on the crossbar."""
    if mapping == "dc":
        return n, 2 * m * n_slices
    if mapping == "dr":
        return 2 * n, m * n_slices
    if mapping == "of":
        return n, m * n_slices + 1
    raise CimcError(f"unknown mapping '{mapping}' (known: {', '.join(MAPPINGS)})")


def chunks(a_bits: int, dac_bits: int) -> int:
    """Input bit planes streamed per vector: ``ceil(a / d)``."""
    return ceil_div(a_bits, dac_bits)


def tile_bounds(total: int, size: int) -> list[tuple[int, int]]:
    """``[lo, hi)`` of every tile of ``size`` along an axis of ``total`` (the last may be short)."""
    return [(lo, min(lo + size, total)) for lo in range(0, total, size)]


@dataclass(frozen=True)
class LayerDesc:
    """A crossbar layer: ``m`` outputs, ``n`` inputs, ``P`` MVMs per inference, ``H`` repeats."""

    name: str
    m: int
    n: int
    P: int = 1
    H: int = 1
    kind: str = "linear"

    def __post_init__(self) -> None:
        for field in ("m", "n", "P", "H"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise CimcError(f"layer '{self.name}': {field} = {value!r} is not a positive integer")
        if self.kind not in KINDS:
            raise CimcError(f"layer '{self.name}': kind '{self.kind}' is not one of {', '.join(KINDS)}")


@dataclass(frozen=True)
class LayerGeometry:
    """A layer at given bits on a crossbar: the shapes and trip counts of its program."""

    desc: LayerDesc
    w_bits: int
    a_bits: int
    slices: int
    phys_rows: int
    phys_cols: int
    tile_rows: int
    tile_cols: int
    row_tiles: int
    col_tiles: int
    chunks: int
    blocks: int = 1
    """Repeats packed block-diagonally into one matrix (``xbar-pack``); 1 = none."""
    tile_list: tuple[tuple[int, int, int], ...] | None = None
    """The programmed tiles ``(h, rt, ct)`` when all-zero ones are skipped; None: every tile."""

    @property
    def name(self) -> str:
        return self.desc.name

    @property
    def repeats(self) -> int:
        """Programmed repeats of the physical matrix: ``ceil(H / blocks)``."""
        return ceil_div(self.desc.H, self.blocks)

    @property
    def tiles(self) -> int:
        """Tiles programmed per programmed repeat (the paper's ``X``)."""
        return self.row_tiles * self.col_tiles

    @property
    def tallest_rows(self) -> int:
        """Rows in use in the tallest tile (what a lossless ADC must resolve)."""
        return min(self.phys_rows, self.tile_rows)


def _check_bits(name: str, w_bits: int, a_bits: int) -> None:
    for label, bits in (("weight", w_bits), ("activation", a_bits)):
        if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= 32:
            raise CimcError(f"layer '{name}': {label} bits {bits!r} not an integer in 1..32")


def layer_geometry(
    desc: LayerDesc, w_bits: int, a_bits: int, hw: Hardware, *, narrow: bool = False,
    blocks: int = 1, kept_cols: int | None = None, tiles: tuple[tuple[int, int, int], ...] | None = None,
) -> LayerGeometry:
    """The geometry of ``desc`` at ``w_bits``/``a_bits`` on ``hw`` (see the module docstring).

    The ``xbar-opt`` passes change it: ``blocks`` repeats packed into one block-diagonal
    ``blocks*n x blocks*m`` matrix (``ceil(H/blocks)`` programmed repeats), ``kept_cols`` of the
    physical columns kept (all-zero weight slices dropped), and ``tiles`` listing the programmed
    tiles (all-zero tiles skipped).
    """
    w_bits, a_bits = int(w_bits), int(a_bits)
    _check_bits(desc.name, w_bits, a_bits)
    s = slices(w_bits, hw.cell_bits, narrow=narrow)
    if s < 1:
        raise CimcError(f"layer '{desc.name}': {w_bits}-bit weights leave no magnitude bits")
    rows, cols = physical_shape(blocks * desc.n, blocks * desc.m, s, hw.mapping)
    if kept_cols is not None:
        cols = kept_cols
    return LayerGeometry(
        desc=desc, w_bits=w_bits, a_bits=a_bits, slices=s, phys_rows=rows, phys_cols=cols,
        tile_rows=hw.rows, tile_cols=hw.cols, row_tiles=ceil_div(rows, hw.rows),
        col_tiles=ceil_div(cols, hw.cols), chunks=chunks(a_bits, hw.dac_bits), blocks=blocks,
        tile_list=tiles,
    )
