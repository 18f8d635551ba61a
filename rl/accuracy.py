"""The accuracy side of a search episode: ``policy -> top-1 %`` on a fixed validation subset.

:class:`PolicyEvaluator` is the inner loop of the search, made cheap:

1. rebuild the model at the policy and load the 8-bit QAT weights (strictly);
2. **calibrate** (``calib_images`` > 0): re-estimate the BatchNorm statistics on a fixed slice of
   the training split with the quantised layers at the policy's bits (forward passes only, the
   quantisers stay in eval mode) -- the cheap correction mixed-precision searches use instead of
   training, since a coarser quantiser shifts the statistics of what follows it;
3. **fine-tune** (``finetune_steps`` > 0, default 0): a few QAT steps (CIM-AQ's per-episode
   training, the paper uses 3 epochs on 20k images);
4. evaluate top-1 on the first ``eval_limit`` images of the ``val`` split (always the same ones).

Every step is deterministic (seeded fine-tune, fixed slices), so the accuracy of a policy does not
depend on when, where or by which worker it is asked for; the search caches it per policy. The
final fine-tune of the best policy (``cimc.rl.search_final.final_qat``) is separate and kept.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from cimc.errors import CimcError


@dataclass(frozen=True)
class EvalSettings:
    """How one episode measures accuracy (see the module docstring)."""

    finetune_steps: int = 0
    calib_images: int = 512
    eval_limit: int | None = 2000
    train_limit: int | None = 20000
    lr: float = 2e-4
    batch_size: int = 128
    seed: int = 0

    def validate(self) -> EvalSettings:
        if self.finetune_steps < 0:
            raise CimcError(f"--finetune-steps: expected >= 0, got {self.finetune_steps}")
        if self.calib_images < 0:
            raise CimcError(f"--calib-images: expected >= 0, got {self.calib_images}")
        if self.eval_limit is not None and self.eval_limit < 1:
            raise CimcError(f"--eval-limit: expected >= 1, got {self.eval_limit}")
        if self.train_limit is not None and self.train_limit < 1:
            raise CimcError(f"--train-limit: expected >= 1, got {self.train_limit}")
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def recalibrate_bn(model: Any, images: np.ndarray, batch_size: int = 256) -> int:
    """Re-estimate every BatchNorm's running mean/variance on ``images`` (cumulative average).

    Only the BatchNorm modules run in training mode; everything else (the Brevitas quantisers
    included) stays in eval mode, so nothing but the BN statistics changes. Returns the number of
    BatchNorm layers recalibrated (0: the model has none and is left as it is).
    """
    import torch
    from torch import nn

    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns or len(images) == 0:
        return 0
    model.eval()
    saved = [(m, m.momentum) for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average over the calibration batches
        m.train()
    try:
        with torch.no_grad():
            x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))
            for i in range(0, len(x), batch_size):
                model(x[i : i + batch_size])
    finally:
        for m, momentum in saved:
            m.momentum = momentum
        model.eval()
    return len(bns)


class PolicyEvaluator:
    """``evaluator(policy) -> top-1 %`` of zoo model ``model`` at ``policy`` (see the module).

    ``state_dict`` is the 8-bit QAT checkpoint. The data are loaded once, at construction.
    :meth:`model_at` returns the episode's model itself (calibrated / fine-tuned, eval mode), for
    costs measured on the executed program.
    """

    def __init__(self, model: str, dataset: str | tuple[Any, Any, Any], state_dict: dict[str, Any],
                 settings: EvalSettings | None = None):
        self.model = model
        self.settings = (settings or EvalSettings()).validate()
        self.state_dict = state_dict
        s = self.settings
        if isinstance(dataset, str):
            from cimc.data import load_dataset

            need_train = s.finetune_steps > 0 or s.calib_images > 0
            limit = max(s.train_limit or 0, s.calib_images) or None
            self.train_data = load_dataset(dataset, "train", limit=limit) if need_train else None
            self.val_data = load_dataset(dataset, "val", limit=s.eval_limit)
        else:  # (train, val, name) arrays, for tests and callers that hold the data already
            train, val, _ = dataset
            self.train_data, self.val_data = train, val
            if s.eval_limit is not None:
                self.val_data = (val[0][: s.eval_limit], val[1][: s.eval_limit])
        self.dataset = dataset if isinstance(dataset, str) else dataset[2]

    @property
    def calibration_images(self) -> np.ndarray:
        """The fixed calibration slice: the first ``calib_images`` training images."""
        if self.train_data is None:
            return np.zeros((0, 1, 28, 28), dtype=np.float32)
        return self.train_data[0][: self.settings.calib_images]

    def model_at(self, policy: Any) -> Any:
        """The episode's model at ``policy``: 8-bit weights, calibrated, fine-tuned (eval mode)."""
        from cimc.training import finetune

        s = self.settings
        pol = np.asarray(policy, dtype=np.int64)
        if s.finetune_steps > 0:
            assert self.train_data is not None
            x, y = self.train_data
            if s.train_limit is not None:
                x, y = x[: s.train_limit], y[: s.train_limit]
            net = finetune(self.model, pol, self.state_dict, (x, y), steps=s.finetune_steps,
                           lr=s.lr, batch_size=s.batch_size, seed=s.seed, progress=False)
        else:
            net = finetune(self.model, pol, self.state_dict, (np.zeros((0,)), np.zeros((0,))),
                           steps=0, seed=s.seed)
        if s.calib_images > 0:
            recalibrate_bn(net, self.calibration_images)
        return net

    def __call__(self, policy: Any) -> float:
        return self.evaluate(self.model_at(policy))

    def evaluate(self, net: Any) -> float:
        """Top-1 % of ``net`` on the fixed validation subset, in Brevitas' inference mode
        (quantised weights computed once, not per batch: the same outputs, about 25 % faster)."""
        import torch
        from brevitas.export.inference import quant_inference_mode

        from cimc.training import evaluate

        net.eval()
        with torch.no_grad(), quant_inference_mode(net):
            net(torch.from_numpy(self.val_data[0][:2]))  # the mode caches on its first call
            return float(evaluate(net, self.val_data, "val"))


@dataclass(frozen=True)
class EvaluatorFactory:
    """A picklable recipe for the episode evaluator, so Ray workers can build their own: the
    :class:`PolicyEvaluator` of ``model`` on ``dataset`` from the 8-bit ``state_dict``, wrapped in
    a :class:`cimc.rl.measured_cost.MeasuredEvaluator` when ``measured_hw`` (a hardware dict) is
    given."""

    model: str
    dataset: str
    state_dict: dict[str, Any]
    settings: EvalSettings
    measured_hw: dict[str, Any] | None = None
    cost_batch: int = 16

    def cost_inputs(self) -> np.ndarray:
        """The calibration batch of ``--cost measured``: the first ``cost_batch`` validation
        images."""
        from cimc.data import load_dataset

        return load_dataset(self.dataset, "val", limit=self.cost_batch)[0]

    def __call__(self) -> Any:
        evaluator = PolicyEvaluator(self.model, self.dataset, self.state_dict, self.settings)
        if self.measured_hw is None:
            return evaluator
        from cimc.target.hw import Hardware
        from cimc.rl.measured_cost import MeasuredEvaluator

        return MeasuredEvaluator(evaluator, Hardware.from_dict(self.measured_hw),
                                 batch=self.cost_inputs())
