#!/usr/bin/env bash
# The main job on the bundled example: a LeNet trained on Fashion-MNIST at a mixed-precision
# policy (examples/lenet_fmnist_mixed.onnx, w/a bits per layer in lenet_fmnist_mixed.json).
#   1. lower it to the crossbar level and write the IR (weights beside it)
#   2. run 64 test images bit-serially on the crossbar interpreter, with counted cycles
#   3. print the cost report (per-layer writes, cycles, latency, speedup over W8A8) + JSON + plot
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
EX=examples/lenet_fmnist_mixed.onnx
mkdir -p out
echo "== cimc lower $EX --to xbar -o out/lenet.mlir"
$BIN/cimc lower "$EX" --to xbar -o out/lenet.mlir
echo "== cimc run $EX --level xbar --input examples/fmnist_test64_x.npy"
$BIN/cimc run "$EX" --level xbar --input examples/fmnist_test64_x.npy --output out/logits.npy \
  --report out/run.json
$BIN/python - <<'PY'
import numpy as np
logits = np.load("out/logits.npy")
labels = np.load("examples/fmnist_test64.npz")["y"]
print(f"top-1 on the 64 bundled Fashion-MNIST test images: {(logits.argmax(1) == labels).mean():.1%}")
PY
echo "== cimc report $EX"
$BIN/cimc report "$EX" --json out/report.json --plot out/report.png
echo "== done: out/lenet.mlir, out/run.json, out/report.json, out/report.png"
