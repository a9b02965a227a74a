#!/usr/bin/env bash
# Set up edge-mimo from scratch in ./.venv: Fashion-MNIST from Debian, PyTorch CPU, the package with its
# compile, dev, metrics and serve extras, installed the way users get it: a wheel built from this checkout (not an editable
# install, which would hide files left out of the wheel). Run it again after changing the code. Safe to rerun.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -f /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get install -y -q dataset-fashion-mnist \
    || { $SUDO apt-get update -q && $SUDO apt-get install -y -q dataset-fashion-mnist; }
fi

PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
# The CPU build of torch first: a bare `torch` requirement may otherwise pull a multi-GB CUDA build.
.venv/bin/pip install -q "torch==2.13.0"
rm -rf dist && .venv/bin/pip wheel -q --no-deps -w dist .
.venv/bin/pip uninstall -q -y edge-mimo 2>/dev/null || true
.venv/bin/pip install -q "$(ls dist/edge_mimo-*.whl)[compile,dev,metrics,serve]"
rm -rf build ./*.egg-info
.venv/bin/python -P -c "import edge_mimo, torch, onnxruntime; print('edge-mimo', edge_mimo.__version__, '| torch', torch.__version__, '| onnxruntime', onnxruntime.__version__)"
