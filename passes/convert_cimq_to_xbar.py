"""``convert-cimq-to-xbar``: every crossbar product becomes a layer-level integer product.

* ``cimq.conv`` -> ``xbar.im2col`` (host) + ``xbar.matmul`` with the static weight reshaped to
  ``[G, C_in/G*kh*kw, C_out/G]`` + ``xbar.col2im`` (host). A conv with ``G`` groups is ``H = G``
  repeats of one ``(m = C_out/G, n = C_in/G*kh*kw, P = Ho*Wo)`` layer (``kind = "depthwise"``
  when every group has one input channel).
* ``cimq.matmul`` (static ``[K, N]`` weight) -> ``cimq.reshape`` to ``[B, 1, P, K]`` (``P`` =
  the rows streamed per inference, the tokens) + ``xbar.matmul`` (``H = 1``) + ``xbar.unpack``;
  a vector weight ``[K]`` is one output column; a batch of weights ``[..., K, N]`` is ``H`` =
  their number repeats (as a grouped convolution's), the input's leading dims ending with theirs.
* ``cimq.matmul_act`` (attention) -> ``xbar.matmul_dyn``: the leading dims become ``[B, H]``
  (``H`` = the right operands written per inference, the heads), ``P`` = the streamed rows
  (queries), the right operand is written at run time.

``B`` is the batch of one run. A module that runs at any batch carries it on axis 0 of every
batched tensor. A module typed at one batch ``N`` (``cimq.fixed_batch``: the frontend saw the
batch leave axis 0, or an input carries it on another axis; ``N`` is the size of the inputs'
batch axis, :func:`cimc.analysis.run_batch`) may carry it anywhere
(sequence-first ``[tokens, N, dim]``, heads folded into it ``[N*heads, tokens, d]``): there
``P`` and ``H`` are the rows and written operands of the whole run divided by ``N``, whatever
the layout (the products are row-wise, so regrouping the rows by inference is exact).

Each layer keeps its name (``layer``), bits and signedness. The streamed operand uses its own bit
width; the stored operand uses its width if signed and one bit more if unsigned (its values must
be signed integers on the crossbar). Everything else stays a cimq host op.

Zero points: a streamed operand's integers are streamed as stored and its zero point ``zx`` is
removed digitally with the signed-input offset (``xbar.map``'s ``a_zp``: the correction is
``(offset + zx) * colsum(w)``; ``xbar.im2col`` pads with ``zx``). A static weight with zero
point ``zw`` is stored as ``w - zw`` when that fits 8 signed bits (its type's width, or one bit
more: no run-time work); otherwise, and for an operand written at run time, the crossbar holds
the integers as they are (zero point kept in the type) and ``zw * rowsum(x - zx)`` is
subtracted digitally (``xbar.zp_correct`` after ``xbar-tile``). An unsigned operand that would
need 9 signed bits (uint8) is stored as unsigned cells at its own width.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp, StringAttr, TensorType, i32
from xdsl.ir import Operation, SSAValue
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import (
    PatternRewriter,
    PatternRewriteWalker,
    RewritePattern,
    op_type_rewrite_pattern,
)

from cimc.analysis import run_batch
from cimc.dialects import cimq, xbar
from cimc.errors import UnsupportedModelError


def weight_array(value: SSAValue, where: str) -> np.ndarray:
    """The integers of a static weight (as stored, no int64 copy): it must be a ``cimq.const``."""
    owner = value.owner
    if not isinstance(owner, cimq.ConstOp):
        raise UnsupportedModelError(
            f"{where}: the weight is computed at run time, not a constant; only cimq.const "
            "weights can be programmed at compile time"
        )
    shape = tuple(value.type.get_shape())  # type: ignore[union-attr]
    arr = cimq.constant_array(owner.value)
    if arr.size == 1 and int(np.prod(shape)) != 1:
        arr = np.full(shape, arr.reshape(-1)[0])
    if arr.dtype.kind not in "iu":
        arr = np.rint(arr).astype(np.int64)
    return arr.reshape(shape)


def centered_weight(W: np.ndarray, qt: cimq.QuantType) -> tuple[np.ndarray, cimq.QuantType]:
    """A static weight with zero point ``zw`` as the signed integers ``W - zw`` the crossbar
    stores, scale 1: the type's width when they fit it, else one bit more (the span keeps its
    size but moves). When that would need 9 bits the weight stays as it is, with its zero point
    (scale 1), corrected digitally (``xbar.zp_correct``)."""
    if not qt.zp:
        return W, qt.with_scales(1.0)
    c = np.asarray(W, dtype=np.int64) - qt.zp
    lo, hi = (int(c.min()), int(c.max())) if c.size else (0, 0)
    fits = -(1 << (qt.width - 1)) <= lo and hi < (1 << (qt.width - 1))
    if not fits and qt.width >= 8:
        return W, qt.with_scales(1.0)
    return c, cimq.QuantType(qt.width if fits else qt.width + 1, True, 1.0)


def blob_const(array: np.ndarray, key: str, result_type: TensorType) -> cimq.ConstOp:
    """A ``cimq.const`` holding ``array`` as a ``#cimq.blob`` of the module, as int8 when the
    values fit (crossbar weights always do), else int64."""
    small = array.size == 0 or (int(array.min()) >= -128 and int(array.max()) <= 127)
    data = np.ascontiguousarray(array, dtype=np.int8 if small else np.int64)
    return cimq.ConstOp(cimq.BlobAttr(key, data), result_type)


def _erase_if_dead(value: SSAValue, rewriter: PatternRewriter) -> None:
    """Drop the original weight constant once nothing uses it."""
    owner = value.owner
    if isinstance(owner, cimq.ConstOp) and not owner.output.uses:
        rewriter.erase(owner)


def _qtype(value: SSAValue) -> cimq.QuantType:
    t = value.type
    assert isinstance(t, TensorType) and isinstance(t.element_type, cimq.QuantType)
    return t.element_type


def _shape(value: SSAValue) -> list[int]:
    t = value.type
    assert isinstance(t, TensorType)
    return list(t.get_shape())


def _reshape(value: SSAValue, shape: list[int], onnx_shape: list[int]) -> cimq.ReshapeOp:
    elem = _qtype(value)
    return cimq.ReshapeOp.create(
        operands=[value],
        result_types=[TensorType(elem, shape)],
        attributes={"shape": cimq.i64_array(onnx_shape)},
    )


def _dims(shape: list[int]) -> str:
    """A shape for a message: ``[?, 2, 3]`` (a dynamic dimension as ``?``)."""
    return "[" + ", ".join("?" if d < 0 else str(d) for d in shape) + "]"


def _where(op: Operation, kind: str, name: str) -> str:
    """How a refusal names a product: kind, layer (the ONNX node) and cimq op."""
    return f"{kind} '{name}' ({op.name})"


def _product(cls, x: SSAValue, w: SSAValue, out_shape: list[int], name: str, kind: str, where: str):
    """An ``xbar.matmul``/``xbar.matmul_dyn`` with bits taken from the operand types: the
    stored operand's signed width, or an unsigned one's own width where signed cells would need
    9 bits (unsigned cells)."""
    wq = _qtype(w)
    wb = xbar.operand_bits(wq)
    if wb > 8 and not wq.is_signed:
        wb = wq.width
    ab = _qtype(x).width
    if wb > 8:
        raise UnsupportedModelError(
            f"{where}: the crossbar operand is {wq.spec()}, which needs {wb} signed bits (at most 8)"
        )
    return cls.create(
        operands=[x, w],
        result_types=[TensorType(i32, out_shape)],
        properties={
            "layer": StringAttr(name),
            "kind": StringAttr(kind),
            "w_bits": xbar.i64_attr(wb),
            "a_bits": xbar.i64_attr(ab),
        },
    )


def _hint(name: str) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9_]", "_", name)


def per_inference(lead: list[int], batch: int | None) -> tuple[int, int]:
    """``(B, per)`` of leading dims ``lead`` (rows or written operands of a whole run): ``B`` the
    batch, ``per`` the count per inference. Without a typed batch (or with a symbolic one)
    axis 0 is the batch; at a typed batch ``N`` that divides the total, ``per`` = total / ``N``
    whatever the layout."""
    if batch is None or (lead and lead[0] < 0):
        return (lead[0], math.prod(lead[1:])) if lead else (1, 1)
    total = math.prod(lead)
    if batch is not None and total % batch == 0:
        return batch, total // batch
    return (lead[0], math.prod(lead[1:])) if lead else (1, 1)


def _first(b: int, shape: list[int]) -> int:
    """Dim 0 of a reshape to ``[b, ...]``: 0 (ONNX: copy dim 0) when it is the input's."""
    return 0 if b < 0 or (len(shape) > 1 and b == shape[0]) else b


