"""Execution of ``cimq`` programs with the reference semantics of :mod:`cimc.semantics`.

The program runs in xDSL's interpreter; every op is one ``@impl`` that does the whole tensor's
work in numpy (the interpreter costs about 30 us per op, so nothing scalar is interpreted).
Quantized values are ``int64`` arrays, float values ``float32`` arrays.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from xdsl.dialects.builtin import ModuleOp, TensorType
from xdsl.interpreter import Interpreter, InterpreterFunctions, impl, register_impls
from xdsl.interpreters.func import FuncFunctions
from xdsl.ir import Attribute, Operation

from cimc import semantics as sem
from cimc.dialects import cimq
from cimc.errors import ExecutionError
from cimc.exec.host import requant_chain


def const_value(op: cimq.ConstOp) -> np.ndarray:
    """The runtime value of a ``cimq.const``: int64 for quantized results, float32 else."""
    arr = cimq.constant_array(op.value)
    out_type = op.output.type
    assert isinstance(out_type, TensorType)
    if isinstance(out_type.element_type, cimq.QuantType):
        return np.asarray(arr, dtype=np.int64).reshape(out_type.get_shape())
    return np.asarray(arr, dtype=np.float32).reshape(out_type.get_shape())


def _broadcast_axis(arr: np.ndarray, axis_attr: Any, ndim: int) -> np.ndarray:
    """A per-channel (or scalar) constant shaped to broadcast along its axis of an ``ndim`` tensor."""
    shape = [1] * ndim
    shape[_attr_int(axis_attr, -1) % ndim] = arr.size
    return arr.reshape(shape)


def _requant_steps(op: cimq.RequantizeOp, acc: np.ndarray, named: dict[str, Any]) -> tuple[Any, Any]:
    """``cimq.requantize`` step by step, each step as its unfused op computes it."""
    y = sem.dequantize(acc, _qtype(op.input.type))
    if "mul" in named:
        y = (y * _broadcast_axis(named["mul"], op.mul_axis, y.ndim)).astype(np.float32, copy=False)
    if "bias" in named:
        y = (y + _broadcast_axis(named["bias"], op.bias_axis, y.ndim)).astype(np.float32, copy=False)
    if "residual" in named:
        y = (y + named["residual"]).astype(np.float32, copy=False)
    lo, hi = _attr_float(op.clamp_min), _attr_float(op.clamp_max)
    if lo is not None:
        y = np.maximum(y, np.float32(lo))
    if hi is not None:
        y = np.minimum(y, np.float32(hi))
    return sem.quantize(y, _qtype(op.output.type)), y


def _per_channel(arr: Any, axis_attr: Any, c: int) -> np.ndarray | None:
    """A float32 ``[C]`` vector of a constant along axis 1 of a 4-D tensor (or a scalar)."""
    arr = np.asarray(arr)
    if arr.dtype != np.float32 or (arr.size not in (1, c)) or (arr.size == c and c > 1 and _attr_int(axis_attr, -1) % 4 != 1):
        return None
    return np.ascontiguousarray(np.broadcast_to(arr.reshape(-1), (c,)))


def _requant_kernel(op: cimq.RequantizeOp, acc: np.ndarray, named: dict[str, Any]) -> tuple[Any, Any] | None:
    """``cimq.requantize`` in one numba pass, or None where the operands do not fit the kernel."""
    acc = np.asarray(acc)
    qt_in, qt = _qtype(op.input.type), _qtype(op.output.type)
    if acc.ndim != 4 or acc.dtype.kind not in "iu" or qt_in.zp or qt.per_channel or op.clamp_max is not None:
        return None
    if qt_in.per_channel and qt_in.channel_axis % 4 != 1:
        return None
    if op.clamp_min is not None and _attr_float(op.clamp_min) != 0.0:
        return None
    c = acc.shape[1]
    zeros = np.zeros(c, dtype=np.float32)
    mul = _per_channel(named["mul"], op.mul_axis, c) if "mul" in named else zeros
    add = _per_channel(named["bias"], op.bias_axis, c) if "bias" in named else zeros
    res = np.asarray(named.get("residual", np.zeros((1, 1, 1, 1), dtype=np.float32)))
    if mul is None or add is None or res.dtype != np.float32 or ("residual" in named and res.shape != acc.shape):
        return None
    dscale = np.ascontiguousarray(np.broadcast_to(sem.scale_array(qt_in, 4).reshape(-1), (c,)), dtype=np.float64)
    qscale = np.float32(sem.scale_array(qt, 4).astype(np.float32).reshape(()))
    keep = op.value is not None
    t = np.empty(acc.shape, dtype=np.float32)
    y = np.empty(acc.shape if keep else (1, 1, 1, 1), dtype=np.float32)
    requant_chain(acc, dscale, mul, add, res, "mul" in named, "bias" in named, "residual" in named,
                  op.clamp_min is not None, qscale, keep, y, t)
    np.clip(t, np.float32(qt.qmin - qt.zp), np.float32(qt.qmax - qt.zp), out=t)  # as sem.quantize
    q = t.astype(np.int64)
    if qt.zp:
        q += qt.zp
    return q, (y if keep else None)


def _qtype(value_type: Attribute) -> cimq.QuantType:
    assert isinstance(value_type, TensorType)
    elem = value_type.element_type
    assert isinstance(elem, cimq.QuantType)
    return elem


def _attr_float(attr: Any) -> float | None:
    return None if attr is None else float(attr.value.data)


def _attr_int(attr: Any, default: int = 0) -> int:
    return default if attr is None else int(attr.value.data)


def reshape_onnx(x: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """ONNX Reshape: 0 copies the input dim, -1 is inferred."""
    target = [x.shape[i] if s == 0 else s for i, s in enumerate(shape)]
    return x.reshape(target)


def pool2d(
    x: np.ndarray,
    kernel: tuple[int, int],
    strides: tuple[int, int],
    pads: tuple[int, int, int, int],
    dilations: tuple[int, int],
    reduce: str,
    ceil_mode: bool = False,
    count_include_pad: bool = False,
) -> np.ndarray:
    """Max or average pooling over NCHW, ONNX semantics."""
    n, c, h, w = x.shape
    kh, kw = kernel
    sh, sw = strides
    pt, pl, pb, pr = pads
    dh, dw = dilations

    def out_size(size, k, s, lo, hi, d):
        span = size + lo + hi - d * (k - 1) - 1
        out = (-(-span // s) if ceil_mode else span // s) + 1
        if ceil_mode and (out - 1) * s >= size + lo:
            out -= 1  # ONNX drops a last window that would start in the right padding
        return out

    ho = out_size(h, kh, sh, pt, pb, dh)
    wo = out_size(w, kw, sw, pl, pr, dw)
    extra_h = max(0, (ho - 1) * sh + dh * (kh - 1) + 1 - (h + pt + pb))
    extra_w = max(0, (wo - 1) * sw + dw * (kw - 1) + 1 - (w + pl + pr))
    if reduce == "max":
        fill = np.iinfo(x.dtype).min if np.issubdtype(x.dtype, np.integer) else -np.inf
        xp = np.pad(x, ((0, 0), (0, 0), (pt, pb + extra_h), (pl, pr + extra_w)), constant_values=fill)
        out = None
        for ky in range(kh):
            for kx in range(kw):
                win = xp[:, :, ky * dh : ky * dh + sh * (ho - 1) + 1 : sh, kx * dw : kx * dw + sw * (wo - 1) + 1 : sw]
                out = win.copy() if out is None else np.maximum(out, win)
        return out  # type: ignore[return-value]
    xp = np.pad(x.astype(np.float32), ((0, 0), (0, 0), (pt, pb + extra_h), (pl, pr + extra_w)))
    ones = np.zeros((1, 1, h + pt + pb + extra_h, w + pl + pr + extra_w), np.float32)
    if count_include_pad:
        ones[:, :, : h + pt + pb, : w + pl + pr] = 1.0
    else:
        ones[:, :, pt : pt + h, pl : pl + w] = 1.0
    total = np.zeros((n, c, ho, wo), np.float32)
    count = np.zeros((1, 1, ho, wo), np.float32)
    for ky in range(kh):
        for kx in range(kw):
            sl = (slice(None), slice(None), slice(ky * dh, ky * dh + sh * (ho - 1) + 1, sh), slice(kx * dw, kx * dw + sw * (wo - 1) + 1, sw))
            total += xp[sl]
            count += ones[sl]
    return total / count


def _erf(x: np.ndarray) -> np.ndarray:
    from scipy.special import erf

    return erf(x.astype(np.float32)).astype(np.float32)


@register_impls
class CimqFunctions(InterpreterFunctions):
    """numpy implementations of every ``cimq`` op."""

    @impl(cimq.ConstOp)
    def run_const(self, interp: Interpreter, op: cimq.ConstOp, args: tuple[Any, ...]):
        return (const_value(op),)

    @impl(cimq.QuantizeOp)
    def run_quantize(self, interp: Interpreter, op: cimq.QuantizeOp, args: tuple[Any, ...]):
        return (sem.quantize(args[0], _qtype(op.output.type)),)

    @impl(cimq.DequantizeOp)
    def run_dequantize(self, interp: Interpreter, op: cimq.DequantizeOp, args: tuple[Any, ...]):
        return (sem.dequantize(args[0], _qtype(op.input.type)),)

    @impl(cimq.ConvOp)
    def run_conv(self, interp: Interpreter, op: cimq.ConvOp, args: tuple[Any, ...]):
        x = sem.centered(args[0], _qtype(op.input.type))
        w = sem.centered(args[1], _qtype(op.weight.type))
        return (
            sem.conv2d_int(
                x,
                w,
                cimq.ints(op.strides),  # type: ignore[arg-type]
                cimq.ints(op.pads),  # type: ignore[arg-type]
                cimq.ints(op.dilations),  # type: ignore[arg-type]
                op.group.value.data,
            ),
        )

    @impl(cimq.MatMulOp)
    def run_matmul(self, interp: Interpreter, op: cimq.MatMulOp, args: tuple[Any, ...]):
        x = sem.centered(args[0], _qtype(op.input.type))
        return (sem.exact_matmul(x, sem.centered(args[1], _qtype(op.weight.type))),)

    @impl(cimq.MatMulActOp)
    def run_matmul_act(self, interp: Interpreter, op: cimq.MatMulActOp, args: tuple[Any, ...]):
        a = sem.centered(args[0], _qtype(op.lhs.type))
        return (sem.exact_matmul(a, sem.centered(args[1], _qtype(op.rhs.type))),)

    @impl(cimq.HostConvOp)
    def run_host_conv(self, interp: Interpreter, op: cimq.HostConvOp, args: tuple[Any, ...]):
        return (sem.conv2d_float(args[0], args[1], cimq.ints(op.strides), cimq.ints(op.pads),  # type: ignore[arg-type]
                                 cimq.ints(op.dilations), op.group.value.data),)  # type: ignore[arg-type]

    @impl(cimq.HostMatMulOp)
    def run_host_matmul(self, interp: Interpreter, op: cimq.HostMatMulOp, args: tuple[Any, ...]):
        return (sem.matmul_float(args[0], args[1]),)

    @impl(cimq.BiasAddOp)
    def run_bias_add(self, interp: Interpreter, op: cimq.BiasAddOp, args: tuple[Any, ...]):
        acc, bias = args
        axis = op.axis.value.data % acc.ndim
        shape = [1] * acc.ndim
        shape[axis] = bias.size
        return (acc + bias.reshape(shape),)

    @impl(cimq.RequantizeOp)
    def run_requantize(self, interp: Interpreter, op: cimq.RequantizeOp, args: tuple[Any, ...]):
        """The fused chain (see the op): one numba pass where the shapes allow
        (:func:`cimc.exec.host.requant_chain`), else the same float32 steps in numpy."""
        present = [k for k, v in (("bias", op.bias), ("mul", op.mul), ("residual", op.residual)) if v is not None]
        named = dict(zip(present, args[1:]))
        fused = _requant_kernel(op, args[0], named)
        q, y = fused if fused is not None else _requant_steps(op, args[0], named)
        return (q, y) if op.value is not None else (q,)

    @impl(cimq.ReluOp)
    def run_relu(self, interp: Interpreter, op: cimq.ReluOp, args: tuple[Any, ...]):
        return (np.maximum(args[0], np.float32(0)),)

    @impl(cimq.ClipOp)
    def run_clip(self, interp: Interpreter, op: cimq.ClipOp, args: tuple[Any, ...]):
        lo, hi = _attr_float(op.min), _attr_float(op.max)
        x = args[0]
        if lo is not None:
            x = np.maximum(x, np.float32(lo))
        if hi is not None:
            x = np.minimum(x, np.float32(hi))
        return (x.astype(np.float32, copy=False),)

    @impl(cimq.GeluOp)
    def run_gelu(self, interp: Interpreter, op: cimq.GeluOp, args: tuple[Any, ...]):
        x = args[0].astype(np.float32)
        if op.approximate is not None and op.approximate.data == "tanh":
            inner = np.float32(np.sqrt(2.0 / np.pi)) * (x + np.float32(0.044715) * x * x * x)
            return ((np.float32(0.5) * x * (np.float32(1) + np.tanh(inner))).astype(np.float32),)
        return ((np.float32(0.5) * x * (np.float32(1) + _erf(x / np.float32(np.sqrt(2.0))))).astype(np.float32),)

    @impl(cimq.ErfOp)
    def run_erf(self, interp: Interpreter, op: cimq.ErfOp, args: tuple[Any, ...]):
        return (_erf(args[0]),)

    @impl(cimq.SqrtOp)
    def run_sqrt(self, interp: Interpreter, op: cimq.SqrtOp, args: tuple[Any, ...]):
        with np.errstate(invalid="ignore"):  # NaN for negative inputs, as ONNX Sqrt gives
            return (np.sqrt(args[0]).astype(np.float32),)

    @impl(cimq.SoftmaxOp)
    def run_softmax(self, interp: Interpreter, op: cimq.SoftmaxOp, args: tuple[Any, ...]):
        x = args[0].astype(np.float32)
        axis = op.axis.value.data
        e = np.exp(x - x.max(axis=axis, keepdims=True))
        return ((e / e.sum(axis=axis, keepdims=True)).astype(np.float32),)

    @impl(cimq.AddOp)
    def run_add(self, interp: Interpreter, op: cimq.AddOp, args: tuple[Any, ...]):
        return ((args[0] + args[1]).astype(np.float32, copy=False),)

    @impl(cimq.SubOp)
    def run_sub(self, interp: Interpreter, op: cimq.SubOp, args: tuple[Any, ...]):
        return ((args[0] - args[1]).astype(np.float32, copy=False),)

    @impl(cimq.MulOp)
    def run_mul(self, interp: Interpreter, op: cimq.MulOp, args: tuple[Any, ...]):
        return ((args[0] * args[1]).astype(np.float32, copy=False),)

    @impl(cimq.DivOp)
    def run_div(self, interp: Interpreter, op: cimq.DivOp, args: tuple[Any, ...]):
        with np.errstate(divide="ignore", invalid="ignore"):  # inf / NaN as ONNX Div gives
            return ((args[0] / args[1]).astype(np.float32, copy=False),)

    @impl(cimq.LayerNormOp)
    def run_layernorm(self, interp: Interpreter, op: cimq.LayerNormOp, args: tuple[Any, ...]):
        x = args[0].astype(np.float32)
        axis = op.axis.value.data % x.ndim
        axes = tuple(range(axis, x.ndim))
        mean = x.mean(axis=axes, keepdims=True)
        d = x - mean
        var = (d * d).mean(axis=axes, keepdims=True)
        y = d / np.sqrt(var + np.float32(op.epsilon.value.data)) * args[1]
        if op.bias is not None:
            y = y + args[2]
        return (y.astype(np.float32),)

    @impl(cimq.MaxPoolOp)
    def run_maxpool(self, interp: Interpreter, op: cimq.MaxPoolOp, args: tuple[Any, ...]):
        return (
            pool2d(
                args[0], cimq.ints(op.kernel), cimq.ints(op.strides), cimq.ints(op.pads),  # type: ignore[arg-type]
                cimq.ints(op.dilations, (1, 1)), "max", bool(_attr_int(op.ceil_mode)),  # type: ignore[arg-type]
            ),
        )

    @impl(cimq.AvgPoolOp)
    def run_avgpool(self, interp: Interpreter, op: cimq.AvgPoolOp, args: tuple[Any, ...]):
        return (
            pool2d(
                args[0], cimq.ints(op.kernel), cimq.ints(op.strides), cimq.ints(op.pads),  # type: ignore[arg-type]
                cimq.ints(op.dilations, (1, 1)), "avg", bool(_attr_int(op.ceil_mode)),  # type: ignore[arg-type]
                bool(_attr_int(op.count_include_pad)),
            ),
        )

    @impl(cimq.GlobalAvgPoolOp)
    def run_gap(self, interp: Interpreter, op: cimq.GlobalAvgPoolOp, args: tuple[Any, ...]):
        return (args[0].mean(axis=(2, 3), keepdims=True, dtype=np.float32),)

    @impl(cimq.ReduceMeanOp)
    def run_reduce_mean(self, interp: Interpreter, op: cimq.ReduceMeanOp, args: tuple[Any, ...]):
        axes = tuple(cimq.ints(op.axes))
        return (args[0].mean(axis=axes, keepdims=bool(op.keepdims.value.data), dtype=np.float32),)

    @impl(cimq.ReshapeOp)
    def run_reshape(self, interp: Interpreter, op: cimq.ReshapeOp, args: tuple[Any, ...]):
        return (reshape_onnx(args[0], cimq.ints(op.shape)),)

    @impl(cimq.FlattenOp)
    def run_flatten(self, interp: Interpreter, op: cimq.FlattenOp, args: tuple[Any, ...]):
        x = args[0]
        axis = op.axis.value.data % max(x.ndim, 1)
        lead = int(np.prod(x.shape[:axis])) if axis else 1
        return (x.reshape(lead, -1),)

    @impl(cimq.TransposeOp)
    def run_transpose(self, interp: Interpreter, op: cimq.TransposeOp, args: tuple[Any, ...]):
        return (np.ascontiguousarray(np.transpose(args[0], cimq.ints(op.perm))),)

    @impl(cimq.GatherOp)
    def run_gather(self, interp: Interpreter, op: cimq.GatherOp, args: tuple[Any, ...]):
        index = op.index.value.data if op.index is not None else cimq.dense_to_numpy(op.indices)  # type: ignore[arg-type]
        return (np.take(args[0], index, axis=op.axis.value.data),)

    @impl(cimq.PadOp)
    def run_pad(self, interp: Interpreter, op: cimq.PadOp, args: tuple[Any, ...]):
        x = args[0]
        pads = cimq.ints(op.pads)
        rank = x.ndim
        crop = tuple(slice(max(-b, 0), x.shape[i] - max(-e, 0)) for i, (b, e) in enumerate(zip(pads[:rank], pads[rank:])))
        widths = [(max(b, 0), max(e, 0)) for b, e in zip(pads[:rank], pads[rank:])]
        value = 0.0 if op.value is None else float(op.value.value.data)
        return (np.pad(x[crop], widths, constant_values=np.asarray(value).astype(x.dtype)),)

    @impl(cimq.SliceOp)
    def run_slice(self, interp: Interpreter, op: cimq.SliceOp, args: tuple[Any, ...]):
        x = args[0]
        index = [slice(None)] * x.ndim
        for s, e, a, st in zip(cimq.ints(op.starts), cimq.ints(op.ends), cimq.ints(op.axes), cimq.ints(op.steps)):
            index[a % x.ndim] = slice(s, e, st)
        return (x[tuple(index)],)

    @impl(cimq.ConcatOp)
    def run_concat(self, interp: Interpreter, op: cimq.ConcatOp, args: tuple[Any, ...]):
        return (np.concatenate(args, axis=op.axis.value.data),)


class _Recorder(Interpreter.Listener):
    def __init__(self, want: Callable[[Operation], bool]):
        self.want = want
        self.values: dict[Operation, Any] = {}

    def did_interpret_op(self, op: Operation, results: Any) -> None:
        if self.want(op):
            self.values[op] = results[0] if results else None


def check_inputs(func_op: Any, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Check count, rank, static dims and dtype of the inputs against ``@main``'s signature."""
    arg_types = list(func_op.function_type.inputs.data)
    if len(inputs) != len(arg_types):
        raise ExecutionError(f"@main takes {len(arg_types)} input(s), got {len(inputs)}")
    checked = []
    for i, (arr, t) in enumerate(zip(inputs, arg_types)):
        arr = np.asarray(arr)
        shape = t.get_shape()
        if arr.ndim != len(shape) or any(s >= 0 and s != d for s, d in zip(shape[1:], arr.shape[1:])):
            raise ExecutionError(
                f"input {i} has shape {list(arr.shape)}, @main expects {['?' if s < 0 else s for s in shape]}"
            )
        if shape[0] >= 0 and shape[0] != arr.shape[0] and not _batch_flexible(func_op):
            raise ExecutionError(f"input {i} has batch {arr.shape[0]}, @main expects {shape[0]}")
        if not np.issubdtype(arr.dtype, np.floating):
            raise ExecutionError(f"input {i} has dtype {arr.dtype}; the model takes float32 input")
        checked.append(arr.astype(np.float32))
    return checked


