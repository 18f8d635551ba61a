"""Compile time and memory of full-size models to the ``xbar`` level, against onnxruntime.

For ResNet-18, VGG-16 and ViT-B/32 (224x224, Brevitas, seeded weights, W8A8 QCDQ,
:func:`cimc.models.zoo_onnx`) this prints, in one run:

* ``import_s``: ONNX file -> ``cimq`` (:func:`cimc.frontend.import_onnx`);
* ``lower_s``: ``cimq`` -> ``xbar`` (fusion, ``convert-cimq-to-xbar``, ``xbar-tile``: slicing
  and mapping every weight onto cells), so ``compile_s = import_s + lower_s``;
* ``report_s``: :func:`cimc.report.xbar_report` on the imported module (compiles the model and
  its all-8/8 baseline to ``xbar``, as ``cimc report`` does);
* ``compile_mb`` / ``report_mb``: peak resident memory (``ru_maxrss``) of a fresh child process
  doing import + lower (resp. import + report): each measurement runs in its own process, so the
  numbers include the interpreter, numpy, onnx and the loaded model;
* ``ort_s``: onnxruntime session creation for the same file, graph optimisations off;
* ``ratio``: compile_s / ort_s;
* ``ir_ops`` / ``ir_kb``: operations and printed size of the ``xbar`` IR (weights and cells are
  blobs outside the text).

Timings are best of ``--repeat`` child runs, interleaved over the models. Usage:
``.venv/bin/python benchmarks/bench_compile.py [--models ...] [--repeat 2] [--json out.json]``.
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import time
from pathlib import Path


def child(name: str, what: str) -> None:
    """Runs in a fresh process: one measurement, printed as JSON on the last line."""
    import resource

    from cimc.frontend import import_onnx
    from cimc.target.hw import Hardware
    from cimc.models import zoo_onnx

    path = zoo_onnx(name)
    hw = Hardware()
    t0 = time.perf_counter()
    module = import_onnx(path).module
    t_import = time.perf_counter() - t0
    out: dict = {"import_s": t_import}
    if what == "compile":
        from cimc.ir_io import module_text
        from cimc.pipeline import lower

        t0 = time.perf_counter()
        lower(module, "xbar", hw=hw)
        out["lower_s"] = time.perf_counter() - t0
        text = module_text(module)
        out["ir_ops"] = sum(1 for _ in module.walk())
        out["ir_kb"] = len(text) / 1024
    else:
        from cimc.report import xbar_report

        t0 = time.perf_counter()
        xbar_report(module, hw)
        out["report_s"] = time.perf_counter() - t0
    out["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(out))


def run_child(name: str, what: str) -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", name, what], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise SystemExit(f"child {name} {what} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--models", nargs="+", default=["resnet18", "vgg16", "vit_b32"])
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--child", nargs=2, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(*args.child)
        return

    import onnxruntime as ort

    from cimc.models import zoo_onnx

    best: dict[str, dict] = {name: {} for name in args.models}

    def keep(name: str, res: dict) -> None:
        for k, v in res.items():
            if k in ("ir_ops", "ir_kb"):
                best[name][k] = v
            else:
                best[name][k] = min(best[name].get(k, float("inf")), v)

    for _ in range(args.repeat):  # interleaved over models and measurements
        for name in args.models:
            path = zoo_onnx(name)
            comp = run_child(name, "compile")
            keep(name, {"import_s": comp["import_s"], "lower_s": comp["lower_s"],
                        "compile_mb": comp["peak_mb"], "ir_ops": comp["ir_ops"], "ir_kb": comp["ir_kb"]})
            rep = run_child(name, "report")
            keep(name, {"report_s": rep["report_s"], "report_mb": rep["peak_mb"]})
            gc.collect()
            t0 = time.perf_counter()
            so = ort.SessionOptions()
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
            ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
            keep(name, {"ort_s": time.perf_counter() - t0})
    rows = []
    for name in args.models:
        b = best[name]
        compile_s = b["import_s"] + b["lower_s"]
        rows.append(dict(
            model=name, import_s=round(b["import_s"], 2), lower_s=round(b["lower_s"], 2),
            compile_s=round(compile_s, 2), report_s=round(b["report_s"], 2),
            compile_mb=round(b["compile_mb"]), report_mb=round(b["report_mb"]),
            ort_s=round(b["ort_s"], 3), ratio=round(compile_s / b["ort_s"], 1),
            ir_ops=b["ir_ops"], ir_kb=round(b["ir_kb"], 1),
        ))
    header = list(rows[0])
    print(" | ".join(f"{h:>10s}" for h in header))
    for r in rows:
        print(" | ".join(f"{str(r[h]):>10s}" for h in header))
    print("compile = import + lower to xbar; peak MB = ru_maxrss of a fresh child process per "
          "measurement; ratio = compile_s / onnxruntime session creation (graph opt off)")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
