"""Ray Serve (edge_mimo.serving.ray_serve, `edge-mimo serve`) on a local 2-CPU Ray instance, loopback only:
concurrent callers over HTTP and the Python handle each get their own frame's result, packed into shared passes;
a bad frame fails only its own call; per-call policies; clean shutdown; the CLI as a subprocess."""

import json
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import cv2
import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="Ray Serve is not installed: pip install 'edge-mimo[serve]'")
from ray import serve  # noqa: E402

from edge_mimo.errors import ConfigError, FrameError  # noqa: E402
from edge_mimo.serving.ray_serve import ServeOptions, deploy  # noqa: E402

from .test_runtime_preprocess import camera_frame  # noqa: E402

pytestmark = pytest.mark.slow
CALLERS = 8
BAD_SHAPE = np.zeros((2, 3, 4, 5), np.uint8)  # an array no camera gives: 4-D


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def refused(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def concurrently(call, items: list) -> list:
    """``call(item)`` for every item, each from its own thread, released together; results in item order."""
    start, out, errors = threading.Barrier(len(items)), [None] * len(items), []

    def worker(i):
        try:
            start.wait(timeout=30)
            out[i] = call(items[i])
        except BaseException as e:  # reported below, with the item
            errors.append((items[i] if not isinstance(items[i], np.ndarray) else i, e))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(items))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    return out


@pytest.fixture(scope="module")
def frames(cpu_runtime) -> list[np.ndarray]:
    """CALLERS camera frames of distinct classes that the model classifies confidently however they are
    packed (same class alone under `robust` and four to a pass), so a result given to the wrong caller shows."""
    from edge_mimo.datasets import shipped_sample

    sample = shipped_sample("validation")
    chosen, seen = [], set()
    for img, label in zip(sample.images[:400], sample.labels[:400]):
        if int(label) in seen:
            continue
        frame = camera_frame(img[0], (96, 96))
        robust = cpu_runtime.infer(frame, policy="robust")
        packed = cpu_runtime.infer_many([frame] * 4)
        if robust.class_index == label and robust.confidence > 0.9 and all(r.class_index == label for r in packed):
            chosen.append(frame)
            seen.add(int(label))
        if len(chosen) == CALLERS:
            return chosen
    pytest.fail(f"only {len(chosen)} confidently classified classes in the validation sample")


