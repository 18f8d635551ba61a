"""Energy accounting: what it costs ``cimc report``, and its figures beside published ones.

Part 1, overhead. For each model (default ResNet-18 and VGG-16 at 224x224, W8A8, seeded weights;
imported once), timings interleaved in alternating order, best of ``--repeat``:

* ``report``: :func:`cimc.report.xbar_report` (compile to ``xbar`` and its all-8/8 twin, read
  the counts off both programs, the chip schedule), no energy;
* ``report + energy``: the same with ``energy=load_preset(...)`` (per-event energies, energy per
  layer and component, host ops, totals, EDP, the baseline's energy, area);

and the ratio (goal: energy adds under 5 %). On a loaded machine that end-to-end ratio wanders by
more than the effect, so the work energy adds is also timed directly (``energy steps``: resolve
the preset, price every layer of the program and of its all-8/8 twin, host ops of the twin,
totals, area, one-time programming) on counts read once, and given as a share of ``report``.

Part 2, figures to compare with published numbers (every built-in preset):

* one read of a 128 x 128 crossbar with 2-bit cells, 1-bit DACs and one 8-bit conversion per
  column (ISAAC's array as in the PUMA simulator), priced by the preset, beside PUMA's derived
  ~274 pJ for one MVM including its periphery (2.74 mW x 100 ns);
* per model, W8A8, on the paper's hardware (256 x 256, 4-bit cells, 1-bit DAC, lossless ADC,
  1.4 us per cycle) and on an ISAAC-like one (128 x 128, 2-bit cells, 8-bit ADC, 100 ns per
  cycle): energy per inference, pJ per MAC (MACs = sum of m * n * P * H over crossbar layers),
  and the share of ADC and leakage.

Usage: ``.venv/bin/python benchmarks/bench_energy.py [--repeat 5] [--models resnet18 vgg16]
[--json out.json]``.
"""

from __future__ import annotations

import argparse
import gc
import json
import time
from pathlib import Path
from typing import Any

PUMA_MVM_PJ = 274.0
"""PUMA simulator: one MVM including periphery, 100 ns at 2.74 mW (derived; shared reference)."""


def overhead(module: Any, hw: Any, preset: Any, repeat: int) -> dict[str, Any]:
    from cimc.report import xbar_report

    fns = {
        "report": lambda: xbar_report(module, hw),
        "report + energy": lambda: xbar_report(module, hw, energy=preset),
    }
    for fn in fns.values():
        fn()  # warm-up
    best = {k: float("inf") for k in fns}
    for i in range(repeat):
        for k, fn in (fns.items() if i % 2 == 0 else reversed(fns.items())):  # alternate the order
            gc.collect()
            t0 = time.perf_counter()
            fn()
            best[k] = min(best[k], time.perf_counter() - t0)
    return {"seconds": best, "ratio": best["report + energy"] / best["report"]}


def energy_steps(module: Any, hw: Any, preset: Any, repeat: int) -> float:
    """Best time of the steps :func:`cimc.report.xbar_report` adds for energy, on counts read once."""
    import copy

    from cimc.report import (add_layer_energy, chip_summary, compile_pair, host_ops_row, layer_rows,
                             one_time_programming)
    from cimc.target.counters import Counters
    from cimc.target.energy import area_mm2, energy_model, total_fields

    compiled, base = compile_pair(module, "xbar", hw, baseline=True)
    rows, chip = layer_rows(compiled, hw), chip_summary(compiled, hw)
    base_rows, base_chip = layer_rows(base, hw), chip_summary(base, hw)
    host = host_ops_row(compiled, None)
    best = float("inf")
    for _ in range(repeat):
        r, b = copy.deepcopy(rows), copy.deepcopy(base_rows)
        gc.collect()
        t0 = time.perf_counter()
        model = energy_model(preset, hw)
        host_e = {**host, **model.fields(Counters(host_elements=host["host_elements"],
                                                            host_macs=host["host_macs"]), 0.0)}
        add_layer_energy(r, chip["layers"], model)
        total_fields((*r, host_e), 1.0)
        area_mm2(preset, hw)
        one_time_programming(chip, model)
        add_layer_energy(b, base_chip["layers"], model)
        total_fields((*b, host_ops_row(base, model)), 1.0)
        best = min(best, time.perf_counter() - t0)
    return best


