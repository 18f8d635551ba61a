"""Builds the bundled example: LeNet on Fashion-MNIST at a policy found by ``cimc-rl search``.

The set-up's main job (``scripts/demo.sh``) runs what this writes. Steps, each skipped when its
output is already in ``--work`` (so a second run only re-exports and re-measures):

1. ``cimc-rl train``: float LeNet (``--float-epochs``), then 8-bit QAT from it (``--qat-epochs``)
   -> ``WORK/lenet_w8a8/model.pt``, the W8A8 reference;
2. ``cimc-rl search`` from that checkpoint (cimc's DDPG, compiler cost, allowed drop 1 point,
   ``--no-first-last``: the first and last layers are searched too; ``--episodes``), with its
   final QAT of the best policy (``--final-epochs``) and ONNX export;
3. both models exported (W8A8 from the checkpoint, the search's ``best_model.onnx``), costed by
   ``cimc report`` (the paper's latency) and evaluated on the whole Fashion-MNIST test split,
   in Brevitas (the search's final figure for the searched model) and run by cimc at the
   crossbar level (``xbar``, the paper's lossless ADC).

Writes ``examples/lenet_fmnist_w8a8.onnx``, ``examples/lenet_fmnist_searched.onnx``, the policy
``examples/lenet_fmnist_searched.json``, the numbers ``examples/lenet_fmnist_searched.summary.json``
and the first ``--images`` test images with their labels, ``examples/fmnist_test1000.npz``
(uint8 pixels ``x``, labels ``y``). Run by the developers (the files are committed); about
10 minutes on one core of a busy 2-core machine (training 2, 300 episodes 4, final QAT and the
measurements 3); a second run, with everything in ``--work``, about 20 s::

    .venv/bin/python scripts/make_example.py [--work runs/example] [--episodes 300]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "examples"
MODEL = "lenet"
DATASET = "fashion_mnist"


def cimc_rl(*args: str) -> None:
    """Run ``cimc-rl`` of this virtual environment (stop on failure)."""
    subprocess.run([str(Path(sys.executable).parent / "cimc-rl"), *args], check=True)


def train(work: Path, float_epochs: float, qat_epochs: float) -> Path:
    """The 8-bit QAT checkpoint (float pre-training first), trained unless it exists."""
    fp, q8 = work / "lenet_float" / "model.pt", work / "lenet_w8a8" / "model.pt"
    if not fp.exists():
        cimc_rl("train", "--model", MODEL, "--dataset", DATASET, "--float", "--epochs", str(float_epochs),
                "--lr", "2e-3", "--out", str(fp.parent), "--no-progress")
    if not q8.exists():
        cimc_rl("train", "--model", MODEL, "--dataset", DATASET, "--bits", "8", "--init", str(fp),
                "--epochs", str(qat_epochs), "--lr", "5e-4", "--out", str(q8.parent), "--no-progress")
    return q8


def search(work: Path, ckpt: Path, args: argparse.Namespace) -> Path:
    """The search folder, searched and finalised unless it holds a finished search."""
    out = work / "search"
    if not (out / "summary.json").exists() or not (out / "best_model.onnx").exists():
        cimc_rl("search", "--model", MODEL, "--dataset", DATASET, "--ckpt", str(ckpt),
                "--episodes", str(args.episodes), "--warmup", str(args.warmup), "--seed", str(args.seed),
                "--acc-drop", "1", "--no-first-last", "--eval-limit", str(args.eval_limit),
                "--final-epochs", str(args.final_epochs), "--train-limit", "60000",
                "--out", str(out), "--resume", "--no-progress")
    return out


def xbar_top1(onnx: Path, x: np.ndarray, y: np.ndarray) -> float:
    """Top-1 % of ``onnx`` on ``x``/``y`` run by cimc at the crossbar level (``xbar``)."""
    from cimc.exec.noise_runs import crossbar_accuracy
    from cimc.frontend import import_onnx
    from cimc.pipeline import lower
    from cimc.target.hw import Hardware

    module = import_onnx(onnx).module
    lower(module, "xbar", hw=Hardware())
    return float(crossbar_accuracy(module, x, y, Hardware())["accuracy_top1"])


def write_example(search_dir: Path, ckpt: Path, images: int) -> dict:
    """Export, cost and evaluate both models; write the example files; return the numbers."""
    from cimc import data, models, training
    from cimc.frontend import import_onnx
    from cimc.models.policy import save_policy
    from cimc.report import xbar_report
    from cimc.target.hw import Hardware

    summary = json.loads((search_dir / "summary.json").read_text())
    policy = np.asarray(summary["best_policy"], dtype=np.int64)
    state, _ = training.load_checkpoint(ckpt)
    w8 = models.build(MODEL, None)
    w8.load_state_dict(state)
    paths = {"w8a8": OUT / "lenet_fmnist_w8a8.onnx", "searched": OUT / "lenet_fmnist_searched.onnx"}
    models.export_onnx(w8, paths["w8a8"])
    shutil.copyfile(search_dir / "best_model.onnx", paths["searched"])
    save_policy(OUT / "lenet_fmnist_searched.json", policy, models.layer_names(MODEL), model=MODEL)
    x, y = data.load_dataset(DATASET, "test")
    reports = {k: xbar_report(import_onnx(p).module, Hardware()) for k, p in paths.items()}
    numbers = {
        "model": MODEL, "dataset": DATASET, "policy": policy.tolist(),
        "layers": models.layer_names(MODEL),
        "search": {k: summary[k] for k in ("episodes", "best_episode", "best_reward", "best_accuracy",
                                           "acc_8bit", "best_speedup", "time_per_episode")}
        | {"method": summary["config"]["method"], "allowed_drop": summary["config"]["allowed_drop"],
           "first_last_8bit": summary["config"]["first_last_8bit"], "eval": summary["eval"],
           "final_epochs": summary.get("final_epochs"),
           "final_test_accuracy": summary["final_test_accuracy"]},
        "test_images": int(len(y)),
        "w8a8_test_top1": {"brevitas": float(training.evaluate(w8, (x, y), "test")),
                           "xbar": xbar_top1(paths["w8a8"], x, y)},
        "searched_test_top1": {"brevitas": summary["final_test_accuracy"],
                               "xbar": xbar_top1(paths["searched"], x, y)},
        "w8a8_latency_us": reports["w8a8"]["total"]["latency_us"],
        "searched_latency_us": reports["searched"]["total"]["latency_us"],
        "speedup": reports["searched"]["speedup"],
        "float_test_top1": json.loads((ckpt.parent.parent / "lenet_float" / "model.json").read_text())
        .get("test_accuracy"),
        "bundled_images": images,
        "bundled_top1": {k: xbar_top1(p, x[:images], y[:images]) for k, p in paths.items()},
    }
    (OUT / "lenet_fmnist_searched.summary.json").write_text(json.dumps(numbers, indent=2) + "\n")
    pixels = np.round((x[:images] + 1.0) / 2.0 * 255.0).astype(np.uint8)
    np.savez_compressed(OUT / f"fmnist_test{images}.npz", x=pixels, y=y[:images].astype(np.int64))
    return numbers


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default="runs/example", help="Checkpoints and the search (reused).")
    ap.add_argument("--float-epochs", type=float, default=6.0)
    ap.add_argument("--qat-epochs", type=float, default=2.0)
    ap.add_argument("--episodes", type=int, default=300)
    ap.add_argument("--warmup", type=int, default=30)
    ap.add_argument("--eval-limit", type=int, default=2000, help="Validation images per episode.")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--final-epochs", type=float, default=2.0)
    ap.add_argument("--images", type=int, default=1000, help="Test images bundled for the demo.")
    args = ap.parse_args()
    work = Path(args.work)
    ckpt = train(work, args.float_epochs, args.qat_epochs)
    numbers = write_example(search(work, ckpt, args), ckpt, args.images)
    print(json.dumps(numbers, indent=2))


if __name__ == "__main__":
    main()
