#!/usr/bin/env bash
# Trains the deep model of the search (resnet20, 22 crossbar layers) on Fashion-MNIST:
#   1. float pre-training, 15 epochs (Adam 2e-3, cosine)          -> runs/resnet20_float/model.pt
#   2. 8-bit QAT (W8A8) from it, 2 epochs (Adam 5e-4, cosine)      -> runs/resnet20_w8a8/model.pt
# About 1.5 hours of one CPU core on an idle 2-core machine; the checkpoint (1 MB) is not
# committed. Threads: CIMC_THREADS (default 1 here: on a shared machine more threads are slower).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
OUT=${1:-runs}
export CIMC_THREADS=${CIMC_THREADS:-1}
$BIN/cimc-rl train --model resnet20 --dataset fashion_mnist --float --epochs 15 --lr 2e-3 \
  --out "$OUT/resnet20_float" --json "$OUT/resnet20_float.json" --no-progress
$BIN/cimc-rl train --model resnet20 --dataset fashion_mnist --bits 8 --init "$OUT/resnet20_float/model.pt" \
  --epochs 2 --lr 5e-4 --out "$OUT/resnet20_w8a8" --json "$OUT/resnet20_w8a8.json" --no-progress
