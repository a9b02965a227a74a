"""Shared fixtures."""

import json
import os
from collections.abc import Iterator
from pathlib import Path

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


def manifest_json(bundle: Path) -> dict:
    """A bundle's manifest.json as written (string width keys), whatever type ``load_manifest`` returns."""
    return json.loads((Path(bundle) / "manifest.json").read_text())


@pytest.fixture(scope="session", autouse=True)
def calibration_cache(tmp_path_factory) -> Iterator[Path]:
    """The calibration cache of every compile the tests run (in process or in a subprocess): empty when the session
    starts, so which compiles miss and which hit never depends on the machine's history."""
    root = tmp_path_factory.mktemp("edge-mimo-cache")
    saved = os.environ.get("EDGE_MIMO_CACHE")
    os.environ["EDGE_MIMO_CACHE"] = str(root)
    yield root / "calibration"
    if saved is None:
        del os.environ["EDGE_MIMO_CACHE"]
    else:
        os.environ["EDGE_MIMO_CACHE"] = saved


@pytest.fixture(scope="session")
def cpu_bundle(tmp_path_factory, calibration_cache) -> Path:
    """A CPU bundle of the default model, compiled once per session (EDGE_MIMO_TEST_BUNDLE reuses a compiled one).

    Shared by every test file: never modify it in place, copy it (``shutil.copytree``) to damage it.
    """
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
