"""Packaging: the lean runtime imports without torch; the CLI and shipped data are in place."""

import subprocess
import sys
from pathlib import Path

BLOCK_TORCH = "import sys; sys.modules['torch'] = None; sys.modules['safetensors'] = None; "


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def runtime_requirements() -> list[str]:
    """The distributions ``pip install edge-mimo`` pulls: its requirements without extras, and theirs."""
    from importlib.metadata import PackageNotFoundError, distribution

    from packaging.requirements import Requirement

    wanted, seen = ["edge-mimo"], []
    while wanted:
        name = wanted.pop()
        if name in seen:
            continue
        seen.append(name)
        try:
            requires = distribution(name).requires or []
        except PackageNotFoundError:  # an optional dependency this machine lacks: pip would install it
            continue
        for r in map(Requirement, requires):
            if r.marker is None or r.marker.evaluate({"extra": ""}):
                wanted.append(r.name)
    return seen[1:]


def lean_site(root: Path) -> Path:
    """A site directory holding edge-mimo and its runtime dependencies only (links to the installed files)."""
    from importlib.metadata import distribution
    from importlib.util import find_spec

    site = root / "site-packages"
    (site / "edge_mimo").mkdir(parents=True)
    source = Path(find_spec("edge_mimo").origin).parent
    for entry in source.iterdir():
        (site / "edge_mimo" / entry.name).symlink_to(entry)
    for sub in ("calibration", "targets"):  # mapped from calibration/ and targets/ in an editable install
        location = Path(find_spec(f"edge_mimo.{sub}").submodule_search_locations[0])
        if not (site / "edge_mimo" / sub).exists():
            (site / "edge_mimo" / sub).symlink_to(location)
    for name in runtime_requirements():
        dist = distribution(name)
        tops = {Path(str(f)).parts[0] for f in dist.files or [] if not str(f).startswith("..")}
        for top in tops - {"bin", "__pycache__"}:
            target = Path(dist.locate_file(top))
            if target.exists() and not (site / top).exists():
                (site / top).symlink_to(target)
    return site


def test_runtime_in_an_environment_with_only_the_runtime_dependencies(cpu_bundle, cpu_runtime, tmp_path):
    """``pip install edge-mimo`` (numpy, onnxruntime, opencv and what they pull): the runtime, the streams and the
    bundle tools import and classify; the compile extra (torch, onnx, onnxscript, safetensors, tqdm, matplotlib) and
    the dev tools are not there at all, and the CLI names the extra to install."""
    site = lean_site(tmp_path)
    code = f"""
import importlib.util, site, sys
site.addsitedir({str(site)!r})
absent = ["torch", "onnx", "onnxscript", "safetensors", "tqdm", "matplotlib", "sklearn", "hypothesis", "pytest"]
assert not [m for m in absent if importlib.util.find_spec(m)], [m for m in absent if importlib.util.find_spec(m)]
import numpy as np
import edge_mimo, edge_mimo.bundle, edge_mimo.camera, edge_mimo.datasets, edge_mimo.metrics, edge_mimo.streams
import edge_mimo.models.config, edge_mimo.models.default
from edge_mimo import Runtime
from edge_mimo.datasets import shipped_sample
runtime = Runtime({str(cpu_bundle)!r}, threads=1)
results = runtime.infer_many(list(shipped_sample("validation").images[:8, 0]), policy="balanced")
print(sum(r.ok for r in results), [r.class_index for r in results])
from edge_mimo.cli.main import main
sys.exit(main(["info"]))
"""
    result = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True, timeout=120,
                            cwd=tmp_path)
    assert result.returncode == 2, result.stderr  # info needs the compile extra, and says which one
    assert "pip install 'edge-mimo[compile]'" in result.stderr
    from edge_mimo.datasets import shipped_sample

    same_call = cpu_runtime.infer_many(list(shipped_sample("validation").images[:8, 0]), policy="balanced")
    assert result.stdout.split() == ["8", *str([r.class_index for r in same_call]).split()]  # the same answers


def test_import_without_torch():
    modules = ["edge_mimo", "edge_mimo.bundle", "edge_mimo.metrics", "edge_mimo.runtime.batching", "edge_mimo.camera", "edge_mimo.datasets",
               "edge_mimo.errors", "edge_mimo.models.config", "edge_mimo.models.default"]
    code = BLOCK_TORCH + "; ".join(f"import {m}" for m in modules) + "; print('ok')"
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    check = run_python(BLOCK_TORCH + "import torch")
    assert check.returncode != 0  # the block really blocks


def test_cli_names_the_missing_extra_without_torch():
    result = run_python(BLOCK_TORCH + "from edge_mimo.cli.main import main; sys.exit(main(['info']))")
    assert result.returncode == 2
    assert "pip install 'edge-mimo[compile]'" in result.stderr


def test_shipped_samples():
    from edge_mimo.datasets import shipped_sample

    calib, val = shipped_sample("calibration"), shipped_sample("validation")
    assert calib.images.shape == (1024, 1, 28, 28) and val.images.shape == (3000, 1, 28, 28)
    assert len(set(calib.labels.tolist())) == 10 and len(val.class_names) == 10


def test_public_api_is_importable_and_import_stays_light():
    code = (BLOCK_TORCH + "import edge_mimo; "
            "heavy = [m for m in ('torch', 'onnxruntime', 'cv2') if sys.modules.get(m) is not None]; "
            "missing = [n for n in edge_mimo.__all__ if not hasattr(edge_mimo, n)]; "
            "print(heavy, missing, issubclass(edge_mimo.FrameError, edge_mimo.EdgeMimoError))")
    result = run_python(code)
    assert result.returncode == 0 and result.stdout.split() == ["[]", "[]", "True"], result.stderr
    import edge_mimo

    assert {"Runtime", "StreamResult", "StreamMux", "compile_bundle", "EdgeMimoError"} <= set(edge_mimo.__all__)
    assert callable(edge_mimo.compile_bundle)