def one_read_pj(preset: Any) -> dict[str, float]:
    """Energy of one cycle of a full 128 x 128 ISAAC-like array (8-bit ADC per column, 1-bit DACs)."""
    from cimc.target.counters import Counters
    from cimc.target.energy import energy_model
    from cimc.target.hw import Hardware

    hw = Hardware(rows=128, cols=128, cell_bits=2, dac_bits=1, adc_bits=8, t_exec_us=0.1)
    model = energy_model(preset, hw)
    c = Counters(executes=1, adc_conversions=128, dac_activations=128, cell_reads=128 * 128, shift_adds=128)
    parts = model.component_pj(c, 0.0)
    parts["leakage"] = model.leakage_w * 0.1 * 1e6  # one array over the 100 ns read
    return parts


def model_figures(module: Any, hw: Any, preset: Any) -> dict[str, Any]:
    from cimc.report import xbar_report

    rep = xbar_report(module, hw, energy=preset, baseline=False)
    macs = sum(r["m"] * r["n"] * r["P"] * r["H"] for r in rep["layers"])
    total = rep["total"]
    parts = total["energy_uj_by_component"]
    return {"energy_uj": total["energy_uj"], "latency_us": total["latency_us"], "macs": macs,
            "pj_per_mac": 1e6 * total["energy_uj"] / macs, "adc_bits": rep["energy"]["adc_bits"],
            "share": {k: v / total["energy_uj"] for k, v in parts.items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="*", default=["resnet18", "vgg16"])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--preset", default="isaac-puma-32nm", help="preset of the overhead timing")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    from cimc.frontend import import_onnx
    from cimc.models import zoo_onnx
    from cimc.target.energy import builtin_presets, load_preset
    from cimc.target.hw import Hardware

    paper = Hardware()
    isaac = Hardware(rows=128, cols=128, cell_bits=2, dac_bits=1, adc_bits=8, t_exec_us=0.1)
    presets = {name: load_preset(name) for name in builtin_presets()}
    results: dict[str, Any] = {"overhead": {}, "one_read_pj": {}, "models": {}}
    modules = {name: import_onnx(zoo_onnx(name)).module for name in args.models}

    print("1) overhead of energy accounting in cimc report (best of", args.repeat, "runs)")
    for name, module in modules.items():
        res = overhead(module, paper, presets[args.preset], args.repeat)
        results["overhead"][name] = res
        res["energy_steps_s"] = energy_steps(module, paper, presets[args.preset], args.repeat)
        s = res["seconds"]
        print(f"   {name:10s} report {s['report']:.3f} s, report + energy {s['report + energy']:.3f} s "
              f"-> {100 * (res['ratio'] - 1):+.1f} %; energy steps alone {1e3 * res['energy_steps_s']:.2f} ms "
              f"= {100 * res['energy_steps_s'] / s['report']:.2f} % of report")
    print("   goal: energy accounting adds under 5 % to cimc report")

    print(f"\n2) one read of a 128x128 array, 2-bit cells, 1-bit DAC, 8-bit ADC per column (pJ); "
          f"PUMA: ~{PUMA_MVM_PJ:.0f} pJ per MVM incl. periphery")
    for pname, preset in presets.items():
        parts = one_read_pj(preset)
        results["one_read_pj"][pname] = parts
        detail = ", ".join(f"{k} {v:.3g}" for k, v in parts.items() if v)
        print(f"   {pname:16s} {sum(parts.values()):8.1f} pJ ({detail}) = "
              f"{sum(parts.values()) / PUMA_MVM_PJ:.2f}x PUMA")

    print("\n3) energy per inference, W8A8, batch 1")
    for hname, hw in (("paper 256x256 c4 lossless 1.4us", paper), ("ISAAC-like 128x128 c2 8-bit 100ns", isaac)):
        for name, module in modules.items():
            for pname, preset in presets.items():
                fig = model_figures(module, hw, preset)
                results["models"].setdefault(hname, {}).setdefault(name, {})[pname] = fig
                print(f"   {hname:34s} {name:9s} {pname:16s} {fig['energy_uj']:10.1f} uJ "
                      f"{fig['pj_per_mac']:8.2f} pJ/MAC  ADC {100 * fig['share']['adc']:5.1f} % "
                      f"(at {fig['adc_bits']} bits), leakage {100 * fig['share']['leakage']:5.1f} %, "
                      f"{fig['macs'] / 1e9:.2f} GMAC, {fig['latency_us'] / 1e3:.1f} ms")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
