"""Reference outputs and counters of many models, saved once and compared after a refactor.

``save`` runs every model below through the public entry points (``import_onnx``,
``cimc.exec.run_at_level``, ``cimc.report.xbar_report``) and writes, per model and per level, a
hash of every output array (dtype, shape and bytes) and every counter of every crossbar layer
(writes, cells written, cycles, ADC conversions and saturations, DAC activations, latency) plus
the report's rows (descriptor, bits, slices, tiles, writes, executes, latency, lossless ADC bits,
8/8 baseline, speedup). ``check`` recomputes everything and compares it with the saved file,
printing every difference; exit status 1 if there is one.

Models: the 52 random models of ``tests/test_xbar_equivalence.py`` (40 Brevitas conv / MLP /
attention nets from ``tests/brevitas_zoo.py`` and lenet / resnet_small / vit_small at 4 random
policies each, on the test's tiled hardware grid), lenet / resnet_small / vit_small on the paper's
hardware, and the full-size resnet18 / vgg16 / vit_b32 (W8A8, paper hardware). Levels: ``cimq``,
``xbar`` bit-serial (``fast=False``), ``xbar`` fast path (``fast=True``), ``xbar`` with a lossy
ADC (bit-serial, saturating), ``xbar-opt`` (bit-serial and fast). The full-size models run the
fast path only (``--full-bitserial`` adds ResNet-18 bit-serially).

Hashes are of bit patterns, so the comparison is exact; float host ops make them specific to
the machine's numpy/BLAS build, so save and check on the same machine.

    .venv/bin/python scripts/references.py save  [--out FILE] [--only NAME...]
    .venv/bin/python scripts/references.py check [--ref FILE] [--only NAME...]
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import itertools
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
DEFAULT = ROOT / "benchmarks" / "results" / "references.json"

GRID = list(itertools.product(("dc", "dr", "of"), (1, 2, 4), (1, 2), (16, 32)))
BREVITAS = [("conv", s) for s in range(14)] + [("mlp", s) for s in range(14)] + [
    ("attention", s) for s in range(12)
]
ZOO = [(name, s) for name in ("lenet", "resnet_small", "vit_small") for s in range(4)]
SMALL = ("lenet", "resnet_small", "vit_small")
FULL = ("resnet18", "vgg16", "vit_b32")
COUNTERS = ("writes", "cells_written", "executes", "adc_conversions", "adc_saturations",
            "dac_activations", "latency_us")
REPORT_KEYS = ("name", "kind", "m", "n", "P", "H", "w_bits", "a_bits", "slices", "phys_rows",
               "phys_cols", "row_tiles", "col_tiles", "chunks", "tiles", "writes", "executes",
               "latency_us", "lossless_adc_bits", "share", "baseline_latency_us")


def _hardware(index: int):
    from cimc.target.hw import Hardware

    mapping, c, d, size = GRID[(7 * index) % len(GRID)]
    return Hardware(rows=size, cols=size, cell_bits=c, dac_bits=d, mapping=mapping)


def _hash(arr: np.ndarray) -> str:
    a = np.ascontiguousarray(arr)
    h = hashlib.sha256(f"{a.dtype.str}{a.shape}".encode())
    h.update(a.tobytes())
    return h.hexdigest()[:24]


def _outputs(outs) -> list[str]:
    return [_hash(np.asarray(o)) for o in outs]


def _run(module, level: str, x: np.ndarray, hw, fast) -> dict[str, Any]:
    from cimc.exec import run_at_level

    res = run_at_level(module, level, [x], hw=hw, fast=fast)
    out: dict[str, Any] = {"outputs": _outputs(res.outputs)}
    if level.startswith("xbar"):
        out["layers"] = [
            {"name": r["name"], "path": r["path"], **{k: r[k] for k in COUNTERS}}
            for r in res.report["layers"]
        ]
        out["total"] = {k: res.report["total"][k] for k in COUNTERS}
    return out


def _report(module, hw, level: str) -> dict[str, Any]:
    from cimc.report import xbar_report

    rep = xbar_report(module, hw, level=level)
    return {
        "layers": [{k: r[k] for k in REPORT_KEYS if k in r} for r in rep["layers"]],
        "total": rep["total"],
        "baseline": rep.get("baseline"),
        "speedup": rep.get("speedup"),
    }


def _record(module, x: np.ndarray, hw, *, bitserial: bool = True, lossy: bool = True) -> dict:
    rec: dict[str, Any] = {"hw": hw.to_dict(), "input": _hash(x)}
    t0 = time.perf_counter()
    rec["cimq"] = _run(module, "cimq", x, None, None)
    rec["xbar_fast"] = _run(module, "xbar", x, hw, True)
    rec["xbar_opt_fast"] = _run(module, "xbar-opt", x, hw, True)
    if bitserial:
        rec["xbar_bitserial"] = _run(module, "xbar", x, hw, False)
        rec["xbar_opt_bitserial"] = _run(module, "xbar-opt", x, hw, False)
    if lossy:
        bits = max(1, hw.lossless_adc_bits(hw.rows) - 2)
        rec["xbar_lossy"] = _run(module, "xbar", x, dataclasses.replace(hw, adc_bits=bits), False)
    rec["report_xbar"] = _report(module, hw, "xbar")
    rec["report_xbar_opt"] = _report(module, hw, "xbar-opt")
    rec["_seconds"] = time.perf_counter() - t0
    return rec


def _cases(args) -> list[tuple[str, Any]]:
    """``(name, thunk)`` pairs; a thunk returns ``(module, x, hw, options)``."""
    cases: list[tuple[str, Any]] = []

    def brevitas(family: str, seed: int, tmp: Path):
        import brevitas_zoo
        from cimc.frontend import import_onnx

        case = brevitas_zoo.GENERATORS[family](seed)
        path = brevitas_zoo.export(case, tmp / f"{case.name}.onnx")
        hw = _hardware(BREVITAS.index((family, seed)))
        return import_onnx(path).module, case.x.numpy(), hw, {}

    def zoo_random(name: str, seed: int, tmp: Path):
        from cimc.frontend import import_onnx
        from cimc.models import build, export_onnx, input_shape, num_layers

        rng = np.random.default_rng(1000 + seed)
        policy = rng.integers(2, 9, size=(num_layers(name), 2))
        path = export_onnx(build(name, policy, seed=seed), tmp / f"{name}.onnx")
        x = rng.standard_normal((1, *input_shape(name))).astype(np.float32)
        hw = _hardware(len(BREVITAS) + ZOO.index((name, seed)))
        if hw.rows < 32:
            hw = dataclasses.replace(hw, rows=32, cols=32)
        return import_onnx(path).module, x, hw, {}

    def zoo_paper(name: str, tmp: Path):
        from cimc.frontend import import_onnx
        from cimc.target.hw import Hardware
        from cimc.models import build, export_onnx, input_shape, num_layers

        rng = np.random.default_rng(77)
        policy = rng.integers(2, 9, size=(num_layers(name), 2))
        path = export_onnx(build(name, policy, seed=3), tmp / f"{name}.onnx")
        x = rng.standard_normal((2, *input_shape(name))).astype(np.float32)
        return import_onnx(path).module, x, Hardware(), {}

    def full(name: str, tmp: Path):
        from cimc.frontend import import_onnx
        from cimc.target.hw import Hardware
        from cimc.models import input_shape, zoo_onnx

        x = np.random.default_rng(0).standard_normal((1, *input_shape(name))).astype(np.float32)
        opts = {"bitserial": args.full_bitserial and name == "resnet18", "lossy": False}
        return import_onnx(zoo_onnx(name)).module, x, Hardware(), opts

    for family, seed in BREVITAS:
        cases.append((f"{family}{seed}", lambda tmp, f=family, s=seed: brevitas(f, s, tmp)))
    for name, seed in ZOO:
        cases.append((f"{name}{seed}", lambda tmp, n=name, s=seed: zoo_random(n, s, tmp)))
    for name in SMALL:
        cases.append((f"{name}-paper", lambda tmp, n=name: zoo_paper(n, tmp)))
    for name in FULL:
        cases.append((name, lambda tmp, n=name: full(n, tmp)))
    if args.only:
        cases = [c for c in cases if c[0] in args.only]
    return cases


def compute(args) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="cimc-ref-") as tmp:
        for name, thunk in _cases(args):
            t0 = time.perf_counter()
            module, x, hw, opts = thunk(Path(tmp))
            out[name] = _record(module, x, hw, **opts)
            print(f"{name:20s} {time.perf_counter() - t0:7.1f} s", flush=True)
    return out


def _diff(a: Any, b: Any, path: str, found: list[str]) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            if key.startswith("_"):
                continue
            if key not in a or key not in b:
                found.append(f"{path}.{key}: only in {'reference' if key in a else 'new run'}")
                continue
            _diff(a[key], b[key], f"{path}.{key}", found)
        return
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            found.append(f"{path}: {len(a)} entries in the reference, {len(b)} now")
            return
        for i, (x, y) in enumerate(zip(a, b)):
            _diff(x, y, f"{path}[{i}]", found)
        return
    if isinstance(a, float) and isinstance(b, float):
        if a != b and abs(a - b) > 1e-9 * max(abs(a), abs(b)):
            found.append(f"{path}: {a!r} -> {b!r}")
        return
    if a != b:
        found.append(f"{path}: {a!r} -> {b!r}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("mode", choices=("save", "check"))
    parser.add_argument("--ref", "--out", dest="ref", type=Path, default=DEFAULT)
    parser.add_argument("--only", nargs="*", help="case names (conv0, lenet1, vgg16, ...)")
    parser.add_argument("--full-bitserial", action="store_true",
                        help="also run ResNet-18 bit-serially (slow)")
    args = parser.parse_args()
    t0 = time.perf_counter()
    new = compute(args)
    if args.mode == "save":
        old = json.loads(args.ref.read_text()) if args.ref.exists() and args.only else {}
        old.update(new)
        args.ref.parent.mkdir(parents=True, exist_ok=True)
        args.ref.write_text(json.dumps(old, indent=1, sort_keys=True) + "\n")
        print(f"saved {len(new)} model(s) to {args.ref} in {time.perf_counter() - t0:.0f} s")
        return 0
    ref = json.loads(args.ref.read_text())
    found: list[str] = []
    for name, rec in new.items():
        if name not in ref:
            found.append(f"{name}: not in the reference file")
            continue
        _diff(ref[name], rec, name, found)
    for line in found:
        print(line)
    print(f"checked {len(new)} model(s) against {args.ref}: {len(found)} difference(s) "
          f"in {time.perf_counter() - t0:.0f} s")
    return 1 if found else 0


if __name__ == "__main__":
    raise SystemExit(main())
