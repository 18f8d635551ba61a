"""The paper's closed-form latency model of a crossbar layer and of a network.

For a layer ``(m, n, P, H)`` at weight bits ``w`` and input-activation bits ``a`` on a
:class:`~cimc.hw.Hardware` with an ``M x N`` crossbar (``M = hw.cols`` outputs, ``N = hw.rows``
inputs), cell bits ``c``, DAC bits ``d``::

    S    = ceil(w / c)
    cols = m * S          (dc: 2 * m * S;  of: m * S + 1)
    rows = n              (dr: 2 * n)
    X    = ceil(cols / M) * ceil(rows / N)        # tiles programmed per repeat
    E    = P * X * ceil(a / d)                    # crossbar cycles per repeat
    L    = H * (X * t_w + E * t_e)                # microseconds

:class:`LayerCost` reports ``writes`` and ``executes`` as totals over the ``H`` repeats, so
``writes * t_w + executes * t_e == latency_us``.

Beyond the paper, cimc counts converter activity (the bit-serial interpreter counts the same):

* ``adc_conversions``: for every cycle, the number of physical columns in use in that tile, i.e.
  ``H * P * ceil(a/d) * phys_cols * row_tiles``;
* ``dac_activations``: for every cycle, the number of rows in use in that tile, i.e.
  ``H * P * ceil(a/d) * phys_rows * col_tiles``;
* ``lossless_adc_bits``: the ADC bits needed so that no conversion of the layer clips (from the
  tallest tile's rows in use).

Layer descriptors (``m`` outputs, ``n`` inputs, ``P`` MVMs per inference, ``H`` repeats):
Conv2d is ``(C_out, C_in * kh * kw, H_out * W_out, 1)``, Linear on T tokens ``(out, in, T, 1)``,
attention ``Q @ K^T`` ``(T, head_dim, T, heads)`` and ``A @ V`` ``(head_dim, T, T, heads)``.

Grouped and depthwise convolutions (not covered by the paper): cimc maps a conv with ``G``
groups as ``G`` independent layers, one per group, each with ``m = C_out / G``,
``n = C_in / G * kh * kw`` and ``P = H_out * W_out``; that is, the descriptor has ``H = G``.
Groups never share a tile (a depthwise conv with 64 channels is 64 tiny ``(1, kh*kw)`` layers,
each programmed and streamed on its own), which is what a crossbar without block-diagonal
packing must do and is the conservative choice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cimc.errors import CimcError
from cimc.hw import Hardware, lossless_adc_bits

KINDS: tuple[str, ...] = ("conv", "depthwise", "linear", "matmul")
"""Layer kinds: conv (incl. grouped), depthwise conv, linear/gemm, attention matmul."""


def ceil_div(a: int, b: int) -> int:
    """``ceil(a / b)`` for non-negative integers, exactly."""
    return -(-a // b)


def slices(w_bits: int, cell_bits: int) -> int:
    """Weight slices per weight: ``S = ceil(w / c)``."""
    return ceil_div(w_bits, cell_bits)


@dataclass(frozen=True)
class LayerDesc:
    """A crossbar layer: ``m`` outputs, ``n`` inputs, ``P`` MVMs per inference, ``H`` repeats.

    A conv with ``G`` groups is ``G`` independent layers: ``m = C_out / G``,
    ``n = C_in / G * kh * kw``, ``P = H_out * W_out`` and ``H = G`` (``kind="depthwise"`` when
    ``G == C_in``).
    """

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
class LayerCost:
    """The cost of one layer at given bits; ``writes``/``executes`` are totals over ``H``."""

    name: str
    w_bits: int
    a_bits: int
    slices: int
    phys_rows: int
    phys_cols: int
    row_tiles: int
    col_tiles: int
    writes: int
    executes: int
    latency_us: float
    adc_conversions: int
    dac_activations: int
    lossless_adc_bits: int

    @property
    def tiles(self) -> int:
        """Tiles programmed per repeat (the paper's ``X``)."""
        return self.row_tiles * self.col_tiles


@dataclass(frozen=True)
class NetworkCost:
    """Per-layer costs and their totals."""

    layers: tuple[LayerCost, ...]
    writes: int
    executes: int
    latency_us: float
    adc_conversions: int
    dac_activations: int


def physical_shape(m: int, n: int, w_bits: int, cell_bits: int, mapping: str) -> tuple[int, int]:
    """``(phys_rows, phys_cols)`` of a layer's weight matrix on the crossbar."""
    s = slices(w_bits, cell_bits)
    if mapping == "dc":
        return n, 2 * m * s
    if mapping == "dr":
        return 2 * n, m * s
    if mapping == "of":
        return n, m * s + 1
    raise CimcError(f"unknown mapping '{mapping}'")


def _check_bits(desc: LayerDesc, w_bits: int, a_bits: int) -> None:
    for label, bits in (("weight", w_bits), ("activation", a_bits)):
        if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= 32:
            raise CimcError(f"layer '{desc.name}': {label} bits {bits!r} not an integer in 1..32")


def layer_cost(desc: LayerDesc, w_bits: int, a_bits: int, hw: Hardware) -> LayerCost:
    """The paper's latency of one layer (cim-model.md section 3) plus converter counts."""
    w_bits, a_bits = int(w_bits), int(a_bits)
    _check_bits(desc, w_bits, a_bits)
    s = slices(w_bits, hw.cell_bits)
    phys_rows, phys_cols = physical_shape(desc.m, desc.n, w_bits, hw.cell_bits, hw.mapping)
    row_tiles = ceil_div(phys_rows, hw.rows)
    col_tiles = ceil_div(phys_cols, hw.cols)
    tiles = row_tiles * col_tiles
    chunks = ceil_div(a_bits, hw.dac_bits)
    cycles_per_tile = desc.P * chunks
    executes = desc.P * tiles * chunks
    return LayerCost(
        name=desc.name,
        w_bits=w_bits,
        a_bits=a_bits,
        slices=s,
        phys_rows=phys_rows,
        phys_cols=phys_cols,
        row_tiles=row_tiles,
        col_tiles=col_tiles,
        writes=desc.H * tiles,
        executes=desc.H * executes,
        latency_us=desc.H * (tiles * hw.t_write_us + executes * hw.t_exec_us),
        adc_conversions=desc.H * cycles_per_tile * phys_cols * row_tiles,
        dac_activations=desc.H * cycles_per_tile * phys_rows * col_tiles,
        lossless_adc_bits=lossless_adc_bits(
            min(phys_rows, hw.rows), hw.cell_bits, hw.dac_bits, hw.mapping
        ),
    )


def _policy_pairs(descs: Sequence[LayerDesc], policy: object) -> list[tuple[int, int]]:
    pairs = [tuple(int(b) for b in row) for row in policy]  # type: ignore[union-attr]
    if len(pairs) != len(descs):
        raise CimcError(f"policy has {len(pairs)} rows but the network has {len(descs)} crossbar layers")
    for i, pair in enumerate(pairs):
        if len(pair) != 2:
            raise CimcError(f"policy row {i} is {pair!r}, expected [w_bits, a_bits]")
    return pairs  # type: ignore[return-value]


def network_cost(descs: Sequence[LayerDesc], policy: object, hw: Hardware) -> NetworkCost:
    """Per-layer costs and totals; ``policy`` is an ``(L, 2)`` array-like of ``[w_bits, a_bits]``."""
    layers = tuple(
        layer_cost(desc, w, a, hw) for desc, (w, a) in zip(descs, _policy_pairs(descs, policy))
    )
    return NetworkCost(
        layers=layers,
        writes=sum(c.writes for c in layers),
        executes=sum(c.executes for c in layers),
        latency_us=sum(c.latency_us for c in layers),
        adc_conversions=sum(c.adc_conversions for c in layers),
        dac_activations=sum(c.dac_activations for c in layers),
    )


def uniform_policy(descs: Sequence[LayerDesc], w_bits: int = 8, a_bits: int = 8) -> list[list[int]]:
    """The same ``[w_bits, a_bits]`` for every layer (the 8-bit baseline by default)."""
    return [[w_bits, a_bits] for _ in descs]


def speedup(descs: Sequence[LayerDesc], policy: object, hw: Hardware) -> float:
    """``L(all W8A8) / L(policy)`` on the same hardware."""
    base = network_cost(descs, uniform_policy(descs), hw).latency_us
    cost = network_cost(descs, policy, hw).latency_us
    if cost <= 0:
        raise CimcError("policy latency is zero (all timings 0?): speedup undefined")
    return base / cost
