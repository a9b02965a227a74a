"""The CLI and compile options (issue 11, items 3, 5, 10, 12, 15, 18): nothing deleted that is not ours, nothing
left behind on SIGTERM, options that silently meant something else, and tracebacks instead of messages."""

import dataclasses
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edge_mimo.cli.main import main
from edge_mimo.live.sources import parse_sources
from edge_mimo.compile.pipeline import CompileOptions
from edge_mimo.errors import ConfigError



def cli_error(capsys, *argv: str) -> str:
    """Run the CLI in-process; it must exit 2 with one `edge-mimo ...: error:` message and no traceback."""
    assert main(list(argv)) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"edge-mimo {argv[0]}: error: ") and "Traceback" not in err, err
    return err


# -- item 3: only an edge-mimo bundle is ever replaced ------------------------------------------------------------


@pytest.mark.parametrize("foreign", [
    {"name": "My web app", "short_name": "app", "start_url": "/", "icons": []},
    {"manifest_version": 3, "name": "A browser extension", "version": "1.0"},
])
def test_compile_never_replaces_a_folder_whose_manifest_json_is_not_ours(tmp_path, capsys, foreign):
    app = tmp_path / "app"
    app.mkdir()
    (app / "manifest.json").write_text(json.dumps(foreign))
    (app / "index.html").write_text("<html>years of work</html>")
    err = cli_error(capsys, "compile", "--calib-size", "16", "--no-cache", "-o", str(app))
    assert "refusing to replace it" in err
    assert sorted(p.name for p in app.iterdir()) == ["index.html", "manifest.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["app"]  # no temporary directory either


# -- item 5: SIGTERM cleans up like Ctrl-C ------------------------------------------------------------------------


@pytest.mark.slow
def test_sigterm_during_compile_leaves_no_partial_directory(tmp_path):
    out = tmp_path / "out" / "bundle"
    proc = subprocess.Popen([sys.executable, "-m", "edge_mimo.cli.main", "compile", "--calib-size", "64",
                             "--no-cache", "-o", str(out)], cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=dict(os.environ, OMP_NUM_THREADS="1"))
    deadline = time.monotonic() + 120
    while not (out.parent.exists() and any(out.parent.iterdir())) and time.monotonic() < deadline:
        time.sleep(0.05)  # the temporary directory appears once the model and data are loaded
    assert proc.poll() is None, "compile ended before it could be interrupted"
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 128 + signal.SIGTERM
    assert list(out.parent.iterdir()) == []


def test_a_killed_writers_partial_directory_is_removed_by_the_next_write(tmp_path):
    from edge_mimo.atomic import atomic_dir

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".bundle.partial-{dead.pid}-abc123"
    (stale / "fp32").mkdir(parents=True)  # what SIGKILL leaves behind
    alive = tmp_path / f".bundle.partial-{os.getpid()}-def456"  # a writer still at work: kept
    alive.mkdir()
    with atomic_dir(tmp_path / "bundle") as d:
        (d / "manifest.json").write_text("{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == [alive.name, "bundle"]


# -- item 10: a file whose name contains '=' ----------------------------------------------------------------------


def test_a_source_file_whose_name_contains_an_equals_sign_is_that_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("clip=1.avi").write_bytes(b"video")
    assert parse_sources(["clip=1.avi"]) == {"cam0": "clip=1.avi"}
    assert parse_sources(["front=clip=1.avi"]) == {"front": "clip=1.avi"}
    assert parse_sources(["front=rtsp://10.0.0.7/cam?a=b"]) == {"front": "rtsp://10.0.0.7/cam?a=b"}
    Path("1.avi").write_bytes(b"another video")
    with pytest.raises(ConfigError, match="may be the file 'clip=1.avi' or the file '1.avi'.*cam0=clip=1.avi"):
        parse_sources(["clip=1.avi"])  # both exist: ambiguous, say how to write each
    assert parse_sources(["clip=./1.avi"]) == {"clip": "./1.avi"}


# -- items 12, 15, 18: options that meant something else, numpy messages, tracebacks -------------------------------


@pytest.mark.parametrize("option, value, match", [
    ("max_drop_points", math.nan, "max-drop .max_drop_points. must be a finite number"),
    ("max_drop_points", math.inf, "max-drop .max_drop_points. must be a finite number"),
    ("max_drop_points", -1.0, "max-drop"),
    ("max_drop_points", True, "max-drop"),
    ("widths", [1, 1], "names a width twice"),
    ("widths", [2, 0], "must be positive integers"),
    ("calibration_size", -5, "calib-size .calibration_size. must be an integer >= 0"),
    ("calibration_size", 0, "calib-size .calibration_size. must be at least 1"),
    ("calibration_method", "median", "calib-method 'median' is unknown"),
    ("validation_size", -1, "val-size .validation_size. must be an integer >= 0"),
    ("max_width", 0, "--m .max_width. must be an integer >= 1"),
    ("crop_factor", 65, "crop-factor must be an integer in 1..64"),
])
def test_compile_options_that_would_do_something_else_cannot_be_made(option, value, match):
    """CompileOptions checks itself when made: an invalid one never exists, whoever makes it (CLI or Python)."""
    with pytest.raises(ConfigError, match=match):
        CompileOptions(**{option: value})


def test_compile_options_are_frozen_and_hold_widths_as_a_tuple():
    opts = CompileOptions(widths=[1, 2])
    assert opts.widths == (1, 2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        opts.max_drop_points = math.nan


def test_the_cli_reports_the_projects_errors_and_lets_a_bug_show_as_a_bug(monkeypatch, tmp_path, capsys):
    """Exit 2 with one line for an EdgeMimoError (models and datasets raise those, a missing folder included);
    any other exception (a ValueError of a bug) is not dressed up as a user error: it propagates."""
    from edge_mimo.cli import targets
    from edge_mimo.datasets import load_dataset
    from edge_mimo.errors import EdgeMimoError, NotFoundError
    from edge_mimo.models.config import ModelConfig

    with pytest.raises(NotFoundError) as missing:
        load_dataset(str(tmp_path / "nowhere"), "train")
    assert isinstance(missing.value, FileNotFoundError)  # as before, for Python callers
    with pytest.raises(ConfigError):
        ModelConfig(arch="resnet")
    assert "is not a model directory" in cli_error(capsys, "info", str(tmp_path / "nowhere"))

    def bug(args):
        raise ValueError("an internal mistake")

    monkeypatch.setattr(targets, "run", bug)
    with pytest.raises(ValueError, match="internal mistake") as raised:
        main(["targets"])
    assert not isinstance(raised.value, EdgeMimoError)


def test_max_drop_nan_from_the_command_line_writes_nothing(tmp_path, capsys):
    out = tmp_path / "bundle"
    err = cli_error(capsys, "compile", "--max-drop", "nan", "--calib-size", "16", "--no-cache", "-o", str(out))
    assert "--max-drop" in err and not out.exists()


def test_calibration_with_fewer_images_than_a_width_is_a_data_error(tmp_path, capsys):
    err = cli_error(capsys, "compile", "--calib", "shipped", "--calib-size", "3", "--no-cache", "-o",
                    str(tmp_path / "b"))
    assert re.search(r"3 calibration image\(s\) cannot fill a width-4 group: give at least 4", err), err


def test_compile_output_under_a_file_is_a_config_error(tmp_path, capsys):
    (tmp_path / "FILE").write_text("not a folder")
    err = cli_error(capsys, "compile", "--calib-size", "16", "--no-cache", "-o", str(tmp_path / "FILE" / "x"))
    assert "choose another output path" in err


@pytest.mark.parametrize("extra, match", [
    (["--max-frames", "0"], "--max-frames must be a whole number >= 1"),
    (["--gather-ms", "inf"], "--gather-ms must be a finite number"),
    (["--gather-ms", "nan"], "--gather-ms"),
    (["--duration", "-1"], "--duration must be a finite number > 0"),
    (["--stats-every", "inf"], "--stats-every"),
    (["--video-fps", "0"], "--video-fps"),
    (["--budget-ms", "inf"], "budget_ms must be a number > 0 and finite"),  # as the servers refuse it
])
def test_run_limits_that_would_mean_unlimited_or_crash_are_refused(cpu_bundle, capsys, extra, match):
    err = cli_error(capsys, "run", str(cpu_bundle), "--source", "missing.mp4", *extra)
    assert match in err


def test_run_output_that_is_a_directory_is_a_config_error(cpu_bundle, tmp_path, capsys):
    err = cli_error(capsys, "run", str(cpu_bundle), "--source", "missing.mp4", "--duration", "1", "-o", str(tmp_path))
    assert "cannot write predictions to" in err and "writable directory" in err
