"""Import time of full-size models against onnxruntime's session creation, side by side.

For ResNet-18, VGG-16 and ViT-B/32 (224x224, Brevitas, seeded weights, W8A8 QCDQ) this prints,
in one run: the time cimc needs to import the ONNX file into ``cimq`` (and to print and re-parse
the IR), the time onnxruntime needs to create an inference session for the same file, their
ratio, and the IR size. Usage: ``.venv/bin/python benchmarks/bench_import.py [--models ...]``.
"""

from __future__ import annotations

import argparse
import gc
import json
import time
from pathlib import Path


def best_of(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        gc.collect()
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--models", nargs="+", default=["resnet18", "vgg16", "vit_b32"])
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    import onnxruntime as ort

    from cimc.frontend import import_onnx
    from cimc.ir_io import module_text, parse_module_text
    from cimc.models import zoo_onnx

    rows = []
    for name in args.models:
        path = zoo_onnx(name)
        size_mb = path.stat().st_size / 2**20

        def ort_session() -> None:
            so = ort.SessionOptions()
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
            ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])

        t_ort = best_of(ort_session, args.repeat)
        t_imp = best_of(lambda: import_onnx(path), args.repeat)
        module = import_onnx(path).module
        t0 = time.perf_counter()
        text = module_text(module)
        t_print = time.perf_counter() - t0
        t0 = time.perf_counter()
        reparsed = parse_module_text(text, name)
        t_parse = time.perf_counter() - t0
        assert reparsed.is_structurally_equivalent(module)
        n_ops = sum(1 for _ in module.walk())
        rows.append(
            dict(model=name, onnx_mb=round(size_mb, 1), cimc_import_s=round(t_imp, 3),
                 ort_session_s=round(t_ort, 3), ratio=round(t_imp / t_ort, 2),
                 print_s=round(t_print, 3), parse_s=round(t_parse, 3), ir_ops=n_ops,
                 ir_kb=round(len(text) / 1024, 1))
        )
    header = ["model", "onnx_mb", "cimc_import_s", "ort_session_s", "ratio", "print_s", "parse_s", "ir_ops", "ir_kb"]
    print(" | ".join(f"{h:>13s}" for h in header))
    for r in rows:
        print(" | ".join(f"{str(r[h]):>13s}" for h in header))
    print("ratio = cimc import time / onnxruntime session creation time (same file, same run)")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
