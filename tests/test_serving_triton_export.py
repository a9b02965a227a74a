"""Issue 21, item 9: `export-triton` options out of any sane range, writes that were not all-or-nothing (a refused
or failed export changed the repository, a symlinked model folder left a backup Triton refuses), hand-edited
packing-model parameters that gave foreign exceptions, and a killed LocalTriton that left its server running."""

from __future__ import annotations

import errno
import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edge_mimo.errors import BackendUnavailableError, ConfigError
from edge_mimo.serving.triton import repo as repo_module
from edge_mimo.serving.triton.server import LocalTriton

from .test_serving_triton import export, needs_server_platform, server_environment


def snapshot(folder: Path) -> dict[str, str]:
    """Every entry under ``folder`` (not following links): relative path -> sha256, link target or 'dir'."""
    out = {}
    for path in sorted(folder.rglob("*")):
        key = str(path.relative_to(folder))
        out[key] = (f"-> {os.readlink(path)}" if path.is_symlink() else "dir" if path.is_dir()
                    else hashlib.sha256(path.read_bytes()).hexdigest())
    return out


def leftovers(repo: Path) -> list[str]:
    """Temporary or backup entries inside the repository or beside it."""
    return [p.name for p in (*repo.iterdir(), *repo.parent.iterdir()) if p.name.startswith(".")]


def one_line_error(capsys, *words: str) -> None:
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    for w in words:
        assert w in err, err


# -- options out of range -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("option, value, allowed", [("--instances", "1000000", "1..64"),
                                                    ("--queue-delay-us", str(10**20), "0..1000000"),
                                                    ("--threads", "100000000", "0..1024"),
                                                    ("--max-batch-frames", str(10**7), "1..1024")])
def test_absurd_options_are_refused_in_one_line_before_anything_is_written(cpu_bundle, tmp_path, capsys, option,
                                                                           value, allowed):
    from edge_mimo.cli.main import main

    repo = tmp_path / "repo"
    assert main(["export-triton", str(cpu_bundle), "-o", str(repo), "--reference-bundle", option, value]) == 2
    one_line_error(capsys, option, allowed)
    assert list(tmp_path.iterdir()) == []


# -- all or nothing -------------------------------------------------------------------------------------------------
def test_a_refused_export_writes_nothing(cpu_bundle, tmp_path, capsys):
    from edge_mimo.cli.main import main

    repo = tmp_path / "repo"
    export(cpu_bundle, repo, "m", copy_bundle=False)
    before = snapshot(repo)
    args = ["export-triton", str(cpu_bundle), "-o", str(repo), "--name", "m", "--engine-models", "--reference-bundle"]
    assert main(args) == 2
    one_line_error(capsys, "pass --force")
    assert snapshot(repo) == before and leftovers(repo) == []


@pytest.mark.parametrize("failure", [OSError(errno.ENOSPC, "No space left on device"), KeyboardInterrupt()])
def test_a_failed_force_leaves_the_deployment_as_it_was(cpu_bundle, tmp_path, monkeypatch, failure):
    repo = tmp_path / "repo"
    export(cpu_bundle, repo, "m", engine_models=True, platform="onnxruntime", copy_bundle=False)
    before = snapshot(repo)

    def fail(*args, **kwargs):
        raise failure

    monkeypatch.setattr(repo_module, "_write_packing_model", fail)  # after the engine models are written
    with pytest.raises(type(failure)):
        export(cpu_bundle, repo, "m", engine_models=True, platform="python", copy_bundle=False, overwrite=True)
    assert snapshot(repo) == before and leftovers(repo) == []


