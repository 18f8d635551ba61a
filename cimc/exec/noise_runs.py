"""Runs on imperfect devices: per-layer output error against the ideal run, accuracy over seeds.

:func:`compare_noise` runs an ``xbar`` program once ideally (exact) and once per seed on a
non-ideal device (:class:`cimc.target.noise.Device`, bit-serial), and reports per crossbar layer
the relative and absolute error of the noisy outputs against the ideal ones, their spread over
the seeds, and (with labels) the top-1 accuracy of each run. :func:`crossbar_accuracy` does the
same for a whole data split in batches, with one device per seed for all batches (its tiles are
re-programmed, and re-drawn, at every batch as the machine re-writes them every inference).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from xdsl.dialects.builtin import ModuleOp

from cimc.exec.predict import accuracy, changed, hits, top1
from cimc.exec.xbar_exec import layer_errors, output_errors, run_xbar
from cimc.target.hw import Hardware
from cimc.target.noise import Device, NoiseModel


def _spread(values: list[float]) -> dict[str, float]:
    arr = np.asarray(values, dtype=np.float64)
    return {"mean": float(arr.mean()), "std": float(arr.std()), "min": float(arr.min()), "max": float(arr.max())}


def compare_noise(
    module: ModuleOp, inputs: Sequence[np.ndarray], hw: Hardware, noise: NoiseModel,
    seeds: Sequence[int], *, labels: np.ndarray | None = None, samples: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """Ideal run vs one noisy run per seed. Returns per-seed errors (``runs``), per-layer spread
    over the seeds (``layers``), the noisy outputs per seed, and the first seed's run (``result``).
    ``samples``: the number of inputs and their batch axis (default: axis 0 of the output)."""
    n, axis = samples if samples is not None else (None, 0)
    ideal = run_xbar(module, inputs, hw=hw, record_layers=True)
    ideal_pred = top1(ideal.outputs[0], n, axis)
    runs, noisy_outputs, first = [], [], None
    for seed in seeds:
        res = run_xbar(module, inputs, hw=hw, fast=False, record_layers=True, noise=noise, seed=seed)
        pred = top1(res.outputs[0], n, axis)
        run = {
            "seed": int(seed),
            "layers": layer_errors(ideal.report, res.report),
            "outputs": output_errors(ideal.outputs, res.outputs),
            "top1_changed": changed(pred, ideal_pred)[0],
        }
        if labels is not None:
            run["accuracy_top1"] = accuracy(res.outputs[0], labels, axis)
        runs.append(run)
        noisy_outputs.append(res.outputs)
        res.report.pop("_layer_outputs", None)
        first = first or res
    layers = []
    for i, row in enumerate(runs[0]["layers"]):
        rel = [r["layers"][i]["rel_error"] for r in runs]
        layers.append({"name": row["name"], "rel_error": _spread(rel),
                       "max_abs_error": max(r["layers"][i]["max_abs_error"] for r in runs),
                       "adc_saturations": _spread([r["layers"][i]["adc_saturations"] for r in runs])})
    out: dict[str, Any] = {"noise": noise.to_dict(), "seeds": [int(s) for s in seeds], "runs": runs,
                           "layers": layers, "ideal_outputs": ideal.outputs,
                           "noisy_outputs": noisy_outputs, "result": first}
    if labels is not None:
        out["accuracy_top1_ideal"] = accuracy(ideal.outputs[0], labels, axis)
        out["accuracy_top1"] = _spread([r["accuracy_top1"] for r in runs])
    return out


def crossbar_accuracy(
    module: ModuleOp, x: np.ndarray, y: np.ndarray, hw: Hardware, *,
    noise: NoiseModel | None = None, seeds: Sequence[int] = (0,), batch: int = 500,
) -> dict[str, Any]:
    """Top-1 accuracy (percent) of an ``xbar`` program on ``x`` / ``y``: ideal (``noise`` None)
    or one figure per seed on a device drawn with that seed, plus mean and spread."""
    def run(device: Device | None) -> float:
        correct = 0
        for b0 in range(0, len(x), batch):
            xb = x[b0 : b0 + batch]
            res = run_xbar(module, [xb], hw=hw, fast=False if device is not None else None, noise=device)
            correct += hits(res.outputs[0], y[b0 : b0 + batch])
        return 100.0 * correct / max(len(x), 1)

    if noise is None:
        return {"accuracy_top1": run(None), "images": int(len(x))}
    per_seed = [run(Device(noise, hw, s)) for s in seeds]
    return {"accuracy_top1": _spread(per_seed), "per_seed": per_seed, "seeds": [int(s) for s in seeds],
            "noise": noise.to_dict(), "images": int(len(x))}