class _Namer:
    def __init__(self) -> None:
        self.count = 0

    def name(self, op: Operation, prefix: str) -> str:
        self.count += 1
        attr = op.attributes.get("layer")
        return attr.data if isinstance(attr, StringAttr) else f"{prefix}{self.count}"


@dataclass
class ConvToXbar(RewritePattern):
    namer: _Namer

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: cimq.ConvOp, rewriter: PatternRewriter) -> None:
        name = self.namer.name(op, "conv")
        where = _where(op, "conv layer", name)
        W = weight_array(op.weight, where)
        o, cg, kh, kw = W.shape
        g = op.group.value.data
        mg, ng = o // g, cg * kh * kw
        W, wq = centered_weight(W, _qtype(op.weight))
        wx = W.reshape(g, mg, ng).transpose(0, 2, 1)  # [G, n_g, m_g]
        wconst = blob_const(wx, f"{name}.xbar_weight", TensorType(wq, [g, ng, mg]))
        wconst.output.name_hint = f"{_hint(name)}_w"
        xs = _shape(op.input)
        ys = _shape(op.output)
        p = ys[2] * ys[3]
        patches = xbar.Im2ColOp.create(
            operands=[op.input],
            result_types=[TensorType(_qtype(op.input), [xs[0], g, p, ng])],
            properties={
                "kernel": cimq.i64_array([kh, kw]),
                "strides": op.strides,
                "pads": op.pads,
                "dilations": op.dilations,
                "groups": xbar.i64_attr(g),
            },
        )
        kind = "depthwise" if g > 1 and cg == 1 else "conv"
        mm = _product(xbar.MatMulOp, patches.output, wconst.output, [xs[0], g, p, mg], name, kind, where)
        patches.output.name_hint, mm.output.name_hint = f"{_hint(name)}_patches", f"{_hint(name)}_mm"
        back = xbar.Col2ImOp.create(operands=[mm.output], result_types=[op.output.type])
        weight = op.weight
        rewriter.replace(op, [wconst, patches, mm, back], [back.output])
        _erase_if_dead(weight, rewriter)


