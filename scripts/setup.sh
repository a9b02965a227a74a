#!/usr/bin/env bash
# Set up edge-mimo from scratch in ./.venv: Fashion-MNIST from Debian, PyTorch CPU, the package with its
# compile, dev, metrics, serve and triton extras, installed the way users get it: a wheel built from this checkout (not an
# editable install, which would hide files left out of the wheel); and .venv-triton, the environment of the Triton
# server the tests start. Run it again after changing the code. Safe to rerun.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -f /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get install -y -q dataset-fashion-mnist \
    || { $SUDO apt-get update -q && $SUDO apt-get install -y -q dataset-fashion-mnist; }
fi

PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
# The CPU build of torch first, by its local version "+cpu": a bare `torch==2.13.0` resolves on PyPI to the CUDA
# build (several GB of nvidia-* wheels). It comes from a wheel pip already sees (a local --find-links), else from
# PyTorch's CPU index. For training on an NVIDIA GPU instead: TORCH_INDEX=https://download.pytorch.org/whl/cu128
# TORCH_BUILD=cu128 bash scripts/setup.sh (any build listed on pytorch.org).
TORCH_BUILD="${TORCH_BUILD:-cpu}"
TORCH_INDEX="${TORCH_INDEX:-https://download.pytorch.org/whl/$TORCH_BUILD}"
.venv/bin/pip install -q "torch==2.13.0+$TORCH_BUILD" 2>/dev/null \
  || .venv/bin/pip install -q --index-url "$TORCH_INDEX" "torch==2.13.0+$TORCH_BUILD"
rm -rf dist && .venv/bin/pip wheel -q --no-deps -w dist .
.venv/bin/pip uninstall -q -y edge-mimo 2>/dev/null || true
.venv/bin/pip install -q "$(ls dist/edge_mimo-*.whl)[compile,dev,metrics,serve,triton]"

# The Triton server's Python environment (.venv-triton: tests and scripts/bench_serving.py start a real tritonserver
# from the nvidia-pytriton wheel). Its Python-backend stub (Triton 2.51) returns empty outputs under numpy 2, so this
# environment keeps numpy < 2 and the OpenCV 4.x that works with it; edge-mimo from the same wheel.
PROBLEM="$(.venv/bin/python -P -c 'from edge_mimo.serving.triton.server import platform_problem; print(platform_problem() or "")')"
if [ -z "$PROBLEM" ]; then
  [ -x .venv-triton/bin/python ] || "$PYTHON" -m venv .venv-triton
  .venv-triton/bin/pip uninstall -q -y edge-mimo 2>/dev/null || true
  .venv-triton/bin/pip install -q "$(ls dist/edge_mimo-*.whl)" "nvidia-pytriton==0.7.*" "numpy<2" "opencv-python-headless<5"
else
  echo "no Triton server environment: $PROBLEM (the Triton server tests skip)"
fi
rm -rf build ./*.egg-info
.venv/bin/python -P -c "import edge_mimo, torch, onnxruntime; print('edge-mimo', edge_mimo.__version__, '| torch', torch.__version__, '| onnxruntime', onnxruntime.__version__)"
