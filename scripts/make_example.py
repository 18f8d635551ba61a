"""Builds the bundled example: ResNet-20 on Fashion-MNIST at a policy found by ``cimc-rl search``.

From the 8-bit QAT checkpoint of ``resnet20`` (``bash scripts/train_resnet20.sh``):

1. ``cimc-rl search`` (cimc's DDPG, compiler cost, allowed drop 1 point, first/last layers at
   8/8) with its final QAT of the best policy and ONNX export (skipped when ``--search`` already
   holds a finished search);
2. the W8A8 model (the checkpoint itself) exported beside it;
3. both evaluated on the whole Fashion-MNIST test split, and costed by ``cimc report``.

Writes ``examples/resnet20_fmnist_w8a8.onnx``, ``examples/resnet20_fmnist_searched.onnx``, the
policy ``examples/resnet20_fmnist_searched.json``, the numbers
``examples/resnet20_fmnist_searched.summary.json`` and 500 test images with their labels
``examples/fmnist_test500.npz`` (uint8 pixels). Run once by the developers (the files are
committed)::

    .venv/bin/python scripts/make_example.py --ckpt runs/resnet20_w8a8/model.pt --search runs/example
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent.parent / "examples"
MODEL = "resnet20"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", required=True, help="8-bit QAT checkpoint of resnet20.")
    ap.add_argument("--search", default="runs/example", help="Search folder (reused when finished).")
    ap.add_argument("--episodes", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--final-epochs", type=float, default=2.0)
    args = ap.parse_args()

    from cimc import data, models, training
    from cimc.frontend import import_onnx
    from cimc.models.policy import save_policy
    from cimc.report import xbar_report
    from cimc.rl.search_cli import search_command
    from cimc.target.hw import Hardware

    search = Path(args.search)
    if not (search / "summary.json").exists() or not (search / "best_model.onnx").exists():
        search_command(model=MODEL, dataset="fashion_mnist", ckpt=Path(args.ckpt), out=search,
                       config=None, episodes=args.episodes, seed=args.seed, acc_drop=1.0,
                       resume=True, export=True, final_epochs=args.final_epochs, progress=True)
    summary = json.loads((search / "summary.json").read_text())
    policy = np.asarray(summary["best_policy"], dtype=np.int64)

    OUT.mkdir(exist_ok=True)
    state, meta = training.load_checkpoint(args.ckpt)
    w8 = models.build(MODEL, None)
    w8.load_state_dict(state)
    w8a8_onnx = models.export_onnx(w8, OUT / "resnet20_fmnist_w8a8.onnx")
    searched_onnx = OUT / "resnet20_fmnist_searched.onnx"
    shutil.copyfile(search / "best_model.onnx", searched_onnx)
    save_policy(OUT / "resnet20_fmnist_searched.json", policy, models.layer_names(MODEL), model=MODEL)

    hw = Hardware()
    lat = {name: xbar_report(import_onnx(path).module, hw)["total"]["latency_us"]
           for name, path in (("w8a8", w8a8_onnx), ("searched", searched_onnx))}
    numbers = {
        "model": MODEL, "dataset": "fashion_mnist", "policy": policy.tolist(),
        "search": {k: summary[k] for k in ("episodes", "best_episode", "best_reward", "best_accuracy",
                                           "acc_8bit", "best_speedup")}
        | {"method": summary["config"]["method"], "allowed_drop": summary["config"]["allowed_drop"],
           "eval": summary["eval"], "final_epochs": summary.get("final_epochs")},
        "w8a8_test_top1": training.evaluate(w8, "fashion_mnist", "test"),
        "searched_test_top1": summary["final_test_accuracy"],
        "w8a8_latency_us": lat["w8a8"], "searched_latency_us": lat["searched"],
        "speedup": lat["w8a8"] / lat["searched"],
        "float_test_top1": meta.get("float_test_accuracy"),
    }
    (OUT / "resnet20_fmnist_searched.summary.json").write_text(json.dumps(numbers, indent=2) + "\n")
    x, y = data.load_dataset("fashion_mnist", "test", limit=500)
    pixels = np.round((x + 1.0) / 2.0 * 255.0).astype(np.uint8)
    np.savez_compressed(OUT / "fmnist_test500.npz", x=pixels, y=y)
    print(json.dumps(numbers, indent=2))


if __name__ == "__main__":
    main()
