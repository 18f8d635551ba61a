"""Accuracy on imperfect devices: a LeNet on Fashion-MNIST at W8A8 and at a mixed policy.

Trains (once, cached in ``--work``) the pipeline of ``scripts/make_example.py``: float LeNet
(2 epochs) -> 8-bit QAT (1 epoch) -> the W8A8 model, and from it the bundled example's mixed
policy (fine-tuned 1 epoch); exports both to ONNX QCDQ and compiles them for the paper's
crossbar. Then runs the Fashion-MNIST test split bit-serially on devices with growing noise,
``--seeds`` seeds per level, and prints the top-1 accuracy (mean and spread over the seeds) per
level as a table; writes ``--out``.json / .png / .md.

The swept parameter is ``--param`` (default ``programming_sigma``, the relative programming
error of each cell); the other noise parameters are 0 unless ``--base`` names a noise preset.

    .venv/bin/python scripts/noise_accuracy.py [--limit N] [--sigmas 0,0.05,0.1,0.2,0.3]
        [--seeds 3] [--work runs/noise] [--out benchmarks/results/noise_accuracy]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np

POLICY = [[8, 8], [4, 4], [4, 6], [2, 4], [8, 8]]  # the bundled example's (examples/*.json)


def models(work: Path) -> dict[str, Path]:
    """ONNX files of the W8A8 and the mixed LeNet (trained once, cached in ``work``)."""
    from cimc import models as zoo
    from cimc import training

    out = {"W8A8": work / "lenet_w8a8.onnx", "mixed": work / "lenet_mixed.onnx"}
    if all(p.exists() for p in out.values()):
        return out
    work.mkdir(parents=True, exist_ok=True)
    fp = zoo.build("lenet", quant=False, seed=0)
    training.train(fp, "fashion_mnist", epochs=2, lr=2e-3, seed=0, progress=False)
    q8 = training.quantize_from_float("lenet", fp.state_dict(), seed=0)
    training.train(q8, "fashion_mnist", epochs=1, lr=5e-4, seed=0, progress=False)
    mixed = training.finetune("lenet", np.array(POLICY), q8.state_dict(), "fashion_mnist", epochs=1,
                              progress=False)
    accs = {"W8A8": training.evaluate(q8, "fashion_mnist", "test"),
            "mixed": training.evaluate(mixed, "fashion_mnist", "test")}
    zoo.export_onnx(q8, out["W8A8"], batch=1)
    zoo.export_onnx(mixed, out["mixed"], batch=1)
    (work / "brevitas_accuracy.json").write_text(json.dumps(accs, indent=1) + "\n")
    return out


def sweep(args: argparse.Namespace) -> dict:
    from cimc.data import load_dataset
    from cimc.exec.noise_runs import crossbar_accuracy
    from cimc.frontend import import_onnx
    from cimc.pipeline import lower
    from cimc.target.hw import Hardware
    from cimc.target.noise import NoiseModel, load_noise

    hw = Hardware()
    x, y = load_dataset("fashion_mnist", "test", limit=args.limit)
    sigmas = [float(s) for s in args.sigmas.split(",")]
    seeds = list(range(args.seeds))
    base = load_noise(args.base) if args.base else NoiseModel(name="sweep")
    result = {"hardware": hw.to_dict(), "images": int(len(x)), "param": args.param, "sigmas": sigmas,
              "seeds": seeds, "base": base.to_dict(), "models": {}}
    for name, path in models(Path(args.work)).items():
        module = import_onnx(path).module
        lower(module, "xbar", hw=hw)
        rows = []
        for sigma in sigmas:
            t0 = time.perf_counter()
            noise = dataclasses.replace(base, **{args.param: sigma}, name=f"{args.param}={sigma:g}")
            ideal = sigma == 0 and not args.base
            acc = crossbar_accuracy(module, x, y, hw, noise=None if ideal else noise, seeds=seeds,
                                    batch=args.batch)
            per_seed = [acc["accuracy_top1"]] * len(seeds) if ideal else acc["per_seed"]
            rows.append({"sigma": sigma, "per_seed": per_seed, "mean": float(np.mean(per_seed)),
                         "std": float(np.std(per_seed)), "seconds": time.perf_counter() - t0})
            print(f"{name:6s} {args.param}={sigma:<6g} top-1 {rows[-1]['mean']:6.2f}% "
                  f"(std {rows[-1]['std']:.2f}, seeds {per_seed}) {rows[-1]['seconds']:.0f} s", flush=True)
        result["models"][name] = rows
    return result


def table(result: dict) -> str:
    names = list(result["models"])
    lines = [f"| {result['param']} | " + " | ".join(f"{n} top-1 % (mean ± std)" for n in names) + " |",
             "|---|" + "---|" * len(names)]
    for i, sigma in enumerate(result["sigmas"]):
        cells = [f"{result['models'][n][i]['mean']:.2f} ± {result['models'][n][i]['std']:.2f}" for n in names]
        lines.append(f"| {sigma:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(result: dict) -> bytes:
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cimc.chip_report import hardware_title

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for name, rows in result["models"].items():
        s = [r["sigma"] for r in rows]
        ax.errorbar(s, [r["mean"] for r in rows], yerr=[r["std"] for r in rows], marker="o", capsize=3,
                    label=name)
    ax.set_xlabel(f"{result['param']} (relative conductance error of each cell)")
    ax.set_ylabel(f"top-1 accuracy (%), mean ± std over {len(result['seeds'])} seeds")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    fig.suptitle(f"LeNet, Fashion-MNIST test split ({result['images']:,} images), bit-serial\n"
                 f"{hardware_title(result['hardware'])}", fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    return buf.getvalue()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--limit", type=int, default=None, help="first N test images (default: all 10,000)")
    ap.add_argument("--sigmas", default="0,0.05,0.1,0.2,0.3")
    ap.add_argument("--param", default="programming_sigma")
    ap.add_argument("--base", default=None, help="noise preset for the other parameters (default: all 0)")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--work", default="runs/noise")
    ap.add_argument("--out", default="benchmarks/results/noise_accuracy")
    args = ap.parse_args()
    from cimc.safe_write import OutputSet

    result = sweep(args)
    md = table(result)
    print(md)
    out = Path(args.out)
    with OutputSet() as outs:
        outs.put(out.with_suffix(".json"), json.dumps(result, indent=1) + "\n")
        outs.put(out.with_suffix(".md"), md + "\n")
        outs.put(out.with_suffix(".png"), plot(result))


if __name__ == "__main__":
    main()
