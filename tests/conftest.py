"""Shared fixtures."""

import os

import pytest

from .support.installed import REINSTALL, import_installed, stale_files

os.environ.setdefault("OMP_NUM_THREADS", "2")
import_installed()


def pytest_sessionstart(session):
    if stale := stale_files():
        pytest.exit(f"the installed edge-mimo differs from this checkout ({', '.join(stale[:5])}): {REINSTALL}", 4)

FASHION_MNIST = "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"

needs_fashion_mnist = pytest.mark.skipif(
    not os.path.exists(FASHION_MNIST),
    reason="Fashion-MNIST not installed: `apt-get install -y dataset-fashion-mnist`",
)


@pytest.fixture(scope="session")
def cpu_bundle(tmp_path_factory):
    """A CPU bundle of the default model, compiled once per session (EDGE_MIMO_TEST_BUNDLE reuses a compiled one).

    Shared by every test file: never modify it in place, copy it (``shutil.copytree``) to damage it.
    """
    from pathlib import Path

    if os.environ.get("EDGE_MIMO_TEST_BUNDLE"):
        return Path(os.environ["EDGE_MIMO_TEST_BUNDLE"])
    from edge_mimo.cli.main import main

    out = tmp_path_factory.mktemp("bundle") / "cpu"
    assert main(["compile", "--model", "default", "--target", "cpu", "--calib-size", "128", "-o", str(out)]) == 0
    return out


@pytest.fixture(scope="session")
def cpu_runtime(cpu_bundle):
    """One Runtime of :func:`cpu_bundle` on 2 threads, shared (it is thread-safe and keeps no per-call state)."""
    from edge_mimo import Runtime

    return Runtime(cpu_bundle, threads=2)