@pytest.fixture(scope="module")
def served(cpu_bundle):
    """The bundle deployed on a local Ray instance: (handle, url). One replica, 1 CPU, batches of up to 16."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    handle = deploy(cpu_bundle, ServeOptions(num_cpus=1, threads=1, batch_wait_ms=50))
    yield handle, f"http://127.0.0.1:{port}/classify", port
    if ray.is_initialized():  # test_shutdown_is_clean normally did this already
        serve.shutdown()
        ray.shutdown()


def post(url: str, body: bytes, query: str = "") -> tuple[int, dict]:
    request = urllib.request.Request(url + query, data=body, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def png(frame: np.ndarray) -> bytes:
    return cv2.imencode(".png", frame)[1].tobytes()  # lossless: the server decodes exactly these pixels


def calls(results) -> dict:
    """The distinct infer_many calls behind results (members of one call share its Timing): {key: passes}."""
    return {(t.total_ms, tuple(sorted(t.passes.items()))): t.groups for t in (r.timing for r in results)}


def test_options_are_checked_before_deploying(cpu_bundle):
    from edge_mimo.serving.ray_serve import build_app

    for bad, needle in [(ServeOptions(max_batch_size=6), "multiple of the model's capacity 4"),
                        (ServeOptions(min_replicas=1), "give both"),
                        (ServeOptions(min_replicas=3, max_replicas=2), "min_replicas <= max_replicas"),
                        (ServeOptions(policy="fast"), "unknown policy"),
                        (ServeOptions(num_cpus=0), "num_cpus"),
                        (ServeOptions(backend="gpu"), "backend 'gpu' is unknown")]:
        with pytest.raises(ConfigError, match=needle):
            build_app(cpu_bundle, bad)
    options = ServeOptions(min_replicas=1, max_replicas=3, num_cpus=2).check(4)
    assert (options.max_batch_size, options.threads) == (16, 2)
    assert options.deployment_options()["autoscaling_config"]["max_replicas"] == 3


@pytest.mark.parametrize("threads", [1025, -1, True, 2.0])
def test_thread_counts_are_refused_alike_by_the_server_and_the_runtime(cpu_bundle, threads):
    from edge_mimo import Runtime

    with pytest.raises(ConfigError, match="threads must be a whole number") as by_server:
        ServeOptions(threads=threads).check(4)
    with pytest.raises(ConfigError) as by_runtime:
        Runtime(cpu_bundle, threads=threads)
    assert str(by_server.value) == str(by_runtime.value)


def test_handle_callers_get_their_own_frames_packed_into_shared_passes(served, frames, cpu_runtime):
    handle, _, _ = served
    results = concurrently(lambda f: handle.classify.remote(f).result(timeout_s=60), frames)
    reference = cpu_runtime.infer_many(frames)
    for got, ref in zip(results, reference):
        assert got.ok and got.stream is None, got.error
        # The class, not the probabilities: pass mates other than infer_many's shift them (by 0.16 once in CI);
        # exact equality is checked under robust below, where a frame has no pass mates.
        assert got.class_index == ref.class_index
        assert got.confidence == pytest.approx(float(got.probabilities.max()))
    assert max(r.width for r in results) > 1
    assert sum(calls(results).values()) < CALLERS  # fewer passes than calls: calls shared passes


def test_robust_callers_get_exactly_the_runtimes_answers(served, frames, cpu_runtime):
    handle, _, _ = served
    results = concurrently(lambda f: handle.classify.remote(f, policy="robust").result(timeout_s=60), frames)
    for got, ref in zip(results, cpu_runtime.infer_many(frames, policy="robust")):
        assert (got.class_index, got.width, got.replicas) == (ref.class_index, 1, cpu_runtime.capacity)
        np.testing.assert_allclose(got.probabilities, ref.probabilities, atol=1e-5)
    assert len(calls(results)) < CALLERS  # several calls ran in one infer_many


def test_a_bad_array_fails_only_its_own_handle_call(served, frames):
    handle, _, _ = served
    items = [*frames[:4], BAD_SHAPE, *frames[4:7], "not an image"]
    results = concurrently(lambda f: handle.classify.remote(f).result(timeout_s=60), items)
    bad = [results[4], results[-1]]
    assert all(isinstance(r.error, FrameError) and not r.ok for r in bad), bad
    assert "(2, 3, 4, 5)" in str(bad[0].error) and "not a numpy array" in str(bad[1].error)
    good = results[:4] + results[5:-1]
    assert all(r.ok for r in good) and max(r.width for r in good) > 1


def test_http_callers_get_their_own_frames_and_a_bad_body_a_400(served, frames, cpu_runtime):
    _, url, _ = served
    bodies = [png(f) for f in frames] + [b"not an image", b""]
    answers = concurrently(lambda b: post(url, b), bodies)
    for (status, body), ref in zip(answers, cpu_runtime.infer_many(frames)):
        assert status == 200 and body["ok"], body
        assert body["class_index"] == ref.class_index and "stream" not in body and body["passes"]
    assert max(body["width"] for _, body in answers[:CALLERS]) > 1
    for status, body in answers[CALLERS:]:
        assert status == 400 and not body["ok"] and body["error"].startswith("FrameError: "), body
        assert "send" in body["error"]  # says what to send instead


def test_http_results_match_the_handle(served, frames):
    handle, url, _ = served
    for frame in frames[:3]:
        status, body = post(url, png(frame), "?policy=robust")
        direct = handle.classify.remote(frame, policy="robust").result(timeout_s=60)
        assert status == 200 and body["class_name"] == direct.class_name
        np.testing.assert_allclose(body["probabilities"], direct.probabilities, atol=1e-5)


def test_per_call_policies_and_bad_options(served, frames):
    _, url, _ = served
    queries = ["?policy=robust", ""] * (CALLERS // 2)
    answers = concurrently(lambda i: post(url, png(frames[i]), queries[i]), list(range(CALLERS)))
    for (status, body), query in zip(answers, queries):
        assert status == 200, body
        if query:
            assert (body["replicas"], body["width"]) == (4, 1)
    assert max(body["width"] for _, body in answers[1::2]) > 1
    for query, needle in [("?policy=fast", "unknown policy 'fast'"), ("?budget_ms=soon", "not a number"),
                          ("?budget_ms=-1", "budget_ms must be a number > 0")]:
        status, body = post(url, png(frames[0]), query)
        assert status == 400 and needle in body["error"], body
    status, body = post(url, png(frames[0]), "?budget_ms=1000")
    assert status == 200 and body["ok"]


def test_shutdown_is_clean(served):
    handle, url, port = served
    assert not refused(port)
    serve.shutdown()
    ray.shutdown()
    assert not ray.is_initialized() and refused(port)


def test_cli_serves_until_sigterm(cpu_bundle, frames):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "edge_mimo.cli.main", "serve", str(cpu_bundle), "--port", str(port),
                             "--num-cpus", "1", "--batch-wait-ms", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert select.select([proc.stdout], [], [], 120)[0], "edge-mimo serve printed nothing in 120 s"
        line = proc.stdout.readline()  # printed once the replica is up
        assert f"http://127.0.0.1:{port}/classify" in line, (line, proc.stderr.read() if proc.poll() else "")
        status, body = post(f"http://127.0.0.1:{port}/classify", png(frames[0]))
        assert status == 200 and body["ok"], body
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0 and "stopped" in out, err[-2000:]
    assert "Traceback" not in err and refused(port)