def _batch_flexible(func_op: Any) -> bool:
    """Axis 0 is the batch (reshapes keep it with 0) unless the importer marked @main
    ``cimq.fixed_batch``: a model that moves the batch elsewhere runs at its typed batch."""
    return "cimq.fixed_batch" not in func_op.attributes


def find_main(module: ModuleOp) -> Any:
    from xdsl.dialects import func

    for op in module.ops:
        if isinstance(op, func.FuncOp) and op.sym_name.data == "main":
            return op
    raise ExecutionError("the module has no func.func @main")


def make_interpreter(
    module: ModuleOp,
    listeners: Sequence[Interpreter.Listener] = (),
    functions: InterpreterFunctions | None = None,
) -> Interpreter:
    interp = Interpreter(module, listeners=tuple(listeners))
    interp.register_implementations(FuncFunctions())
    interp.register_implementations(functions or CimqFunctions())
    return interp


def run_cimq(
    module: ModuleOp,
    inputs: Sequence[np.ndarray],
    *,
    record: Callable[[Operation], bool] | None = None,
    functions: InterpreterFunctions | None = None,
) -> tuple[list[np.ndarray], dict[Operation, Any]]:
    """Run ``@main`` on ``inputs``; returns the outputs and the recorded op results.

    ``functions`` replaces the cimq function table (e.g. a subclass of :class:`CimqFunctions`
    that checks or substitutes values, as the onnxruntime comparison tests do).
    """
    main = find_main(module)
    args = check_inputs(main, inputs)
    recorder = _Recorder(record or (lambda op: False))
    interp = make_interpreter(module, [recorder], functions)
    outs = interp.call_op("main", tuple(args))
    return [np.asarray(o) for o in outs], recorder.values