def test_a_swap_failing_half_way_is_undone(cpu_bundle, tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    export(cpu_bundle, repo, "m", engine_models=True, platform="onnxruntime", copy_bundle=False)
    before = snapshot(repo)
    rename, calls = os.rename, []

    def rename_then_fail(src, dst):
        calls.append(src)
        if len(calls) == 4:  # the second model's new folder, after its old one moved out
            raise OSError(errno.EIO, "Input/output error")
        rename(src, dst)

    monkeypatch.setattr(os, "rename", rename_then_fail)
    with pytest.raises(OSError, match="Input/output"):
        export(cpu_bundle, repo, "m", engine_models=True, platform="python", copy_bundle=False, overwrite=True)
    assert snapshot(repo) == before and leftovers(repo) == []


def test_force_over_a_symlinked_model_folder_leaves_only_models(cpu_bundle, tmp_path):
    elsewhere, repo = tmp_path / "elsewhere", tmp_path / "repo"
    export(cpu_bundle, elsewhere, "m", copy_bundle=False)
    repo.mkdir()
    (repo / "m").symlink_to(elsewhere / "m", target_is_directory=True)
    export(cpu_bundle, repo, "m", copy_bundle=False, overwrite=True, queue_delay_us=100)
    assert sorted(os.listdir(repo)) == ["m"] and not (repo / "m").is_symlink()  # Triton loads every folder
    assert "100" in (repo / "m" / "config.pbtxt").read_text() and (elsewhere / "m" / "config.pbtxt").is_file()
    assert leftovers(repo) == []


# -- hand-edited packing-model parameters ---------------------------------------------------------------------------
ENTRY = '{"model": "m_width1", "files": {"model.onnx": "int8/width1.cpu.onnx"}, "max_batch": 8}'


@pytest.mark.parametrize("key, value", [
    ("engine_models", "not json"), ("engine_models", "[1, 2]"), ("engine_models", '{"one": ' + ENTRY + "}"),
    ("engine_models", '{"1": {"model": "m_width1"}}'),
    ("engine_models", '{"1": ' + ENTRY.replace("m_width1", "../../etc") + "}"),
    ("engine_models", '{"1": ' + ENTRY.replace("model.onnx", "..") + "}"),
    ("engine_models", '{"1": ' + ENTRY.replace('"max_batch": 8', '"max_batch": 0') + "}"),
    ("threads", "99999999"), ("budget_ms", "inf"), ("policy", "fast"), ("bundle", "a\0b")])
def test_a_hand_edited_parameter_is_one_error_naming_it(key, value):
    from edge_mimo.serving.triton.backend import Settings

    with pytest.raises(ConfigError, match=f"^config parameter {key}=.*export-triton --force") as e:
        Settings.from_config({"parameters": {key: {"string_value": value}}}, Path("repo/m/1"))
    assert "\n" not in str(e.value)


@needs_server_platform
def test_a_hand_edited_parameter_fails_the_models_load_naming_it(cpu_bundle, tmp_path):
    python = server_environment()
    export(cpu_bundle, tmp_path / "repo", "m", copy_bundle=False)
    config = tmp_path / "repo" / "m" / "config.pbtxt"
    config.write_text(config.read_text().replace('"throughput"', '"fastest"'))
    with pytest.raises(BackendUnavailableError, match="exited") as failure:
        LocalTriton(tmp_path / "repo", python=python, ready_timeout_s=60).start()
    assert "model 'm': config parameter policy='fastest' is not a policy" in str(failure.value)


# -- a killed LocalTriton -------------------------------------------------------------------------------------------
def group(pgid: int) -> list[int]:
    """The processes of process group ``pgid`` (the server's: it leads its own session)."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and os.getpgid(int(entry.name)) == pgid:
                pids.append(int(entry.name))
        except ProcessLookupError:
            pass
    return pids


@needs_server_platform
def test_a_sigkilled_owner_takes_the_server_and_its_stubs_with_it(cpu_bundle, tmp_path):
    python = server_environment()
    export(cpu_bundle, tmp_path / "repo", "m", copy_bundle=False)
    code = ("import sys, time; from edge_mimo.serving.triton.server import LocalTriton; "
            "s = LocalTriton(sys.argv[1], python=sys.argv[2]).start(); print(s.process.pid, flush=True); "
            "time.sleep(600)")
    owner = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "repo"), str(python)],
                             stdout=subprocess.PIPE, text=True)
    server = int(owner.stdout.readline() or 0)
    try:
        assert server and len(group(server)) >= 2  # tritonserver and the packing model's Python stub
        owner.kill()
        owner.wait()
        deadline = time.monotonic() + 30
        while group(server) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert group(server) == []
    finally:
        owner.kill()
        for pid in group(server) if server else []:
            os.kill(pid, signal.SIGKILL)
