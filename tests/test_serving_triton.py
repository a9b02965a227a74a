"""Triton Inference Server: the exported repository served by a real tritonserver (from the nvidia-pytriton wheel)
on loopback, many concurrent clients, packing, per-request errors and policies, BLS engine models, integrity at
load, clean shutdown; the packing logic in process; engine-model configs parsed offline."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from edge_mimo.errors import BackendUnavailableError, ConfigError
from edge_mimo.serving.triton.server import LocalTriton, platform_problem

from .support.installed import ROOT

SERVER_PYTHON = ROOT / ".venv-triton" / "bin" / "python"
CLIENTS, FRAMES_PER_CLIENT = 8, 3
QUEUE_DELAY_US = 20000  # long enough that concurrent requests meet in one execution on a loaded 2-core machine


def export(bundle: Path, repo: Path, name: str, **options) -> None:
    from edge_mimo.serving.triton.repo import ExportOptions, export_repository

    export_repository(bundle, repo, ExportOptions(name=name, **options))


@pytest.fixture(scope="module")
def frames(cpu_runtime) -> list[np.ndarray]:
    """24 camera-like frames of garments in two sizes (the image input is ragged) whose class the runtime gives with
    any companions in a superposed pass (about 1 frame in 20 changes class with its companions: not these)."""
    from edge_mimo.camera.frames import camera_frames
    from edge_mimo.datasets import shipped_sample

    images = shipped_sample("validation").images[:96]
    pool = [camera_frames(images[k : k + 1], (160, 120) if k % 2 else (128, 128), k)[0] for k in range(len(images))]
    alone = [r.class_index for r in cpu_runtime.infer_many(pool, policy="robust")]
    stable = np.ones(len(pool), bool)
    rng = np.random.default_rng(0)
    for width in (2, 4, 4, 4):
        order = rng.permutation(len(pool))
        for i, r in zip(order, cpu_runtime.infer_many([pool[i] for i in order], width=width)):
            stable[i] &= r.class_index == alone[i] and r.confidence > 0.9
    chosen = [pool[i] for i in np.flatnonzero(stable)[: CLIENTS * FRAMES_PER_CLIENT]]
    assert len(chosen) == CLIENTS * FRAMES_PER_CLIENT
    return chosen


# -- the packing logic in process (no server) ---------------------------------------------------------------------
def test_one_execution_packs_every_good_request_and_fails_only_the_bad_ones(cpu_runtime, cpu_bundle, frames):
    from edge_mimo.serving.triton.backend import Settings, run_batch

    defaults = Settings(cpu_bundle, cpu_bundle.parent)
    batch = [(f[None], "{}") for f in frames[:4]]
    batch.insert(1, (np.zeros((1, 0, 5, 3), np.uint8), "{}"))             # an empty image
    batch.insert(3, (frames[4][None], json.dumps({"policy": "fastest"})))  # an unknown policy
    batch.insert(4, (frames[5][None], "not json"))
    batch.append((np.stack([frames[6], frames[6]]), json.dumps({"policy": "robust", "budget_ms": "60000"})))
    out = run_batch(cpu_runtime, batch, defaults)
    assert [type(o).__name__ for o in out] == ["dict", "FrameError", "dict", "ConfigError", "JSONDecodeError",
                                               "dict", "dict", "dict"]
    expected = cpu_runtime.infer_many(frames[:4])  # the same four frames share the same passes in process
    good = [o for o in out[:-1] if isinstance(o, dict)]
    for o, e in zip(good, expected):
        assert o["class_index"][0, 0] == e.class_index and o["width"][0, 0] == e.width == 4
        np.testing.assert_allclose(o["probabilities"][0], e.probabilities, atol=1e-6)
    robust = out[-1]
    assert robust["probabilities"].shape == (2, 10) and robust["replicas"].ravel().tolist() == [4, 4]
    assert robust["class_name"][0, 0] == cpu_runtime.class_names[robust["class_index"][0, 0]].encode()


def test_parameters_are_checked_with_the_fix():
    from edge_mimo.serving.triton.backend import Settings, parse_request

    defaults = Settings(Path("b"), Path("r"), policy="balanced")
    assert [r.policy for r in parse_request(np.zeros((2, 8, 8, 3), np.uint8), "{}", defaults)] == ["balanced"] * 2
    with pytest.raises(ConfigError, match="unknown request parameter"):
        parse_request(np.zeros((1, 8, 8, 3), np.uint8), '{"polcy": "robust"}', defaults)
    with pytest.raises(ConfigError, match="not a number"):
        parse_request(np.zeros((1, 8, 8, 3), np.uint8), '{"budget_ms": "soon"}', defaults)
    with pytest.raises(ConfigError, match="policy='fast' is not a policy"):
        Settings.from_config({"parameters": {"policy": {"string_value": "fast"}}}, Path("m/1"))


# -- configs of every engine platform, parsed as Triton's protobuf ------------------------------------------------
def parse_config(path: Path):
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    return text_format.Parse(path.read_text(encoding="utf-8"), model_config_pb2.ModelConfig())


def test_config_strings_survive_quotes_backslashes_and_non_ascii(tmp_path):
    from edge_mimo.serving.triton.pbtxt import string_parameters, to_pbtxt

    awkward = {"bundle": '/srv/bündel "a"\\b', "engine_models": {"1": {"model": "m_width1"}}}
    (tmp_path / "config.pbtxt").write_text(to_pbtxt({"name": "m", "parameters": string_parameters(awkward)}),
                                             encoding="utf-8")
    parsed = {k: v.string_value for k, v in parse_config(tmp_path / "config.pbtxt").parameters.items()}
    assert parsed == {"bundle": awkward["bundle"], "engine_models": json.dumps(awkward["engine_models"])}


def tensorrt_bundle(cpu_bundle: Path, tmp_path: Path) -> Path:
    """The CPU bundle dressed as a Jetson bundle with (fake) plans for two GPU architectures per width."""
    from edge_mimo.bundle.manifest import EngineFile, Manifest, sha256_file
    from edge_mimo.compile.targets import load_target

    bundle = tmp_path / "trt"
    shutil.copytree(cpu_bundle, bundle)
    manifest = Manifest.load(bundle)
    manifest.target = load_target("jetson-orin")
    for n in manifest.widths:
        for key, cc in (("sm87-trt10.3.0", "8.7"), ("sm89-trt10.3.0", "8.9")):
            rel = f"engines/{key}/width{n}.plan"
            (bundle / rel).parent.mkdir(parents=True, exist_ok=True)
            (bundle / rel).write_bytes(f"plan {key} {n}".encode())
            digest = sha256_file(bundle / rel)
            manifest.files[rel] = digest
            manifest.artifacts[n].engines.append(EngineFile(rel, digest, cc, "10.3.0"))
    manifest.save(bundle)
    return bundle


@pytest.mark.parametrize("platform", ["tensorrt", "onnxruntime", "python"])
def test_engine_model_configs_parse_as_triton_model_configs(cpu_bundle, tmp_path, platform):
    bundle = tensorrt_bundle(cpu_bundle, tmp_path) if platform == "tensorrt" else cpu_bundle
    export(bundle, tmp_path / "repo", "mimo", engine_models=True, platform=platform, copy_bundle=False, budget_ms=8.0)
    packing = parse_config(tmp_path / "repo" / "mimo" / "config.pbtxt")
    assert packing.backend == "python" and packing.max_batch_size == 32
    assert list(packing.dynamic_batching.preferred_batch_size) == [4, 8, 12, 16, 20, 24, 28, 32]
    assert list(packing.input[0].dims) == [-1, -1, 3] and packing.input[0].allow_ragged_batch
    params = {k: v.string_value for k, v in packing.parameters.items()}
    assert params["bundle"] == str(bundle.resolve()) and params["budget_ms"] == "8.0"
    engines = json.loads(params["engine_models"])
    assert not (tmp_path / "repo" / "mimo" / "1" / "bundle").exists()
    for n in (1, 2, 4):
        config = parse_config(tmp_path / "repo" / f"mimo_width{n}" / "config.pbtxt")
        assert config.max_batch_size > 0 and list(config.input[0].dims) == [n, 1, 28, 28]
        assert list(config.output[0].dims) == [4 // n, n, 10] and engines[str(n)]["model"] == f"mimo_width{n}"
        files = sorted(p.name for p in (tmp_path / "repo" / f"mimo_width{n}" / "1").iterdir())
        if platform == "tensorrt":
            assert config.platform == "tensorrt_plan" and config.max_batch_size == 8
            assert dict(config.cc_model_filenames) == {"8.7": "sm87-trt10.3.0.plan", "8.9": "sm89-trt10.3.0.plan"}
            assert files == ["sm87-trt10.3.0.plan", "sm89-trt10.3.0.plan"]
        elif platform == "onnxruntime":
            assert config.platform == "onnxruntime_onnx" and files == ["model.onnx"]
        else:
            assert config.backend == "python" and files == ["model.onnx", "model.py"]


def test_export_refuses_what_it_cannot_serve(cpu_bundle, tmp_path):
    with pytest.raises(ConfigError, match="build-engines"):
        export(cpu_bundle, tmp_path / "r", "m", engine_models=True, platform="tensorrt")
    export(cpu_bundle, tmp_path / "r", "m")
    with pytest.raises(ConfigError, match="--force"):
        export(cpu_bundle, tmp_path / "r", "m")
    export(cpu_bundle, tmp_path / "r", "m", overwrite=True)
    for bad, match in ((dict(policy="fast"), "choose one of"), (dict(name="a/b"), "letters, digits"),
                       (dict(queue_delay_us=-1), "0..1000000"), (dict(max_batch_frames=0), "1..1024")):
        with pytest.raises(ConfigError, match=match):
            export(cpu_bundle, tmp_path / "r", bad.pop("name", "m2"), **bad)


def test_export_triton_command(cpu_bundle, tmp_path, capsys):
    from edge_mimo.cli.main import main

    args = ["export-triton", str(cpu_bundle), "-o", str(tmp_path / "repo"), "--engine-models", "--reference-bundle"]
    assert main(args) == 0
    out = capsys.readouterr().out
    models = ("edge_mimo_width1", "edge_mimo_width2", "edge_mimo_width4", "edge_mimo")
    assert [line for line in out.splitlines() if line.startswith("wrote")] == [f"wrote {tmp_path / 'repo' / m}"
                                                                            for m in models]
    assert "tritonserver --model-repository" in out
    assert parse_config(tmp_path / "repo" / "edge_mimo_width4" / "config.pbtxt").platform == "onnxruntime_onnx"
    assert main(args) == 2 and "pass --force" in capsys.readouterr().err


# -- a real tritonserver ------------------------------------------------------------------------------------------
needs_server_platform = pytest.mark.skipif(platform_problem() is not None, reason=str(platform_problem()))


def server_environment() -> Path:
    """The server's Python environment, made by scripts/setup.sh and holding this checkout's edge-mimo."""
    if not SERVER_PYTHON.exists():
        pytest.fail(f"no Triton server environment at {SERVER_PYTHON}: run `bash scripts/setup.sh`")
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from tests.support.installed import stale_files; "
            "print('\\n'.join(stale_files()))")
    stale = subprocess.run([str(SERVER_PYTHON), "-P", "-c", code, str(ROOT)], capture_output=True, text=True,
                           timeout=60)
    if stale.returncode or stale.stdout.strip():
        pytest.fail(f"edge-mimo in {SERVER_PYTHON.parent.parent} differs from this checkout or is missing "
                    f"({(stale.stdout or stale.stderr).split()[:3]}): run `bash scripts/setup.sh` again (or "
                    f"`{SERVER_PYTHON.parent}/pip install --no-deps -e .` while developing)")
    return SERVER_PYTHON


@pytest.fixture(scope="module")
def server(cpu_bundle, tmp_path_factory):
    """One server: 'edge_mimo' (runs the bundle) and 'edge_mimo_bls' (calls per-width engine models via BLS)."""
    python = server_environment()
    repo = tmp_path_factory.mktemp("triton-repo")
    export(cpu_bundle, repo, "edge_mimo", queue_delay_us=QUEUE_DELAY_US, threads=1)
    export(cpu_bundle, repo, "edge_mimo_bls", queue_delay_us=QUEUE_DELAY_US, engine_models=True, platform="python")
    with LocalTriton(repo, python=python, log=repo.parent / "tritonserver.log") as s:
        yield s


def client_results(server, model: str, frames: list[np.ndarray], params: dict | None = None,
                   bad: dict[int, np.ndarray] | None = None) -> dict[int, dict | str]:
    """Send every frame from CLIENTS threads at once (each its own gRPC client, async_infer); frame index ->
    outputs, or the error message. ``bad``: frames to send as given instead (any dtype or shape)."""
    import tritonclient.grpc as grpcclient

    results: dict[int, dict | str] = {}
    lock, barrier = threading.Lock(), threading.Barrier(CLIENTS)
    names = ("class_index", "probabilities", "confidence", "width", "replicas", "class_name")

    def client(k: int) -> None:
        mine = range(k, len(frames), CLIENTS)
        done = threading.Semaphore(0)
        with grpcclient.InferenceServerClient(server.grpc_url) as c:
            barrier.wait(30)
            for i in mine:
                x = (bad or {}).get(i, frames[i])
                x = x[None] if x.ndim == 3 else x
                tensor = grpcclient.InferInput("image", list(x.shape), "UINT8" if x.dtype == np.uint8 else "FP32")
                tensor.set_data_from_numpy(x)

                def callback(result, error, i=i):
                    with lock:
                        results[i] = str(error) if error else {n: result.as_numpy(n) for n in names}
                    done.release()

                c.async_infer(model, [tensor], callback, parameters=params, client_timeout=60)
            for _ in mine:
                assert done.acquire(timeout=90), "a request got no response"

    threads = [threading.Thread(target=client, args=(k,)) for k in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert len(results) == len(frames)
    return results


def metric(server, name: str, model: str) -> float:
    """One counter from the server's metrics page (its endpoint can answer a moment after the model is ready:
    asked again until it does, for up to a minute)."""
    deadline = time.monotonic() + 60
    while True:
        try:
            text = urllib.request.urlopen(server.metrics_url, timeout=10).read().decode()
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    found = re.search(rf'^{name}{{model="{model}",version="1"}} ([0-9.e+]+)$', text, re.M)
    assert found, f"no {name} for {model} in the server's metrics"
    return float(found.group(1))


@needs_server_platform
def test_concurrent_clients_each_get_their_own_frames_result_in_packed_passes(server, cpu_runtime, frames):
    before = [metric(server, m, "edge_mimo") for m in ("nv_inference_count", "nv_inference_exec_count")]
    got = client_results(server, "edge_mimo", frames)
    counted, executions = (metric(server, m, "edge_mimo") - b
                           for m, b in zip(("nv_inference_count", "nv_inference_exec_count"), before))
    assert counted == len(frames) and executions < counted  # Triton handed several requests to one execution
    widths = [int(got[i]["width"][0, 0]) for i in range(len(frames))]
    assert max(widths) > 1  # frames of different clients shared superposed passes
    # Every answer is its own frame's: these frames keep their class whatever their companions in a pass
    # (probabilities shift a little with the companions; exact equality: the robust test below).
    expected = cpu_runtime.infer_many(frames, policy="robust")
    assert [int(got[i]["class_index"][0, 0]) for i in range(len(frames))] == [e.class_index for e in expected]
    assert [got[i]["class_name"][0, 0] for i in range(len(frames))] == [e.class_name.encode() for e in expected]


@needs_server_platform
def test_robust_per_request_policy_gives_the_full_ensemble_exactly_as_in_process(server, cpu_runtime, frames):
    got = client_results(server, "edge_mimo", frames, params={"policy": "robust", "budget_ms": 60000.0})
    expected = cpu_runtime.infer_many(frames, policy="robust")  # width 1, each frame alone: no companions
    for i, e in enumerate(expected):
        assert got[i]["replicas"][0, 0] == 4 == e.replicas and got[i]["width"][0, 0] == 1
        assert got[i]["class_index"][0, 0] == e.class_index
        np.testing.assert_allclose(got[i]["probabilities"][0], e.probabilities, atol=1e-5)


@needs_server_platform
def test_a_bad_frame_or_parameter_fails_only_its_own_request(server, frames):
    bad = {3: np.zeros((1, 0, 7, 3), np.uint8), 10: np.full((120, 160, 3), np.nan, np.float32)}
    got = client_results(server, "edge_mimo", frames, bad=bad)
    assert "FrameError" in got[3] and "empty" in got[3].lower()
    assert "FP32" in got[10] and "UINT8" in got[10]  # refused by Triton before our model sees it
    assert all(isinstance(got[i], dict) and got[i]["class_index"][0, 0] >= 0 for i in got if i not in bad)
    wrong = client_results(server, "edge_mimo", frames[:CLIENTS], params={"policy": "fastest"})
    assert all("unknown policy 'fastest'" in r for r in wrong.values())


@needs_server_platform
def test_engine_models_through_bls_give_the_packing_models_answers(server, cpu_runtime, frames):
    before = metric(server, "nv_inference_exec_count", "edge_mimo_bls_width1")
    got = client_results(server, "edge_mimo_bls", frames, params={"policy": "robust"})
    expected = cpu_runtime.infer_many(frames, policy="robust")
    for i, e in enumerate(expected):
        assert got[i]["class_index"][0, 0] == e.class_index and got[i]["replicas"][0, 0] == 4
        np.testing.assert_allclose(got[i]["probabilities"][0], e.probabilities, atol=1e-5)
    assert metric(server, "nv_inference_exec_count", "edge_mimo_bls_width1") > before


@needs_server_platform
@pytest.mark.parametrize("damaged", ["bundle graph", "engine model graph"])
def test_an_altered_file_fails_the_models_load_naming_it(cpu_bundle, tmp_path, damaged):
    python = server_environment()
    repo = tmp_path / "repo"
    export(cpu_bundle, repo, "m", engine_models=damaged == "engine model graph", platform="python")
    target = repo / ("m/1/bundle/int8/width2.cpu.onnx" if damaged == "bundle graph" else "m_width2/1/model.onnx")
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))
    with pytest.raises(BackendUnavailableError, match="exited") as failure:
        LocalTriton(repo, python=python, ready_timeout_s=60).start()
    assert "does not match" in str(failure.value) and target.name in str(failure.value)


@needs_server_platform
def test_the_server_stops_cleanly_and_frees_its_ports(cpu_bundle, tmp_path):
    export(cpu_bundle, tmp_path / "repo", "m")
    server = LocalTriton(tmp_path / "repo", python=server_environment()).start()
    ports = (server.http_port, server.grpc_port, server.metrics_port)
    assert server.stop() == 0 and server.process.poll() == 0
    for port in ports:  # nothing listens any more (SO_REUSEADDR: closed connections may linger in TIME_WAIT)
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", port))
            s.listen()


def test_a_missing_server_environment_is_named_with_the_fix(tmp_path):
    if platform_problem():
        pytest.skip(platform_problem())
    with pytest.raises(BackendUnavailableError, match="scripts/setup.sh"):
        LocalTriton(tmp_path, python=tmp_path / "no-python")
