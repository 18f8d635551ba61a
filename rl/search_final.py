"""After a search: the final QAT at the best policy, its ONNX export and report, the objective summary."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any



def final_qat(model: str, policy: Any, state_dict: dict[str, Any], *, dataset: str,
              epochs: float | None = None, steps: int | None = None, train_limit: int | None = None,
              seed: int = 0, lr: float = 2e-4, progress: bool = False) -> tuple[Any, float]:
    """QAT at ``policy`` from the 8-bit QAT weights (``steps`` if given, else ``epochs``, default
    1); returns ``(model, top-1 % on the test split)``."""
    from cimc.data import load_dataset
    from cimc.training import evaluate, finetune

    train_data = load_dataset(dataset, "train", limit=train_limit)
    if steps is None and epochs is None:
        epochs = 1.0
    net = finetune(model, policy, state_dict, train_data, steps=steps,
                   epochs=None if steps is not None else epochs, lr=lr, seed=seed,
                   progress=progress)
    return net, float(evaluate(net, dataset, "test"))


def finalize(out_dir: Path, model: str, best_policy: Any, state_dict: dict[str, Any], *,
             dataset: str, hw: Any, final_epochs: float | None = 1.0,
             final_steps: int | None = None, train_limit: int | None = None, seed: int = 0,
             progress: bool = False, show: bool = True, energy: Any = None,
             objective: str = "latency") -> dict[str, Any]:
    """After the search: full QAT at the best policy, ONNX QCDQ export and ``cimc report``.

    Writes ``out_dir/best_model.onnx``, ``best_policy_model.json`` (the policy with its model),
    ``best_report.json`` and ``best_report.png``. The report is computed from the exported file
    (``xbar_report(import_onnx(path).module, hw)``) on the search's hardware, so its latency is
    the compiled program's, not the search's estimate. Returns the numbers for ``summary.json``:
    ``best_model_onnx``, ``final_test_accuracy``, ``final_epochs``/``final_steps``,
    ``report_latency_us``, ``report_baseline_latency_us``, ``report_speedup``; with an energy
    preset (``energy``) the report has energy, and ``report_energy_uj``, ``report_edp_uj_us``,
    ``report_energy_saving``, ``report_edp_gain`` are added.
    """
    from cimc.frontend import import_onnx
    from cimc.models import export_onnx
    from cimc.models.policy import save_policy
    from cimc.report import plot_report, report_table, xbar_report

    from cimc.safe_write import OutputSet

    net, test_acc = final_qat(model, best_policy, state_dict, dataset=dataset, epochs=final_epochs,
                              steps=final_steps, train_limit=train_limit, seed=seed,
                              progress=progress)
    save_policy(out_dir / "best_policy_model.json", best_policy, model=model)
    onnx_path = export_onnx(net, out_dir / "best_model.onnx")
    report = xbar_report(import_onnx(onnx_path).module, hw, energy=energy)
    report["model"] = str(onnx_path)
    if objective != "latency":
        report["objective"] = objective
    with OutputSet() as outs:
        outs.put(out_dir / "best_report.json", json.dumps(report, indent=2) + "\n")
        outs.put(out_dir / "best_report.png", plot_report(report))
    if show:
        from cimc.cli_util import print_table

        print_table(report_table(report))
    return {
        "best_model_onnx": str(onnx_path),
        "final_test_accuracy": test_acc,
        "final_epochs": None if final_steps is not None else final_epochs,
        "final_steps": final_steps,
        "report_latency_us": float(report["total"]["latency_us"]),
        "report_baseline_latency_us": float(report["baseline"]["latency_us"]),
        "report_speedup": float(report["speedup"]),
        **({} if energy is None else {
            "report_energy_uj": float(report["total"]["energy_uj"]),
            "report_edp_uj_us": float(report["total"]["edp_uj_us"]),
            "report_energy_saving": float(report["energy_saving"]),
            "report_edp_gain": float(report["edp_gain"])}),
    }


def objective_summary(cost_model: Any, objective: str, best_policy: Any) -> dict[str, Any]:
    """An energy / EDP search's figures for ``summary.json``: the best policy's and W8A8's
    energy and EDP (the compiled programs', as ``cimc report --energy`` gives them) and
    ``best_objective_gain`` (W8A8's figure over the best policy's); nothing for latency."""
    if objective == "latency":
        return {}
    import numpy as np

    from cimc.rl.env import uniform_policy

    best = cost_model.figures(np.asarray(best_policy))
    base = cost_model.figures(uniform_policy(len(best_policy), 8))
    return {"best_energy_uj": best["energy_uj"], "best_edp_uj_us": best["edp_uj_us"],
            "baseline_energy_uj": base["energy_uj"], "baseline_edp_uj_us": base["edp_uj_us"],
            "best_chip_us": best.get("chip_us"), "baseline_chip_us": base.get("chip_us"),
            "best_objective_gain": cost_model.baseline_value() / cost_model.value(np.asarray(best_policy))}
