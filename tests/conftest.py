"""Shared fixtures."""

import os

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "2")

FASHION_MNIST = "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"

needs_fashion_mnist = pytest.mark.skipif(
    not os.path.exists(FASHION_MNIST),
    reason="Fashion-MNIST not installed: `apt-get install -y dataset-fashion-mnist`",
)
