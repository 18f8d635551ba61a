"""From the paper's single crossbar to a chip with cimc's optimisations: latency, speedup, throughput.

For ResNet-18, VGG-16 and ViT-B/32 (224x224, seeded weights; W8A8 and a mixed policy whose first
and last layers are 8/8) and the bundled LeNet trained on Fashion-MNIST at its mixed policy
(``examples/lenet_fmnist_mixed.onnx``), on the paper's crossbar (256 x 256, 4-bit cells, 1-bit
DAC, dc, 56 us / 1.4 us) grown into a chip of 1, 4, 16, 64 and 256 arrays (``residency=greedy``,
copies on idle arrays):

* **latency per inference** (one input alone) and the **speedup over the paper's model** (the
  same network at all-8/8 on one crossbar, every tile re-written per inference: the paper's
  baseline) for: ``chip`` (the arrays, no pass), each ``xbar-opt`` pass alone on top of the chip,
  and ``all`` (the ``xbar-opt`` level);
* **throughput** over a stream of 100 inputs (pipelined runs of one input; for programs with
  ``xbar-batch-amortise`` also one run of 100 inputs, whichever is faster).

Run-time plane skipping is measured: the programs with ``xbar-skip-zero-planes`` run on real
inputs (LeNet: the 64 bundled test images; the ImageNet models: seeded normal images, since no
ImageNet data is here) on the exact path, which counts the cycles each tile executed; the
schedule takes those cycles per input (mean over the inputs). Everything is printed side by side
from one run; ``--json`` keeps the numbers.

    .venv/bin/python benchmarks/bench_chip.py                       # everything (about 20 min)
    .venv/bin/python benchmarks/bench_chip.py --models lenet --arrays 1,4
    .venv/bin/python benchmarks/bench_chip.py --models "" --onnx "resnet20 searched=r20.onnx" \
        --inputs examples/fmnist_test64_x.npy           # any ONNX file, e.g. a search's export
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "lenet_fmnist_mixed.onnx"
PASSES = ("xbar-narrow-slices", "xbar-pack", "xbar-skip-zero-weights", "xbar-skip-zero-planes",
          "xbar-batch-amortise")
SHORT = {"xbar-narrow-slices": "narrow", "xbar-pack": "pack", "xbar-skip-zero-weights": "zero-w",
         "xbar-skip-zero-planes": "zero-planes", "xbar-batch-amortise": "amortise"}


def mixed_policy(name: str) -> np.ndarray:
    """A fixed mixed policy: first and last layers 8/8, the others from {4, 5, 6, 8} (seeded)."""
    from cimc.models import num_layers

    n = num_layers(name)
    rng = np.random.default_rng(12)
    pol = np.stack([rng.choice([4, 5, 6, 8], n), rng.choice([4, 5, 6, 8], n)], axis=1)
    pol[0] = pol[-1] = 8
    return pol


def load(name: str, policy: str):
    """(label, cimq module, inputs) of a benchmark model."""
    from cimc.frontend import import_onnx
    from cimc.models import input_shape, zoo_onnx

    if name == "lenet":
        x = np.load(ROOT / "examples" / "fmnist_test64_x.npy")
        return "LeNet FMNIST (bundled, mixed)", import_onnx(EXAMPLE).module, x.astype(np.float32)
    pol = None if policy == "w8a8" else mixed_policy(name)
    module = import_onnx(zoo_onnx(name, pol)).module
    x = np.random.default_rng(0).standard_normal((2, *input_shape(name))).astype(np.float32)
    return f"{name} {policy}", module, x


def programs(module, hw) -> dict[str, object]:
    """The paper's ``xbar`` program, it plus each pass alone, and ``xbar-opt`` (all)."""
    from cimc.context import make_context
    from cimc.passes.xbar_pipeline import OPT_PASSES
    from cimc.pipeline import lower

    base = module.clone()
    lower(base, "xbar", hw=hw)
    out = {"paper": base, "chip": base}
    for name, make in OPT_PASSES:
        prog = base.clone()
        make().apply(make_context(), prog)
        out[SHORT[name]] = prog
    every = base.clone()
    for _, make in OPT_PASSES:
        make().apply(make_context(), every)
    out["all"] = every
    return out


def measure(prog, x, hw):
    """Cycles per tile executed by ``x`` (exact path) and the number of inputs."""
    from cimc.exec.xbar_exec import run_xbar

    res = run_xbar(prog, [x], hw=hw, fast=True)
    return res.tile_cycles, x.shape[0], res.report["total"]


def scaled(measured, n: int, k: int):
    """Measured cycles per tile for ``k`` inputs (the mean over the ``n`` measured, rounded)."""
    if measured is None:
        return None
    return {layer: {t: int(round(c * k / n)) for t, c in tiles.items()} for layer, tiles in measured.items()}


def evaluate(prog, hw, measured, n: int, amortised: bool, stream: int) -> dict:
    from cimc.chip_report import chip_schedule

    one = chip_schedule(prog, hw, batch=1, stream=stream, measured=scaled(measured, n, 1), events=False)
    out = {"latency_us": one.latency_us, "stream_per_input_us": one.stream_us / stream, "stream_batch": 1,
           "writes_per_inference": one.writes_per_inference, "resident_arrays": one.resident_arrays}
    if amortised:
        big = chip_schedule(prog, hw, batch=stream, stream=stream, measured=scaled(measured, n, stream),
                            events=False)
        if big.stream_us / stream < out["stream_per_input_us"]:
            out.update(stream_per_input_us=big.stream_us / stream, stream_batch=stream,
                       writes_per_inference=big.writes_per_inference)
    return out