def _weight_batch(where: str, xs: list[int], lead: list[int]) -> tuple[int, int]:
    """``(B, P)`` of an input ``xs`` times a batch of constant weights ``[*lead, K, N]``: the
    input's leading dims must end with ``lead`` (weight ``h`` multiplies rows of head ``h``, as
    the ``H`` repeats of a grouped convolution); the dims before it are the batch."""
    xl = xs[:-2]
    if len(xl) < len(lead) or xl[len(xl) - len(lead):] != lead:
        raise UnsupportedModelError(
            f"{where}: input {_dims(xs)} against the weight batch {lead} broadcasts the "
            "input, which is not mapped to crossbars (run it with --level cimq)")
    prefix = xl[: len(xl) - len(lead)]
    if prefix and prefix[0] < 0:
        if math.prod(prefix[1:]) != 1:
            raise UnsupportedModelError(
                f"{where}: input {_dims(xs)} has several batch dims before the weight "
                f"batch {lead}, which is not mapped to crossbars (run it with --level cimq)")
        return prefix[0], xs[-2]
    return math.prod(prefix), xs[-2]


@dataclass
class MatMulToXbar(RewritePattern):
    namer: _Namer
    batch: int | None

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: cimq.MatMulOp, rewriter: PatternRewriter) -> None:
        name = self.namer.name(op, "linear")
        where = _where(op, "linear layer", name)
        W = weight_array(op.weight, where)
        xs = _shape(op.input)
        k, n_out = (W.shape[0], 1) if W.ndim == 1 else W.shape[-2:]
        h = math.prod(W.shape[:-2])
        if h == 1:  # [K, N], a vector [K] (one output column), or leading ones
            b, p = per_inference(xs[:-1], self.batch)
        else:
            b, p = _weight_batch(where, xs, list(W.shape[:-2]))
        W, wq = centered_weight(W.reshape(h, k, n_out), _qtype(op.weight))
        wconst = blob_const(W, f"{name}.xbar_weight", TensorType(wq, [h, k, n_out]))
        wconst.output.name_hint = f"{_hint(name)}_w"
        rows = _reshape(op.input, [b, h, p, k], [_first(b, xs), h, p, k])
        mm = _product(xbar.MatMulOp, rows.output, wconst.output, [b, h, p, n_out], name, "linear", where)
        rows.output.name_hint, mm.output.name_hint = f"{_hint(name)}_rows", f"{_hint(name)}_mm"
        back = xbar.UnpackOp.create(operands=[mm.output], result_types=[op.output.type])
        weight = op.weight
        rewriter.replace(op, [wconst, rows, mm, back], [back.output])
        _erase_if_dead(weight, rewriter)


