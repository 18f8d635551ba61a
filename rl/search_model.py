"""The search's view of a model: its crossbar layers as search states, and the cost model.

- :func:`describe_model`: the crossbar layers of a zoo model (or a user's ``FILE.py:FUNCTION``)
  as search states (:class:`~cimc.rl.env.LayerInfo`) and cost descriptors
  (:class:`cimc.target.LayerDesc`), read from the model itself with forward hooks (one batch-1
  pass of the float twin);
- :func:`make_cost_model`: the compiler's cost (``cimc.rl.compiler_cost.CompilerCost``, or a
  factory plugged in as :data:`COMPILER_COST_FACTORY`), the closed form (cimc.target.cost), or
  the counted cycles of the executed program (``--cost measured``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cimc.errors import CimcError

#: ``factory(model_name, hw) -> cost_fn(policy) -> latency_us``: when set, replaces
#: :class:`cimc.rl.compiler_cost.CompilerCost` for ``--cost compiler`` (a hook for other compilers).
COMPILER_COST_FACTORY: Callable[[str, Any], Callable[[Any], float]] | None = None



# --------------------------------------------------------------------------------------------
# Model description
# --------------------------------------------------------------------------------------------


def describe_model(name: str) -> tuple[list[Any], list[Any]]:
    """``(layer_infos, layer_descs)`` of zoo model ``name`` in policy row order.

    Conv2d: ``m = C_out``, ``n = C_in * kh * kw / groups``, ``P = H_out * W_out``, ``H = groups``
    (kind ``depthwise`` when groups == C_in > 1). Linear on ``T`` tokens: ``(out, in, T, 1)``.
    Attention matmul ``a @ w`` (``w`` written to the crossbar): ``m = w.shape[-1]``,
    ``n = w.shape[-2]``, ``P = a.shape[-2]``, ``H`` = heads. A user's model: :func:`describe_user_model`.
    """
    from cimc.models.user import is_user_model

    if is_user_model(name):
        return describe_user_model(name)
    import math

    import torch

    from cimc.target import LayerDesc
    from cimc.models import build, input_shape, layer_names
    from cimc.rl.env import LAYER_ATTENTION, LAYER_CONV, LAYER_DEPTHWISE, LAYER_LINEAR, LayerInfo

    names = layer_names(name)
    model = build(name, None, quant=False).eval()
    modules = dict(model.named_modules())
    missing = [n for n in names if n not in modules]
    if missing:
        raise CimcError(f"model '{name}': crossbar layer '{missing[0]}' is not a module path")
    seen: dict[str, tuple[Any, ...]] = {}
    hooks = []
    for n in names:
        def hook(mod, args, out, _n=n):
            seen.setdefault(_n, (mod, tuple(a.shape for a in args), tuple(out.shape)))
        hooks.append(modules[n].register_forward_hook(hook))
    try:
        with torch.no_grad():
            model(torch.zeros(1, *input_shape(name)))
    finally:
        for h in hooks:
            h.remove()

    infos, descs = [], []
    for i, n in enumerate(names):
        if n not in seen:
            raise CimcError(f"model '{name}': crossbar layer '{n}' did not run in the forward pass")
        mod, in_shapes, out_shape = seen[n]
        if isinstance(mod, torch.nn.Conv2d):
            kh, kw = mod.kernel_size
            g = mod.groups
            dw = g > 1 and g == mod.in_channels
            p = int(out_shape[-1] * out_shape[-2])
            descs.append(LayerDesc(n, mod.out_channels // g, mod.in_channels // g * kh * kw, p, g,
                                   "depthwise" if dw else "conv"))
            infos.append(LayerInfo(LAYER_DEPTHWISE if dw else LAYER_CONV, mod.in_channels,
                                   mod.out_channels, int(mod.stride[0]), int(kh),
                                   int(mod.weight.numel()), int(in_shapes[0][-1] * in_shapes[0][-2]),
                                   i, n))
        elif isinstance(mod, torch.nn.Linear):
            tokens = math.prod(in_shapes[0][1:-1]) if len(in_shapes[0]) > 2 else 1
            descs.append(LayerDesc(n, mod.out_features, mod.in_features, int(tokens), 1, "linear"))
            infos.append(LayerInfo(LAYER_LINEAR, mod.in_features, mod.out_features, 1, 1,
                                   int(mod.weight.numel()), int(tokens), i, n))
        elif len(in_shapes) == 2:  # activation-activation matmul a @ w
            a, w = in_shapes
            heads = math.prod(w[1:-2]) if len(w) > 2 else 1
            m, k, p = int(w[-1]), int(w[-2]), int(a[-2])
            descs.append(LayerDesc(n, m, k, p, int(heads), "matmul"))
            infos.append(LayerInfo(LAYER_ATTENTION, k, m, 1, 1, m * k * int(heads), p, i, n))
        else:
            raise CimcError(f"model '{name}': cannot describe crossbar layer '{n}' "
                            f"({type(mod).__name__})")
    return infos, descs


def describe_user_model(name: str) -> tuple[list[Any], list[Any]]:
    """:func:`describe_model` of a user's ``FILE.py:FUNCTION``: the rows and shapes read when it
    was loaded (:class:`cimc.models.user.UserLayer`)."""
    from cimc.models.user import load_user_model
    from cimc.rl.env import LAYER_TYPES, LayerInfo

    rows = load_user_model(name).layers
    infos = [LayerInfo(LAYER_TYPES[r.desc.kind], r.c_in, r.c_out, r.stride, r.kernel, r.n_weights,
                       r.in_fmap, i, r.name) for i, r in enumerate(rows)]
    return infos, [r.desc for r in rows]


# --------------------------------------------------------------------------------------------
# Accuracy and cost
# --------------------------------------------------------------------------------------------


COST_KINDS = ("compiler", "closed-form", "measured")


def make_cost_model(kind: str, model: str, descs: list[Any], hw: Any, *, energy: Any = None,
                    objective: str = "latency"):
    """``closed-form`` (cimc.target.cost over ``descs``), ``compiler`` (:data:`COMPILER_COST_FACTORY`
    when set, else ``cimc.rl.compiler_cost.CompilerCost``) or ``measured`` (counted by the
    interpreter in the evaluations, ``cimc.rl.measured_cost``). An ``energy`` / ``edp``
    ``objective`` needs the compiler's cost with an :class:`~cimc.target.energy.EnergyModel`."""
    from cimc.rl.costs import ClosedFormCost, FunctionCost

    if objective != "latency":
        if kind != "compiler":
            raise CimcError(f"--objective {objective}: needs --cost compiler (the compiled "
                            f"program's energy and chip schedule), not --cost {kind}")
        if COMPILER_COST_FACTORY is not None or energy is None:
            raise CimcError(f"--objective {objective}: needs cimc's compiler cost and an energy model")

    if kind == "closed-form":
        return ClosedFormCost(descs, hw)
    if kind == "measured":
        from cimc.rl.measured_cost import MeasuredCost

        return MeasuredCost(len(descs))
    if kind == "compiler":
        if COMPILER_COST_FACTORY is not None:
            return FunctionCost(COMPILER_COST_FACTORY(model, hw), n_layers=len(descs))
        try:
            from cimc.rl.compiler_cost import CompilerCost
        except ImportError:
            raise CimcError("--cost compiler: the compiler cost is not available; "
                            "use --cost closed-form") from None
        return CompilerCost(model, hw, energy=energy, objective=objective)
    raise CimcError(f"--cost: expected one of {', '.join(COST_KINDS)}, got '{kind}'")
