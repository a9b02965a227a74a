"""Packaging as users get it (issue 11, items 1-2): a built wheel holds every subpackage and the shipped data, its
CLI works without the checkout on the path, and a lean install keeps a cv2 / onnxruntime provided by the system."""

import os
import shutil
import subprocess
import sys
import tomllib
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TOP_LEVEL_SKIP = {".venv", ".git", "build", "dist", "bundles", ".hypothesis", ".pytest_cache", "bench-results", "runs",
                  "tests"}


def skip_outputs(directory: str, names: list[str]) -> set[str]:
    """What a checkout holds that is no source (only at its top)."""
    top = Path(directory) == ROOT
    return {n for n in names if n == "__pycache__" or top and (n in TOP_LEVEL_SKIP or n.endswith(".egg-info"))}


def source_packages() -> set[str]:
    """Every package the checkout defines: edge_mimo's folders with Python files, and the shipped data folders
    pyproject.toml maps into the package (calibration/, targets/)."""
    mapped = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "edge_mimo").rglob("__init__.py")}
    return found | {name for name, folder in mapped.items() if (ROOT / folder / "__init__.py").is_file()}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built from a copy of the checkout (nothing written into the checkout)."""
    tmp = tmp_path_factory.mktemp("wheel")
    shutil.copytree(ROOT, tmp / "src", ignore=skip_outputs)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    str(tmp / "dist"), str(tmp / "src")], check=True, capture_output=True, timeout=300)
    return next((tmp / "dist").glob("edge_mimo-*.whl"))


def test_the_wheel_holds_every_subpackage_and_the_shipped_data(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    packages = {n.rsplit("/", 1)[0].replace("/", ".") for n in names if n.endswith("/__init__.py")}
    missing = source_packages() - packages
    assert not missing, f"left out of the wheel: {sorted(missing)}"
    for data in ("edge_mimo/default_model/model.safetensors", "edge_mimo/default_model/config.json",
                 "edge_mimo/mimoformer_model/model.safetensors", "edge_mimo/mimoformer_model/config.json",
                 "edge_mimo/calibration/fashion_mnist_calibration.npz",
                 "edge_mimo/calibration/fashion_mnist_validation.npz", "edge_mimo/targets/cpu.toml",
                 "edge_mimo/targets/jetson-orin.toml"):
        assert data in names, data


def test_the_wheels_cli_runs_without_the_checkout_on_the_path(wheel, tmp_path):
    """The wheel alone (its dependencies from this environment): compile, targets, bench and verify import."""
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--target", str(site),
                    str(wheel)], check=True, capture_output=True, timeout=300)
    env = dict(os.environ, PYTHONPATH=str(site))

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-P", "-m", "edge_mimo.cli.main", *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=300)

    where = subprocess.run([sys.executable, "-P", "-c", "import edge_mimo; print(edge_mimo.__file__)"], cwd=tmp_path,
                           env=env, capture_output=True, text=True, timeout=60)
    assert where.stdout.strip().startswith(str(site)), where  # the wheel's copy, not the checkout
    targets = cli("targets")
    assert targets.returncode == 0 and "jetson-orin" in targets.stdout, targets.stderr
    for command in ("compile", "bench", "verify", "run", "build-engines", "check"):
        result = cli(command, "--help")
        assert result.returncode == 0 and "usage: edge-mimo" in result.stdout, (command, result.stderr)
    code = ("import importlib, pkgutil, edge_mimo; "
            "[importlib.import_module(m.name) for m in pkgutil.walk_packages(edge_mimo.__path__, 'edge_mimo.') "
            "if not m.name.startswith('edge_mimo.calibration.')]; print('ok')")
    imported = subprocess.run([sys.executable, "-P", "-c", code], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=300)
    assert imported.stdout.strip() == "ok", imported.stderr


def test_ci_runs_exactly_the_readme_test_command_after_a_wheel_install():
    readme, ci, setup = ((ROOT / p).read_text() for p in ("README.md", ".ci/run", "scripts/setup.sh"))
    command = ".venv/bin/python -m pytest -q"
    assert command in readme and f"\n{command}\n" in ci and "bash scripts/setup.sh" in ci
    assert "pip wheel" in setup and "-e ." not in setup and "--editable" not in setup


@pytest.fixture(scope="module")
def system_cv2_venv(tmp_path_factory, wheel) -> Path:
    """A venv whose 'system' packages (cv2, onnxruntime, numpy: this environment's, through a .pth file, as a
    venv made with --system-site-packages sees JetPack's) come from elsewhere; edge-mimo installed the lean way."""
    root = tmp_path_factory.mktemp("jetson") / "venv"
    venv.EnvBuilder(with_pip=False).create(root)
    site = next(root.glob("lib/python*/site-packages"))
    import cv2

    system = Path(cv2.__file__).resolve().parent.parent
    (site / "system.pth").write_text(str(system) + "\n")
    python = root / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", "--no-index",
                    "--ignore-installed", str(wheel)], check=True, capture_output=True, timeout=300)
    return root


def test_the_lean_install_keeps_the_systems_opencv_and_onnxruntime(system_cv2_venv):
    site = next(system_cv2_venv.glob("lib/python*/site-packages"))
    own = {p.name.split("-")[0].lower() for p in site.glob("*.dist-info")}
    assert own == {"edge_mimo"}, own  # no opencv-python-headless, no onnxruntime wheel over the system's
    python = system_cv2_venv / "bin" / "python"
    code = "import cv2, edge_mimo.streams, edge_mimo.runtime; print(cv2.__file__)"
    result = subprocess.run([str(python), "-P", "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert not result.stdout.strip().startswith(str(site))  # the system's cv2 is the one in use
    check = subprocess.run([str(system_cv2_venv / "bin" / "edge-mimo"), "check"], capture_output=True, text=True,
                           timeout=120)
    assert check.returncode == 0 and "warning" not in check.stderr, check.stderr
    assert "cv2" in check.stdout and "onnxruntime" in check.stdout


def test_check_names_a_pip_opencv_that_shadows_the_systems(system_cv2_venv):
    """What `pip install edge-mimo` without --no-deps would do on a Jetson: a second cv2 first on the path."""
    site = next(system_cv2_venv.glob("lib/python*/site-packages"))
    shadow = site / "cv2"
    shadow.mkdir()
    try:
        (shadow / "__init__.py").write_text("__version__ = '4.8.0'\ndef getBuildInformation():\n    return ''\n")
        check = subprocess.run([str(system_cv2_venv / "bin" / "edge-mimo"), "check"], capture_output=True, text=True,
                               timeout=120)
    finally:
        shutil.rmtree(shadow)
    assert "warning: cv2 at" in check.stderr and "shadows" in check.stderr, check.stderr
