"""Test helper: small cimq modules with one crossbar layer (or a few), built as IR text.

Weights are random integers in the narrow signed range, written as blobs and bound to the parsed
module from a weight store of the builder's own.
Scales are powers of two so that accumulator scales are exact.
"""

from __future__ import annotations

import numpy as np

from cimc.ir_io import bind_blobs, parse_module_text
from cimc.weights import WeightStore

SX, SW = 0.5, 0.25


def q(bits: int, signed: bool, scale: float = SX, narrow: bool = False) -> str:
    return f"!cimq.q<{'s' if signed else 'u'}{bits}{'n' if narrow else ''}:{scale}>"


def t(shape, elem: str) -> str:
    return "tensor<" + "x".join(str(s) for s in shape) + f"x{elem}>"


def weights(rng: np.random.Generator, shape, w_bits: int, *, zero: bool = False) -> np.ndarray:
    bound = (1 << (w_bits - 1)) - 1
    if zero:
        return np.zeros(shape, dtype=np.int8)
    return rng.integers(-bound, bound + 1, shape).astype(np.int8)


def blob(store: WeightStore, arr: np.ndarray, name: str) -> str:
    return f'#cimq.blob<"{name}", "{store.put(arr)}">'


def parse_bound(src: str, store: WeightStore):
    """Parse IR text and fill its blobs from ``store``."""
    module = parse_module_text(src)
    assert not bind_blobs(module, store)
    return module


def conv_module(
    rng, *, cin: int, cout: int, k: int, size: int, stride: int = 1, pad: int = 0, groups: int = 1,
    w_bits: int = 8, a_bits: int = 8, a_signed: bool = False, zero: bool = False, name: str = "conv",
):
    """``main(x: [1, cin, size, size])`` -> accumulator of one ``cimq.conv``."""
    store = WeightStore()
    ho = (size + 2 * pad - k) // stride + 1
    W = weights(rng, (cout, cin // groups, k, k), w_bits, zero=zero)
    xt = t([1, cin, size, size], "f32")
    qt = t([1, cin, size, size], q(a_bits, a_signed))
    wt = t(W.shape, q(w_bits, True, SW, True))
    yt = t([1, cout, ho, ho], q(32, True, SX * SW))
    src = f"""
func.func @main(%x: {xt}) -> {yt} {{
  %q = cimq.quantize %x : ({xt}) -> {qt}
  %w = cimq.const {blob(store, W, name + '.weight')} : {wt}
  %a = cimq.conv %q, %w {{strides = array<i64: {stride}, {stride}>, pads = array<i64: {pad}, {pad}, {pad}, {pad}>, dilations = array<i64: 1, 1>, group = {groups} : i64, layer = "{name}"}} : ({qt}, {wt}) -> {yt}
  func.return %a : {yt}
}}"""
    return parse_bound(src, store), [rng.standard_normal((1, cin, size, size)).astype(np.float32) * 3]


def linear_module(
    rng, *, k: int, n: int, tokens: int = 0, w_bits: int = 8, a_bits: int = 8,
    a_signed: bool = False, zero: bool = False, name: str = "fc",
):
    """``main(x: [1, k] or [1, tokens, k])`` -> accumulator of one ``cimq.matmul``."""
    store = WeightStore()
    lead = [1, tokens] if tokens else [1]
    W = weights(rng, (k, n), w_bits, zero=zero)
    xt, qt = t(lead + [k], "f32"), t(lead + [k], q(a_bits, a_signed))
    wt, yt = t([k, n], q(w_bits, True, SW, True)), t(lead + [n], q(32, True, SX * SW))
    src = f"""
func.func @main(%x: {xt}) -> {yt} {{
  %q = cimq.quantize %x : ({xt}) -> {qt}
  %w = cimq.const {blob(store, W, name + '.weight')} : {wt}
  %a = cimq.matmul %q, %w {{layer = "{name}"}} : ({qt}, {wt}) -> {yt}
  func.return %a : {yt}
}}"""
    return parse_bound(src, store), [rng.standard_normal(lead + [k]).astype(np.float32) * 3]


def attention_module(
    rng, *, heads: int, tokens: int, dim: int, keys: int | None = None, w_bits: int = 8,
    a_bits: int = 8, a_signed: bool = True, rank: int = 4, name: str = "qk",
):
    """``main(a: [1, heads, tokens, dim], b: [1, heads, dim, keys])`` -> ``cimq.matmul_act``.

    ``rank=3`` drops the heads axis (``heads`` must be 1).
    """
    store = WeightStore()
    keys = keys or tokens
    lead = [1, heads] if rank == 4 else [1]
    at, bt = lead + [tokens, dim], lead + [dim, keys]
    aq, bq = t(at, q(a_bits, a_signed)), t(bt, q(w_bits, True, SW))
    yt = t(lead + [tokens, keys], q(32, True, SX * SW))
    src = f"""
func.func @main(%a: {t(at, 'f32')}, %b: {t(bt, 'f32')}) -> {yt} {{
  %qa = cimq.quantize %a : ({t(at, 'f32')}) -> {aq}
  %qb = cimq.quantize %b : ({t(bt, 'f32')}) -> {bq}
  %y = cimq.matmul_act %qa, %qb {{layer = "{name}"}} : ({aq}, {bq}) -> {yt}
  func.return %y : {yt}
}}"""
    ins = [rng.standard_normal(at).astype(np.float32) * 4, rng.standard_normal(bt).astype(np.float32) * 4]
    return parse_bound(src, store), ins
