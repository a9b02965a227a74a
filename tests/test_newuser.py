"""The path a new user takes (issue 22) and hostile training / eval input (issue 21, item 13), as a user runs it:
the `edge-mimo` command in a subprocess, on a fresh tiny model trained on an image folder of shapes."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from edge_mimo.compile.evaluate import MAX_CERTAIN_ENTROPY, width_report
from edge_mimo.datasets import load_image_folder
from tests.support.shapes import write_shapes
from tests.test_compile import edge_mimo_command

TINY = ["--depth", "10", "--widen", "1", "--stem-channels", "8", "--batch", "8", "--threads", "1",
        "--augment", "shift", "--image-size", "32"]


def cli(*args, cwd=None, timeout=120) -> subprocess.CompletedProcess:
    """`edge-mimo ARGS` as a user runs it; one OpenMP thread (the machine is shared)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", EDGE_MIMO_CACHE=str(Path(cwd or ".").resolve() / "cache"))
    return subprocess.run([*edge_mimo_command(), *map(str, args)], capture_output=True, text=True, cwd=cwd,
                          timeout=timeout, env=env)


def one_line_error(r: subprocess.CompletedProcess, *words: str) -> None:
    """Exit 2 with one line naming the problem (no traceback)."""
    assert r.returncode == 2, r.stderr[-2000:]
    assert "Traceback" not in r.stderr, r.stderr[-2000:]
    last = r.stderr.strip().splitlines()[-1]
    assert "error:" in last and all(w in last for w in words), last


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    """A user's image folder: shapes/train/<shape>/*.png and shapes/test/<shape>/*.png, colour 64x64."""
    root = tmp_path_factory.mktemp("user")
    write_shapes(root / "shapes" / "train", 16, seed=0)
    write_shapes(root / "shapes" / "test", 6, seed=1)
    return root


@pytest.fixture(scope="module")
def model(shapes) -> Path:
    """A fresh 3-class model trained on the folder for a few steps (weak on purpose)."""
    r = cli("train", "--dataset", "shapes", *TINY, "--steps", "6", "-o", "m", cwd=shapes)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "input: 3x32x32 (colour" in r.stdout
    return shapes / "m"


def test_compile_defaults_to_the_models_own_data_and_warns_near_chance(model, shapes):
    """Issue 22.1 and 22.3: `compile --model MINE` with default options calibrates on the model's training folder and
    validates on its held-out test/ split (it crashed with an IndexError on the Fashion-MNIST sample); a weak model
    is flagged near chance, and `info BUNDLE` describes the bundle (22.4)."""
    r = cli("compile", "--model", "m", "--widths", "1", "2", "-o", "b", cwd=shapes)
    assert r.returncode == 0, r.stderr[-3000:]
    manifest = json.loads((shapes / "b" / "manifest.json").read_text())
    assert manifest["validation"]["source"].endswith("shapes") and manifest["validation"]["images"] == 18
    assert manifest["quantization"]["calibration_images"] == 48
    accuracy = {n: a["int8"]["accuracy"] for n, a in manifest["accuracy"].items()}
    for n, a in accuracy.items():
        if a < (1 + 1 / 3) / 2:
            assert f"width {n}: INT8 accuracy" in r.stderr and "near chance" in r.stderr
    for u in manifest["uncertainty"].values():
        assert u["entropy_threshold"] <= MAX_CERTAIN_ENTROPY

    info = cli("info", "b", cwd=shapes)
    assert info.returncode == 0, info.stderr
    assert "target      cpu" in info.stdout and "3x32x32" in info.stdout and "int8/width2.cpu.onnx" in info.stdout
    as_json = json.loads(cli("info", "b", "--json", cwd=shapes).stdout)
    assert as_json["widths"] == [1, 2] and as_json["classes"] == ["circle", "square", "triangle"]
    assert as_json["engines"] == [] and len(as_json["files"]) == 4


def test_compile_refuses_data_of_other_classes_and_unknown_data_at_once(model, shapes, tmp_path):
    """The shipped Fashion-MNIST sample for a 3-class model: one line naming --val / --calib, not a traceback;
    a model without training.json: refused before any work, naming --calib and --val."""
    one_line_error(cli("compile", "--model", model, "--val", "shipped", "--calib", str(shapes / "shapes" / "train"),
                       "-o", tmp_path / "b", cwd=tmp_path), "--val", "shipped")
    one_line_error(cli("compile", "--model", model, "--calib", "shipped", "-o", tmp_path / "b", cwd=tmp_path),
                   "--calib")
    bare = tmp_path / "bare"
    shutil.copytree(model, bare)
    (bare / "training.json").unlink()
    one_line_error(cli("compile", "--model", bare, "-o", tmp_path / "b", cwd=tmp_path, timeout=60),
                   "--calib", "--val")
    assert not (tmp_path / "b").exists()


