"""The paper's layer descriptor ``(m, n, P, H)`` of an imported layer, from its shapes alone.

Tests compare the compiled program's counts with the closed form on descriptors derived here,
independently of the compiler's own lowering.
"""

from __future__ import annotations

import math

from cimc.target import LayerDesc


def descriptor(info) -> LayerDesc:
    """``(m, n, P, H)`` of a :class:`cimc.frontend.LayerInfo`."""
    s = info.shapes
    out = s["output"]
    if info.kind == "conv":
        o, ig, kh, kw = s["weight"]
        groups = s["input"][1] // ig
        return LayerDesc(info.name, o // groups, ig * kh * kw, out[2] * out[3], groups, "conv")
    if info.kind == "matmul_act":
        heads = math.prod(out[1:-2])
        return LayerDesc(info.name, s["weight"][-1], s["weight"][-2], out[-2], heads, "matmul")
    k, n = s["weight"]
    return LayerDesc(info.name, n, k, math.prod(out[1:-1]), 1, "linear")
