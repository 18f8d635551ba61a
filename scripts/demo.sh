#!/usr/bin/env bash
# The main job on the bundled example: a LeNet trained on Fashion-MNIST at the mixed-precision
# policy that `cimc-rl search` found for it (examples/lenet_fmnist_searched.onnx, w/a bits per layer
# in lenet_fmnist_searched.json), side by side with the same LeNet at W8A8
# (examples/lenet_fmnist_w8a8.onnx). Both made by scripts/make_example.py.
#   1. lower the searched model to the crossbar level and write the IR (weights beside it)
#   2. run both models on the 1000 bundled test images at the crossbar level, with counted cycles;
#      top-1 accuracy from cimc's outputs
#   3. the searched model's cost report (per-layer writes, cycles, latency, speedup over W8A8)
#   4. side by side: accuracy on the bundled images, latency and speedup (cimc report's)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
EX=examples/lenet_fmnist_searched.onnx
W8=examples/lenet_fmnist_w8a8.onnx
OUT=${CIMC_DEMO_OUT:-out}  # where the demo writes (default out/)
mkdir -p "$OUT"
export OUT
$BIN/python - <<'PY'
import os
import numpy as np
d = np.load("examples/fmnist_test1000.npz")  # uint8 pixels -> [-1, 1], as cimc.data loads them
np.save(f"{os.environ['OUT']}/test_x.npy", (d["x"].astype(np.float32) / 255.0) * 2.0 - 1.0)
np.save(f"{os.environ['OUT']}/test_y.npy", d["y"])
PY
echo "== cimc lower $EX --to xbar -o $OUT/lenet.mlir"
$BIN/cimc lower "$EX" --to xbar -o "$OUT/lenet.mlir"
for M in searched w8a8; do
  F=examples/lenet_fmnist_$M.onnx
  echo "== cimc run $F --level xbar --input $OUT/test_x.npy (the 1000 bundled test images)"
  $BIN/cimc run "$F" --level xbar --input "$OUT/test_x.npy" --output "$OUT/logits_$M.npy" \
    --report "$OUT/run_$M.json" --no-progress
done
echo "== cimc report $EX"
$BIN/cimc report "$EX" --json "$OUT/report.json" --plot "$OUT/report.png"
$BIN/python - <<'PY'
import json
import os

import numpy as np

out = os.environ["OUT"]
y = np.load(f"{out}/test_y.npy")
top1 = {m: 100.0 * (np.load(f"{out}/logits_{m}.npy").argmax(1) == y).mean() for m in ("w8a8", "searched")}
rep = json.load(open(f"{out}/report.json"))
made = json.load(open("examples/lenet_fmnist_searched.summary.json"))
s = made["search"]
print(f"\n== searched policy vs W8A8 (cimc-rl search: {s['method']}, {s['episodes']} episodes, "
      f"allowed drop {s['allowed_drop']:g} point, first/last layers searched)")
rows = [(f"w/a bits {l['name']}", "8/8", f"{l['w_bits']}/{l['a_bits']}")
        for l in json.load(open("examples/lenet_fmnist_searched.json"))["layers"]]
rows += [("latency us (cimc report)", f"{rep['baseline']['latency_us']:,.1f}",
          f"{rep['total']['latency_us']:,.1f}"),
         ("speedup over W8A8 (cimc report)", "1.00x", f"{rep['speedup']:.2f}x"),
         (f"top-1 %, {len(y)} bundled images (cimc run, xbar)", f"{top1['w8a8']:.2f}",
          f"{top1['searched']:.2f}"),
         (f"top-1 %, all {made['test_images']} test images (make_example.py)",
          f"{made['w8a8_test_top1']['xbar']:.2f}", f"{made['searched_test_top1']['xbar']:.2f}")]
print(f"{'':46s}{'W8A8':>10s}{'searched':>10s}")
for label, a, b in rows:
    print(f"{label:46s}{a:>10s}{b:>10s}")
PY
echo "== done: $OUT/lenet.mlir, $OUT/run_*.json, $OUT/report.json, $OUT/report.png"
