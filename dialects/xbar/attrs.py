"""Types of ``xbar``: mapped cells, tiles, DAC planes, ADC columns and accumulator buffers.
"""

from __future__ import annotations

from xdsl.dialects.builtin import (
    IntAttr,
)
from xdsl.ir import Attribute, ParametrizedAttribute, TypeAttribute
from xdsl.irdl import (
    irdl_attr_definition,
)
from xdsl.parser import AttrParser
from xdsl.printer import Printer
from xdsl.utils.exceptions import VerifyException


def _parse_shape(parser: AttrParser, count: int, what: str) -> list[int]:
    """``AxBxC``: ``count`` static dimensions separated by ``x``."""
    dims = [parser.parse_shape_dimension(allow_dynamic=False)]
    while len(dims) < count:
        parser.parse_shape_delimiter()
        dims.append(parser.parse_shape_dimension(allow_dynamic=False))
    return dims


def _parse_tagged(parser: AttrParser, tag: str, what: str) -> int:
    word = parser.parse_identifier(f"{what} such as {tag}4")
    if not word.startswith(tag) or not word[len(tag):].isdigit():
        parser.raise_error(f"{what}: expected {tag}<bits> such as {tag}4, got '{word}'")
    return int(word[len(tag):])


@irdl_attr_definition
class CellsType(ParametrizedAttribute, TypeAttribute):
    """``!xbar.cells<HxRxC, c4>``: mapped cell levels of a layer, ``H`` repeats of an ``R x C``
    physical matrix (rows = crossbar inputs, columns = crossbar outputs) of ``c``-bit cells.

    Dynamic layers hold one such stack per batch element at run time.
    """

    name = "xbar.cells"
    repeats: IntAttr
    rows: IntAttr
    cols: IntAttr
    cell_bits: IntAttr

    def __init__(self, repeats: int, rows: int, cols: int, cell_bits: int):
        super().__init__(IntAttr(repeats), IntAttr(rows), IntAttr(cols), IntAttr(cell_bits))

    @classmethod
    def parse_parameters(cls, parser: AttrParser) -> list[Attribute]:
        with parser.in_angle_brackets():
            h, r, c = _parse_shape(parser, 3, "!xbar.cells")
            parser.parse_punctuation(",")
            bits = _parse_tagged(parser, "c", "!xbar.cells cell bits")
        return [IntAttr(h), IntAttr(r), IntAttr(c), IntAttr(bits)]

    def print_parameters(self, printer: Printer) -> None:
        printer.print_string(
            f"<{self.repeats.data}x{self.rows.data}x{self.cols.data}, c{self.cell_bits.data}>"
        )

    def verify(self) -> None:
        if min(self.repeats.data, self.rows.data, self.cols.data) < 1:
            raise VerifyException("!xbar.cells dimensions must be positive")
        if not 1 <= self.cell_bits.data <= 8:
            raise VerifyException(f"!xbar.cells: cell bits {self.cell_bits.data} not in 1..8")


@irdl_attr_definition
class TileType(ParametrizedAttribute, TypeAttribute):
    """``!xbar.tile<256x256, c4>``: one programmed crossbar (``rows`` inputs x ``cols`` outputs,
    ``c``-bit cells). An edge tile uses only part of it."""

    name = "xbar.tile"
    rows: IntAttr
    cols: IntAttr
    cell_bits: IntAttr

    def __init__(self, rows: int, cols: int, cell_bits: int):
        super().__init__(IntAttr(rows), IntAttr(cols), IntAttr(cell_bits))

    @classmethod
    def parse_parameters(cls, parser: AttrParser) -> list[Attribute]:
        with parser.in_angle_brackets():
            r, c = _parse_shape(parser, 2, "!xbar.tile")
            parser.parse_punctuation(",")
            bits = _parse_tagged(parser, "c", "!xbar.tile cell bits")
        return [IntAttr(r), IntAttr(c), IntAttr(bits)]

    def print_parameters(self, printer: Printer) -> None:
        printer.print_string(f"<{self.rows.data}x{self.cols.data}, c{self.cell_bits.data}>")

    def verify(self) -> None:
        if min(self.rows.data, self.cols.data) < 1:
            raise VerifyException("!xbar.tile dimensions must be positive")
        if not 1 <= self.cell_bits.data <= 8:
            raise VerifyException(f"!xbar.tile: cell bits {self.cell_bits.data} not in 1..8")


@irdl_attr_definition
class PlaneType(ParametrizedAttribute, TypeAttribute):
    """``!xbar.plane<256, d1>``: one DAC input chunk of ``d`` bits on up to ``rows`` crossbar
    rows, for every vector of the layer."""

    name = "xbar.plane"
    rows: IntAttr
    dac_bits: IntAttr

    def __init__(self, rows: int, dac_bits: int):
        super().__init__(IntAttr(rows), IntAttr(dac_bits))

    @classmethod
    def parse_parameters(cls, parser: AttrParser) -> list[Attribute]:
        with parser.in_angle_brackets():
            rows = parser.parse_integer(allow_boolean=False, allow_negative=False)
            parser.parse_punctuation(",")
            bits = _parse_tagged(parser, "d", "!xbar.plane DAC bits")
        return [IntAttr(rows), IntAttr(bits)]

    def print_parameters(self, printer: Printer) -> None:
        printer.print_string(f"<{self.rows.data}, d{self.dac_bits.data}>")

    def verify(self) -> None:
        if self.rows.data < 1 or not 1 <= self.dac_bits.data <= 8:
            raise VerifyException("!xbar.plane needs rows >= 1 and DAC bits in 1..8")


@irdl_attr_definition
class ColumnsType(ParametrizedAttribute, TypeAttribute):
    """``!xbar.columns<256>``: the ADC codes of up to ``cols`` columns of one cycle, for every
    vector of the layer."""

    name = "xbar.columns"
    cols: IntAttr

    def __init__(self, cols: int):
        super().__init__(IntAttr(cols))

    @classmethod
    def parse_parameters(cls, parser: AttrParser) -> list[Attribute]:
        with parser.in_angle_brackets():
            cols = parser.parse_integer(allow_boolean=False, allow_negative=False)
        return [IntAttr(cols)]

    def print_parameters(self, printer: Printer) -> None:
        printer.print_string(f"<{self.cols.data}>")


@irdl_attr_definition
class BufType(ParametrizedAttribute, TypeAttribute):
    """``!xbar.buf<HxC>``: digital accumulators of ``C`` physical columns for ``H`` repeats (and
    every vector), where shifted ADC codes of all chunks and row tiles are added."""

    name = "xbar.buf"
    repeats: IntAttr
    cols: IntAttr

    def __init__(self, repeats: int, cols: int):
        super().__init__(IntAttr(repeats), IntAttr(cols))

    @classmethod
    def parse_parameters(cls, parser: AttrParser) -> list[Attribute]:
        with parser.in_angle_brackets():
            h, c = _parse_shape(parser, 2, "!xbar.buf")
        return [IntAttr(h), IntAttr(c)]

    def print_parameters(self, printer: Printer) -> None:
        printer.print_string(f"<{self.repeats.data}x{self.cols.data}>")