def load_file(spec: str, inputs: Path | None):
    """(label, cimq module, inputs) of ``LABEL=FILE.onnx``; inputs from ``--inputs`` or seeded normal."""
    from cimc.frontend import import_onnx

    label, _, path = spec.rpartition("=")
    result = import_onnx(Path(path))
    if inputs is not None:
        x = np.load(inputs).astype(np.float32)
    else:
        shape = result.inputs[0].shape[1:]
        x = np.random.default_rng(0).standard_normal((2, *shape)).astype(np.float32)
    return label or Path(path).stem, result.module, x


def paper_baseline(module, hw) -> tuple[float, float]:
    """The paper's latency on one crossbar: (all-8/8, the model's policy)."""
    from cimc.report import xbar_report

    rep = xbar_report(module, hw)
    return rep["baseline"]["paper_latency_us"], rep["total"]["paper_latency_us"]


def bench_model(name: str, policy: str, arrays: list[int], stream: int, loaded=None) -> dict:
    from cimc.chip_report import paper_hardware
    from cimc.target.hw import Hardware

    t0 = time.perf_counter()
    label, module, x = loaded or load(name, policy)
    hw = Hardware()
    base_w8a8, base_policy = paper_baseline(module, hw)
    progs = programs(module, hw)
    meas = {k: measure(progs[k], x, hw) for k in ("zero-planes", "all")}
    rows = []
    for a in arrays:
        chip = dataclasses.replace(hw, arrays=a, residency="greedy")
        row = {"arrays": a}
        for key, prog in progs.items():
            if key == "paper" and a != arrays[0]:
                continue
            m = meas.get(key)
            r = evaluate(prog, paper_hardware(hw) if key == "paper" else chip, m[0] if m else None,
                         m[1] if m else 1, key in ("amortise", "all"), stream)
            r["speedup"] = base_w8a8 / r["latency_us"]
            r["stream_speedup"] = base_w8a8 / r["stream_per_input_us"]
            row[key] = r
        rows.append(row)
    skipped = {k: v[2]["skipped_cycles"] / max(v[2]["skipped_cycles"] + v[2]["executes"], 1) for k, v in meas.items()}
    return {"model": label, "paper_w8a8_us": base_w8a8, "paper_policy_us": base_policy,
            "paper_speedup": base_w8a8 / base_policy, "skipped_fraction": skipped, "inputs": int(x.shape[0]),
            "rows": rows, "seconds": time.perf_counter() - t0}


def print_model(res: dict, stream: int) -> None:
    keys = ["chip", *SHORT.values(), "all"]
    print(f"\n== {res['model']}: paper all-8/8 on one crossbar {res['paper_w8a8_us']:,.0f} us; the policy "
          f"{res['paper_policy_us']:,.0f} us (the paper's speedup {res['paper_speedup']:.3f}x); "
          f"cycles skipped: zero-planes alone {100 * res['skipped_fraction']['zero-planes']:.1f}%, "
          f"all {100 * res['skipped_fraction']['all']:.1f}% ({res['inputs']} inputs); {res['seconds']:.0f} s")
    print("latency per inference (us) / speedup over the paper's all-8/8 single crossbar")
    print(f"{'arrays':>6} " + " ".join(f"{k:>19}" for k in keys))
    for row in res["rows"]:
        cells = [f"{row[k]['latency_us']:>10,.0f} {row[k]['speedup']:>7.2f}x" for k in keys]
        print(f"{row['arrays']:>6} " + " ".join(cells))
    print(f"throughput over a stream of {stream} (inferences/s; * = one run of {stream}, amortised)")
    print(f"{'arrays':>6} " + " ".join(f"{k:>19}" for k in keys))
    for row in res["rows"]:
        cells = [f"{1e6 / row[k]['stream_per_input_us']:>17,.1f}{'*' if row[k]['stream_batch'] > 1 else ' '} "
                 for k in keys]
        print(f"{row['arrays']:>6} " + " ".join(cells))
    one = res["rows"][0]
    print(f"all optimisations at {one['arrays']} array(s): {one['all']['speedup']:.3f}x over the paper's "
          f"all-8/8 = {one['all']['speedup'] / res['paper_speedup']:.4f}x the paper model's speedup "
          f"({res['paper_speedup']:.3f}x)")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="lenet,resnet18,vgg16,vit_b32")
    ap.add_argument("--policies", default="w8a8,mixed")
    ap.add_argument("--arrays", default="1,4,16,64,256")
    ap.add_argument("--stream", type=int, default=100)
    ap.add_argument("--onnx", action="append", default=[],
                    help="LABEL=FILE.onnx: also a model from a file (repeatable)")
    ap.add_argument("--inputs", type=Path, help=".npy inputs for the --onnx models")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    arrays = [int(a) for a in args.arrays.split(",")]
    results = []
    for spec in args.onnx:
        res = bench_model(spec, "file", arrays, args.stream, loaded=load_file(spec, args.inputs))
        print_model(res, args.stream)
        sys.stdout.flush()
        results.append(res)
    for name in filter(None, args.models.split(",")):
        for policy in (["mixed"] if name == "lenet" else args.policies.split(",")):
            res = bench_model(name, policy, arrays, args.stream)
            print_model(res, args.stream)
            sys.stdout.flush()
            results.append(res)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
