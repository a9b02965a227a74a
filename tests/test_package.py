"""Packaging: the lean runtime imports without torch; the CLI and shipped data are in place."""

import subprocess
import sys

BLOCK_TORCH = "import sys; sys.modules['torch'] = None; sys.modules['safetensors'] = None; "


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


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