@dataclass
class MatMulActToXbar(RewritePattern):
    namer: _Namer
    batch: int | None

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: cimq.MatMulActOp, rewriter: PatternRewriter) -> None:
        name = self.namer.name(op, "matmul")
        a_s, b_s = _shape(op.lhs), _shape(op.rhs)
        if a_s[:-2] != b_s[:-2]:
            raise UnsupportedModelError(
                f"{_where(op, 'attention matmul', name)}: batch dims {_dims(a_s[:-2])} and {_dims(b_s[:-2])} differ (no "
                "broadcasting on the crossbar)"
            )
        b, h = per_inference(a_s[:-2], self.batch)
        t, d, m = a_s[-2], a_s[-1], b_s[-1]
        new: list[Operation] = []
        lhs, rhs = op.lhs, op.rhs
        if a_s != [b, h, t, d]:
            ra = _reshape(op.lhs, [b, h, t, d], [_first(b, a_s), h, t, d])
            rb = _reshape(op.rhs, [b, h, d, m], [_first(b, b_s), h, d, m])
            new += [ra, rb]
            lhs, rhs = ra.output, rb.output
        mm = _product(xbar.MatMulDynOp, lhs, rhs, [b, h, t, m], name, "matmul",
                      _where(op, "attention matmul", name))
        mm.output.name_hint = f"{_hint(name)}_mm"
        back = xbar.UnpackOp.create(operands=[mm.output], result_types=[op.output.type])
        rewriter.replace(op, [*new, mm, back], [back.output])


@dataclass(frozen=True)
class ConvertCimqToXbarPass(ModulePass):
    """Rewrite cimq crossbar products into ``xbar.matmul`` / ``xbar.matmul_dyn`` layers."""

    name = "convert-cimq-to-xbar"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        namer = _Namer()
        batch = run_batch(op)
        for pattern in (ConvToXbar(namer), MatMulToXbar(namer, batch), MatMulActToXbar(namer, batch)):
            PatternRewriteWalker(pattern, apply_recursively=False).rewrite_module(op)
