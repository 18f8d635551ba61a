"""``--cost measured``: the cost of a policy is what the executed program counts.

For each policy the episode's own model (the one whose accuracy is measured: 8-bit QAT weights
at the policy, calibrated / fine-tuned, :meth:`cimc.rl.accuracy.PolicyEvaluator.model_at`) is
exported to ONNX QCDQ, imported, lowered to ``xbar-opt`` and run by cimc's interpreter on a fixed
calibration batch (the first ``batch`` images of the validation split); its cost is the counted
latency of that run, ``writes * t_write + executes * t_exec`` over the batch -- exactly what
``cimc run MODEL --level xbar-opt --input BATCH`` reports as the total latency. Where the executed
level has data-dependent savings (run-time skipping of empty input bit-planes), the search is
then rewarded for what the program does on real inputs, not for its worst case; where it has
none, the counted latency equals the static cost of the program times the batch.

The reward uses ``cost_ratio = L(policy) / L(W8A8)`` with both measured the same way on the same
batch. Costs are cached per policy by the search, next to the accuracy: with data-dependent
counts a layer's cost depends on its input, so on the bits of the layers before it, and a
per-layer cache (as for the static cost) would not be exact.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from cimc.rl.parallel import Evaluation

LEVEL = "xbar-opt"


def counted_latency(onnx_path: str | Path, batch: np.ndarray, hw: Any, level: str = LEVEL) -> float:
    """The total counted latency (us) of ``cimc run onnx_path --level LEVEL`` on ``batch``."""
    from cimc.exec import run_at_level
    from cimc.exec.cimq_exec import check_inputs, find_main
    from cimc.frontend import import_onnx

    module = import_onnx(onnx_path).module
    inputs = check_inputs(find_main(module), [np.asarray(batch, dtype=np.float32)])
    result = run_at_level(module, level, inputs, hw=hw)
    return float(result.report["total"]["latency_us"])


class MeasuredEvaluator:
    """``policy -> Evaluation(accuracy, counted latency)``; see the module docstring.

    ``evaluator`` is a :class:`cimc.rl.accuracy.PolicyEvaluator`; ``batch`` the calibration
    images (default: the first ``batch_size`` of its validation subset).
    """

    def __init__(self, evaluator: Any, hw: Any, *, batch: np.ndarray | None = None,
                 batch_size: int = 16, level: str = LEVEL):
        self.evaluator = evaluator
        self.hw = hw
        self.level = level
        self.batch = (np.asarray(evaluator.val_data[0][:batch_size], dtype=np.float32)
                      if batch is None else np.asarray(batch, dtype=np.float32))
        self._tmp = tempfile.TemporaryDirectory(prefix="cimc-measured-")

    def export(self, policy: Any, path: str | Path) -> Path:
        """Export the episode's model at ``policy`` (the model whose cost is measured)."""
        from cimc.models import export_onnx

        return export_onnx(self.evaluator.model_at(policy), path)

    def __call__(self, policy: Any) -> Evaluation:
        from cimc.models import export_onnx

        t0 = time.perf_counter()
        net = self.evaluator.model_at(policy)
        acc = self.evaluator.evaluate(net)
        t1 = time.perf_counter()
        path = export_onnx(net, Path(self._tmp.name) / "policy.onnx")
        latency = counted_latency(path, self.batch, self.hw, self.level)
        return Evaluation(acc, latency, t1 - t0, time.perf_counter() - t1)


class MeasuredCost:
    """The search's cost model for ``--cost measured``: latencies arrive with the evaluations
    (:class:`Evaluation.latency_us`) and are kept per policy; asking for one that was not
    measured is an error."""

    measured = True

    def __init__(self, n_layers: int):
        self.n_layers = n_layers
        self._memo: dict[bytes, float] = {}

    def note(self, policy: np.ndarray, latency_us: float) -> None:
        self._memo[np.asarray(policy, dtype=np.int64).tobytes()] = float(latency_us)

    def latency(self, policy: np.ndarray) -> float:
        key = np.asarray(policy, dtype=np.int64).tobytes()
        if key not in self._memo:
            raise KeyError("measured cost: the policy was not evaluated")
        return self._memo[key]

    def baseline_latency(self) -> float:
        return self.latency(np.full((self.n_layers, 2), 8, dtype=np.int64))
