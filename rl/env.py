"""The bit-width search environment of CIM-AQ (a HAQ variant).

An episode walks over the ``L`` crossbar layers of a network and takes **two actions per layer**,
first the weight bits and then the input-activation bits (``2L`` steps). Each action is a number
``u`` in ``[0, 1]`` that :func:`action_to_bits` turns into a bit width. After the last step the
policy (an ``(L, 2)`` integer array ``[[w, a], ...]``) goes through the constraints
(:func:`apply_first_last`, optionally :func:`enforce_latency_budget`) and is scored with
:func:`reward`.

The state of every step has :data:`N_STATE` = 10 features (see :func:`static_features`): the
layer type, inputs, outputs, stride, kernel, number of weights, input feature-map size and layer
index, min-max normalised per feature over the layers, then the previous action's bits divided by
``b_max`` and a flag that is 1 when the next action is for weights and 0 for activations.

Everything here is pure numpy; the search loop lives in :mod:`cimc.rl.search`.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cimc.errors import CimcError

N_STATE = 10
"""Number of state features per step."""

METHODS = ("ddpg", "random", "td3")
"""Search methods: cimc's DDPG, uniform random actions, Stable-Baselines3's TD3."""

LAYER_CONV = 0
LAYER_DEPTHWISE = 1
LAYER_LINEAR = 2
LAYER_ATTENTION = 3
LAYER_TYPES = {"conv": LAYER_CONV, "depthwise": LAYER_DEPTHWISE, "linear": LAYER_LINEAR,
               "matmul": LAYER_ATTENTION, "attention": LAYER_ATTENTION}
"""``cimc.target.LayerDesc.kind`` -> state layer type."""


@dataclass(frozen=True)
class LayerInfo:
    """What the agent sees of one crossbar layer (the static part of its state).

    ``type`` is 0 conv, 1 depthwise conv, 2 linear, 3 attention matmul; ``c_in``/``c_out`` are
    input/output channels (or features); ``in_fmap`` is the input feature-map size ``H * W``
    (tokens for transformer layers, 1 for a linear layer on a vector).
    """

    type: int
    c_in: int
    c_out: int
    stride: int
    kernel: int
    n_weights: int
    in_fmap: int
    index: int
    name: str = ""

    def features(self) -> list[float]:
        return [float(self.type), float(self.c_in), float(self.c_out), float(self.stride),
                float(self.kernel), float(self.n_weights), float(self.in_fmap), float(self.index)]


def layer_info_from_desc(desc: Any, index: int) -> LayerInfo:
    """A :class:`LayerInfo` from a ``cimc.target.LayerDesc``-like object ``(name, m, n, P, H, kind)``.

    Used when only crossbar descriptors are at hand: inputs = ``n``, outputs = ``m``, stride and
    kernel 1, weights = ``m * n * H``, feature map = ``P`` (MVMs per inference). Kinds ``conv``,
    ``depthwise``, ``linear``, ``matmul`` map to types 0..3.
    """
    kind = str(getattr(desc, "kind", "linear")).lower()
    ltype = LAYER_TYPES.get(kind, LAYER_LINEAR)
    m, n, p, h = int(desc.m), int(desc.n), int(desc.P), int(desc.H)
    return LayerInfo(type=ltype, c_in=n, c_out=m, stride=1, kernel=1, n_weights=m * n * h,
                     in_fmap=p, index=index, name=str(getattr(desc, "name", f"layer{index}")))


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------


@dataclass
class DDPGConfig:
    """DDPG hyper-parameters; the defaults are cimc's, :data:`CIMAQ_DDPG` holds CIM-AQ's.

    ``discount``: bootstrap weight of the next step's value (CIM-AQ: 1; cimc: 0, see below).
    ``reward_norm``: ``"ma"`` (CIM-AQ: subtract a moving average of batch means, ``ma_alpha``) or
    ``"buffer"`` (subtract the mean of the rewards in the replay buffer and divide by their
    standard deviation). ``sigma_end``: when set, the exploration width decays geometrically from
    ``sigma0`` after the warm-up to ``sigma_end`` at the last episode (replaces ``sigma_decay``).
    ``updates_per_step``: DDPG updates per stored transition after each episode (CIM-AQ: 1).
    ``actor_grad``: ``"sigmoid"`` (CIM-AQ: the critic's gradient through the actor's sigmoid) or
    ``"inverting"`` (inverted gradients on the logit, see ``DDPGAgent._inverting_actor_loss``).

    Every transition of an episode carries the episode's reward (CIM-AQ). With a discount of 0
    the critic learns that reward given the layer's state and action, a regression; with
    CIM-AQ's discount of 1 it must learn the sum of the ``2L - t`` identical rewards still to
    come, by bootstrapping through ``2L`` steps of lagging target networks. The README's search
    section gives the measurements behind cimc's defaults.
    """

    hidden: int = 300
    lr_actor: float = 5e-5
    lr_critic: float = 1e-3
    tau: float = 0.01
    discount: float = 0.0
    batch_size: int = 64
    buffer_per_layer: int = 128
    sigma0: float = 0.5
    sigma_decay: float = 0.997
    sigma_end: float | None = 0.05
    ma_alpha: float = 0.5
    reward_norm: str = "buffer"
    updates_per_step: float = 1.0
    actor_grad: str = "inverting"


#: CIM-AQ's DDPG settings (cim-model.md section 4), for ``DDPGConfig(**CIMAQ_DDPG)``.
CIMAQ_DDPG: dict[str, Any] = {
    "hidden": 300, "lr_actor": 5e-5, "lr_critic": 1e-3, "tau": 0.01, "discount": 1.0,
    "batch_size": 64, "buffer_per_layer": 128, "sigma0": 0.6, "sigma_decay": 0.997,
    "sigma_end": None, "ma_alpha": 0.5, "reward_norm": "ma", "updates_per_step": 1.0,
    "actor_grad": "sigmoid",
}


@dataclass
class SearchConfig:
    """Every knob of the search; JSON-serialisable with :meth:`to_json`/:meth:`from_json`.

    ``reward_mode`` is ``"cost"`` (CIM-AQ: accuracy-gated latency reward) or ``"budget"`` (HAQ:
    a hard latency budget ``latency_budget`` as a fraction of the W8A8 latency, reward from
    accuracy alone). ``acc_8bit`` is measured with the accuracy function at W8A8 when ``None``.
    ``cell_bits`` (``c``) drives the cell-resolution constraint when ``cell_constraint`` is on.
    ``method``: ``ddpg`` (cimc's agent), ``random`` (uniform actions) or ``td3``
    (Stable-Baselines3's TD3 through the gymnasium environment). ``workers`` (``K``): episodes
    played per round with the same actor, evaluated at once (results depend on the seed and K).
    """

    episodes: int = 600
    warmup: int = 30
    seed: int = 0
    method: str = "ddpg"
    b_min: int = 2
    b_max: int = 8
    cell_bits: int = 4
    cell_constraint: bool = True
    first_last_8bit: bool = True
    allowed_drop: float = 0.5
    acc_8bit: float | None = None
    reward_mode: str = "cost"
    latency_budget: float = 0.5
    cache_accuracy: bool = True
    workers: int = 1
    ddpg: DDPGConfig = field(default_factory=DDPGConfig)

    def validate(self) -> SearchConfig:
        """Raise :class:`CimcError` on an impossible setting; return ``self``."""
        if not 1 <= self.b_min <= self.b_max <= 32:
            raise CimcError(f"search config: need 1 <= b_min <= b_max <= 32, got {self.b_min}..{self.b_max}")
        if self.episodes < 1:
            raise CimcError(f"search config: episodes must be >= 1, got {self.episodes}")
        if self.warmup < 0:
            raise CimcError(f"search config: warmup must be >= 0, got {self.warmup}")
        if self.method not in METHODS:
            raise CimcError(f"search config: method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if self.workers < 1:
            raise CimcError(f"search config: workers must be >= 1, got {self.workers}")
        if self.method == "td3" and self.workers != 1:
            raise CimcError("search config: td3 (Stable-Baselines3) runs its episodes one by one; "
                            "use --workers 1")
        if self.reward_mode not in ("cost", "budget"):
            raise CimcError(f"search config: reward_mode must be 'cost' or 'budget', got {self.reward_mode!r}")
        if self.reward_mode == "budget" and not 0 < self.latency_budget <= 1:
            raise CimcError(f"search config: latency_budget must be in (0, 1], got {self.latency_budget}")
        if self.cell_constraint and not weight_choices(self.b_min, self.b_max, self.cell_bits):
            raise CimcError(
                f"search config: no multiple of cell_bits={self.cell_bits} lies in "
                f"{self.b_min}..{self.b_max}; turn the cell constraint off or change the bounds")
        if self.cell_bits < 1:
            raise CimcError(f"search config: cell_bits must be >= 1, got {self.cell_bits}")
        if self.ddpg.reward_norm not in ("ma", "buffer"):
            raise CimcError(f"search config: ddpg.reward_norm must be 'ma' or 'buffer', got {self.ddpg.reward_norm!r}")
        if self.ddpg.sigma_end is not None and not 0 < self.ddpg.sigma_end <= self.ddpg.sigma0:
            raise CimcError(f"search config: ddpg.sigma_end must be in (0, sigma0], got {self.ddpg.sigma_end}")
        if self.ddpg.actor_grad not in ("sigmoid", "inverting"):
            raise CimcError(f"search config: ddpg.actor_grad must be 'sigmoid' or 'inverting', got {self.ddpg.actor_grad!r}")
        if self.ddpg.updates_per_step < 0:
            raise CimcError(f"search config: ddpg.updates_per_step must be >= 0, got {self.ddpg.updates_per_step}")
        if self.ddpg.batch_size < 1 or self.ddpg.buffer_per_layer < 1:
            raise CimcError("search config: ddpg.batch_size and ddpg.buffer_per_layer must be >= 1")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SearchConfig:
        """Build from a dict; unknown keys are an error (a typo must not pass silently)."""
        data = dict(data)
        ddpg = data.pop("ddpg", {}) or {}
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise CimcError(f"search config: unknown key(s) {', '.join(unknown)}")
        dknown = {f.name for f in dataclasses.fields(DDPGConfig)}
        dunknown = sorted(set(ddpg) - dknown)
        if dunknown:
            raise CimcError(f"search config: unknown ddpg key(s) {', '.join(dunknown)}")
        return cls(**data, ddpg=DDPGConfig(**ddpg))

    @classmethod
    def from_json(cls, text_or_path: str | Path) -> SearchConfig:
        text = str(text_or_path)
        if not text.lstrip().startswith("{"):
            path = Path(text)
            try:
                text = path.read_text()
            except OSError as exc:
                raise CimcError(f"{path}: cannot read search config ({exc.strerror})") from None
        try:
            return cls.from_dict(json.loads(text))
        except json.JSONDecodeError as exc:
            raise CimcError(f"search config: invalid JSON at line {exc.lineno}: {exc.msg}") from None


# --------------------------------------------------------------------------------------------
# Actions and constraints
# --------------------------------------------------------------------------------------------


def action_to_bits(u: float, b_min: int, b_max: int) -> int:
    """``round((b_max - b_min + 1) * u + b_min - 0.5)`` with numpy rounding, clipped to bounds.

    With 2..8: 0 -> 2, 0.2 -> 3, 0.5 -> 5, 0.99 -> 8, 1.0 -> 8.
    """
    bits = int(np.round((b_max - b_min + 1) * float(u) + b_min - 0.5))
    return int(min(max(bits, b_min), b_max))


def weight_choices(b_min: int, b_max: int, cell_bits: int) -> list[int]:
    """Weight bit widths allowed by the cell-resolution constraint: multiples of ``c`` in bounds."""
    if cell_bits < 1:
        return []
    return [b for b in range(b_min, b_max + 1) if b % cell_bits == 0]


def cell_action_to_bits(u: float, choices: Sequence[int]) -> int:
    """Map ``u`` to one of ``choices`` in equal intervals (``{4, 8}``: ``u < 0.5`` -> 4 else 8)."""
    k = len(choices)
    idx = int(math.floor(float(u) * k))
    return int(choices[min(max(idx, 0), k - 1)])


def weight_action_to_bits(u: float, config: SearchConfig) -> int:
    """Weight bits of action ``u`` under ``config`` (cell constraint if on)."""
    if config.cell_constraint:
        return cell_action_to_bits(u, weight_choices(config.b_min, config.b_max, config.cell_bits))
    return action_to_bits(u, config.b_min, config.b_max)


def apply_first_last(policy: np.ndarray, bits: int = 8) -> np.ndarray:
    """A copy of ``policy`` with the first and last layers at ``bits``/``bits``."""
    out = np.array(policy, dtype=np.int64, copy=True)
    out[0, :] = bits
    out[-1, :] = bits
    return out


def lower_weight_bits(w: int, config: SearchConfig) -> int:
    """The next lower allowed weight width, or ``w`` itself when there is none."""
    if config.cell_constraint:
        lower = [b for b in weight_choices(config.b_min, config.b_max, config.cell_bits) if b < w]
        return max(lower) if lower else w
    return w - 1 if w > config.b_min else w


def enforce_latency_budget(policy: np.ndarray, latency_fn: Callable[[np.ndarray], float],
                           budget_us: float, config: SearchConfig) -> np.ndarray:
    """HAQ's action wall: lower bits until ``latency_fn(policy) <= budget_us``.

    Passes from the last layer backwards; in each layer the activation is lowered first (by one
    bit), then the weight (to the next allowed width); the first/last layers stay fixed when the
    first/last constraint is on. Stops when the budget is met or nothing can be lowered.
    """
    out = np.array(policy, dtype=np.int64, copy=True)
    n = len(out)
    fixed = {0, n - 1} if config.first_last_8bit else set()
    if latency_fn(out) <= budget_us:
        return out
    changed = True
    while changed:
        changed = False
        for i in reversed(range(n)):
            if i in fixed:
                continue
            if out[i, 1] > config.b_min:
                out[i, 1] -= 1
                changed = True
                if latency_fn(out) <= budget_us:
                    return out
            w = lower_weight_bits(int(out[i, 0]), config)
            if w != out[i, 0]:
                out[i, 0] = w
                changed = True
                if latency_fn(out) <= budget_us:
                    return out
    return out


def min_policy(n_layers: int, config: SearchConfig) -> np.ndarray:
    """The cheapest policy the constraints allow (used to check a budget is reachable)."""
    w = min(weight_choices(config.b_min, config.b_max, config.cell_bits)) if config.cell_constraint \
        else config.b_min
    pol = np.tile(np.array([w, config.b_min], dtype=np.int64), (n_layers, 1))
    return apply_first_last(pol) if config.first_last_8bit else pol


def constrain(policy: np.ndarray, config: SearchConfig) -> np.ndarray:
    """The constraints applied before costing: the first/last layers at 8/8 when on."""
    pol = np.asarray(policy, dtype=np.int64)
    return apply_first_last(pol) if config.first_last_8bit else pol.copy()


# --------------------------------------------------------------------------------------------
# Reward
# --------------------------------------------------------------------------------------------


def reward(acc: float, acc_8bit: float, allowed_drop: float, cost_ratio: float) -> float:
    """CIM-AQ's reward (accuracies are top-1 in percent, ``cost_ratio = L(policy) / L(W8A8)``).

    ``acc_t = acc_8bit - allowed_drop``; below it ``-10 * (acc_t - acc)``, otherwise
    ``100 * (1 / cost_ratio - 1) + 0.1 * (acc - acc_t)``.
    """
    acc_t = acc_8bit - allowed_drop
    if acc < acc_t:
        return -10.0 * (acc_t - acc)
    return 100.0 * (1.0 / cost_ratio - 1.0) + 0.1 * (acc - acc_t)


def budget_reward(acc: float, acc_8bit: float) -> float:
    """HAQ's reward in the hard-budget mode: accuracy alone, ``0.1 * (acc - acc_8bit)``."""
    return 0.1 * (acc - acc_8bit)


# --------------------------------------------------------------------------------------------
# State and the stepping environment
# --------------------------------------------------------------------------------------------


def static_features(layers: Sequence[LayerInfo]) -> np.ndarray:
    """The ``(L, 8)`` static features, min-max normalised per column where max > min."""
    feats = np.array([layer.features() for layer in layers], dtype=np.float64)
    lo = feats.min(axis=0)
    hi = feats.max(axis=0)
    span = hi - lo
    cols = span > 0
    feats[:, cols] = (feats[:, cols] - lo[cols]) / span[cols]
    return feats


class BitWidthEnv:
    """Steps through ``2L`` actions (weights then activations per layer) and builds the policy.

    ``reset()`` returns the first state; ``step(u)`` returns ``(next_state, done)``. After the
    last step, :attr:`raw_policy` is the ``(L, 2)`` policy chosen by the actions, before the
    first/last and budget constraints.
    """

    def __init__(self, layers: Sequence[LayerInfo], config: SearchConfig):
        if not layers:
            raise CimcError("search: the model has no crossbar layers")
        self.layers = tuple(layers)
        self.config = config
        self.n_layers = len(self.layers)
        self.n_steps = 2 * self.n_layers
        self._static = static_features(self.layers)
        self.reset()

    def state(self, t: int, prev_bits: int) -> np.ndarray:
        """The 10 features before step ``t`` (layer ``t // 2``; weights when ``t`` is even)."""
        s = np.empty(N_STATE, dtype=np.float64)
        s[:8] = self._static[t // 2]
        s[8] = prev_bits / self.config.b_max
        s[9] = 1.0 if t % 2 == 0 else 0.0
        return s

    def reset(self) -> np.ndarray:
        self.t = 0
        self._bits = np.zeros((self.n_layers, 2), dtype=np.int64)
        self._prev = self.config.b_max
        return self.state(0, self._prev)

    def bits_for(self, u: float, t: int) -> int:
        if t % 2 == 0:
            return weight_action_to_bits(u, self.config)
        return action_to_bits(u, self.config.b_min, self.config.b_max)

    def step(self, u: float) -> tuple[np.ndarray, bool]:
        if self.t >= self.n_steps:
            raise RuntimeError("BitWidthEnv.step after the episode ended; call reset()")
        bits = self.bits_for(u, self.t)
        self._bits[self.t // 2, self.t % 2] = bits
        self._prev = bits
        self.t += 1
        done = self.t == self.n_steps
        if done:
            # The terminal transition's next state is never bootstrapped; repeat the last layer's.
            return self.state(self.n_steps - 1, bits), True
        return self.state(self.t, bits), False

    @property
    def raw_policy(self) -> np.ndarray:
        return self._bits.copy()


def uniform_policy(n_layers: int, w: int, a: int | None = None) -> np.ndarray:
    """An ``(L, 2)`` policy with every layer at ``w``/``a`` bits (``a`` defaults to ``w``)."""
    return np.tile(np.array([w, w if a is None else a], dtype=np.int64), (n_layers, 1))