def test_compile_warns_when_validation_images_were_trained_on(model, shapes):
    """Validating on the training images (here: --val pointing at the training folder) is warned about."""
    r = cli("compile", "--model", "m", "--widths", "1", "--val", "shapes/train", "-o", "b-seen", cwd=shapes)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "validation images are training images of this model" in r.stderr


def test_uncertainty_has_an_absolute_ceiling_and_temperature_never_raises_ece():
    """A weak model (near-uniform predictions) flags its frames: entropy 0.97 of the maximum is never `certain`;
    a fitted temperature that would raise validation ECE is not applied."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 600)
    logits = rng.normal(0, 0.05, (600, 3)).astype(np.float32)
    logits[np.arange(600), labels] += 0.03  # about 45 % accurate, nearly uniform
    report = width_report(logits, logits, labels)
    assert report.int8.accuracy < 0.6 and report.uncertainty.entropy_threshold <= MAX_CERTAIN_ENTROPY
    assert report.uncertainty.flag_rate == 1.0 and report.uncertainty.accuracy_kept is None
    for seed in range(20):
        rng = np.random.default_rng(seed)
        labels = rng.integers(0, 10, 300)
        logits = rng.normal(0, rng.uniform(0.5, 4), (300, 10)).astype(np.float32)
        logits[np.arange(300), labels] += rng.uniform(0, 3)
        r = width_report(logits, logits, labels)
        assert r.int8_calibrated.ece <= r.int8.ece + 1e-9 or r.temperature == 1.0


def test_image_folder_skips_hidden_and_empty_class_folders(tmp_path, caplog):
    """Issue 21.13: `.ipynb_checkpoints` and an empty class folder are not classes (the empty one is named)."""
    write_shapes(tmp_path, 2)
    (tmp_path / ".ipynb_checkpoints").mkdir()
    shutil.copy(tmp_path / "circle" / "000.png", tmp_path / ".ipynb_checkpoints" / "x.png")
    (tmp_path / "empty").mkdir()
    data = load_image_folder(tmp_path, 16, 3)
    assert data.class_names == ("circle", "square", "triangle") and len(data) == 6
    assert "empty" in caplog.text


@pytest.mark.parametrize("args, words", [
    (["--limit", "-5"], ["--limit"]),
    (["--lr", "nan"], ["--lr"]),
    (["--image-size", "0"], ["--image-size"]),
    (["--steps", "0"], ["--steps"]),
    (["--lr", "1e6"], ["diverged", "--lr"]),
    (["--single-prob", "2"], ["--single-prob"]),
    (["--new-head"], ["--init"]),
])
def test_train_refuses_bad_options_in_one_line(shapes, tmp_path, args, words):
    """Issue 21.13: `--limit -5` trained on all but 5, `--lr nan` saved NaN weights with exit 0, `--image-size 0`
    gave a traceback; a diverging run stops (non-finite loss) and saves nothing."""
    r = cli("train", "--dataset", shapes / "shapes", *TINY, "--steps", "12", *args, "-o", tmp_path / "out",
            cwd=tmp_path)
    one_line_error(r, *words)
    assert not (tmp_path / "out").exists()


def test_train_refuses_a_single_class(tmp_path):
    """One class folder is no classifier: refused in one line."""
    write_shapes(tmp_path / "one", 4)
    for shape in ("square", "triangle"):
        shutil.rmtree(tmp_path / "one" / shape)
    one_line_error(cli("train", "--dataset", tmp_path / "one", *TINY, "--steps", "2", "-o", tmp_path / "out",
                       cwd=tmp_path), "two class")


def test_train_refuses_foreign_or_corrupt_checkpoint_and_truncated_init(model, shapes, tmp_path):
    """Issue 21.13: a corrupt, mismatched or other-dataset --checkpoint and a truncated --init: one line, exit 2."""
    corrupt = tmp_path / "corrupt.ckpt"
    corrupt.write_bytes(b"not a checkpoint")
    one_line_error(cli("train", "--dataset", shapes / "shapes", *TINY, "--steps", "6", "--checkpoint", corrupt,
                       "-o", tmp_path / "out", cwd=tmp_path), "--checkpoint", "not a readable")
    ckpt = tmp_path / "run.ckpt"
    assert cli("train", "--dataset", shapes / "shapes", *TINY, "--steps", "6", "--checkpoint", ckpt,
               "-o", tmp_path / "first", cwd=tmp_path).returncode == 0
    one_line_error(cli("train", "--dataset", shapes / "shapes", *TINY, "--steps", "6", "--widen", "2",
                       "--checkpoint", ckpt, "-o", tmp_path / "out", cwd=tmp_path), "another model")
    one_line_error(cli("train", "--dataset", shapes / "shapes", *TINY, "--steps", "6", "--limit", "30",
                       "--checkpoint", ckpt, "-o", tmp_path / "out", cwd=tmp_path), "another run")
    truncated = tmp_path / "truncated"
    shutil.copytree(model, truncated)
    weights = truncated / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    one_line_error(cli("train", "--dataset", shapes / "shapes", *TINY, "--steps", "6", "--init", truncated,
                       "-o", tmp_path / "out", cwd=tmp_path), "--init", "cannot be loaded")
    assert not (tmp_path / "out").exists()


def test_fine_tuning_with_a_new_head(model, shapes, tmp_path):
    """Issue 22.2: --init MODEL --new-head keeps the body and input, trains a head for this folder's classes."""
    r = cli("train", "--dataset", shapes / "shapes", "--init", model, "--new-head", "--steps", "6", "--threads", "1",
            "--augment", "shift", "-o", tmp_path / "tuned", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "fine-tuning" in r.stdout and "input: 3x32x32" in r.stdout
    assert json.loads((tmp_path / "tuned" / "training.json").read_text())["init"] == str(model)


def test_eval_output_that_is_a_file_is_refused(tmp_path):
    """Issue 21.13: `eval -o FILE` gave a traceback after the whole suite ran; now refused at once."""
    target = tmp_path / "result.txt"
    target.write_text("mine")
    one_line_error(cli("eval", tmp_path / "nowhere", "-o", target, cwd=tmp_path), "-o")
    assert target.read_text() == "mine"


def test_help_and_check_import_no_heavy_module():
    """Issue 22.8: `edge-mimo --help` imported Ray, OpenCV and ONNX Runtime (2.3-2.7 s); a command's --help imports
    only that command. The summary table of `--help` says what each command's own parser says."""
    import argparse
    import importlib
    import sys

    from edge_mimo.cli.main import COMMANDS

    code = ("import sys\nfrom edge_mimo.cli.main import main\nfor argv in (['--help'], ['compile', '--help'], "
            "['info', '--help'], ['train', '--help']):\n    try:\n        main(argv)\n    except SystemExit:\n"
            "        pass\nprint([m for m in ('ray', 'cv2', 'onnxruntime', 'torch', 'matplotlib') if m in sys.modules])")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip().splitlines()[-1] == "[]", r.stdout[-500:] + r.stderr[-2000:]
    for name, summary in COMMANDS.items():
        sub = argparse.ArgumentParser().add_subparsers()
        importlib.import_module(f"edge_mimo.cli.{name.replace('-', '_')}").add_parser(sub)
        assert sub._choices_actions[0].help == summary, name


def test_check_lists_every_module_of_the_tensorrt_backend():
    """Issue 22.5: the TensorRT backend imports cuda-python too; `check` lists it with the fix."""
    r = cli("check", "--json")
    modules = {m["module"]: m for m in json.loads(r.stdout)}
    assert {"numpy", "cv2", "onnxruntime", "tensorrt", "cuda"} <= set(modules)
    if not modules["cuda"]["ok"]:
        assert "pip install cuda-python" in modules["cuda"]["error"]


def test_triton_server_refuses_a_missing_repository(tmp_path):
    """Issue 22.6: `edge-mimo triton-server REPO` exists and names the fix for a wrong folder."""
    one_line_error(cli("triton-server", tmp_path / "nowhere", cwd=tmp_path), "export-triton")


def test_ctrl_c_in_the_batchnorm_phase_still_writes_the_model(shapes, tmp_path):
    """Issue 22.2: the final BatchNorm re-estimate shows progress, and Ctrl-C there keeps the average so far and
    writes the model (it wrote nothing without --checkpoint)."""
    import signal

    command = [*edge_mimo_command(), "train", "--dataset", str(shapes / "shapes"), *TINY, "--steps", "2",
               "-o", str(tmp_path / "out")]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    with subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env) as p:
        seen = []
        for line in p.stderr:
            seen.append(line)
            if "re-estimating BatchNorm" in line:
                p.send_signal(signal.SIGINT)
                break
        rest = p.stderr.read()
        assert p.wait(timeout=120) == 0, "".join(seen) + rest
    assert "BatchNorm re-estimate stopped after" in rest and (tmp_path / "out" / "model.safetensors").is_file()
