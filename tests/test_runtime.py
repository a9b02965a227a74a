"""Runtime: scheduling, demultiplexing, per-stream results and accuracy on a real compiled bundle."""

import json
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_mimo.errors import BundleIntegrityError, ConfigError, FrameError
from edge_mimo.metrics import mutual_information, softmax
from edge_mimo.runtime.results import frame_statistics
from edge_mimo.runtime.scheduler import gather, min_replicas, plan

from .test_runtime_preprocess import camera_frame

# -- scheduling (no bundle needed) ---------------------------------------------------------------------------


def test_issue_examples_on_an_n4_model():
    two = plan(2, 4, [1, 2, 4])
    assert two.cost == 1 and two.groups[0].width == 2 and list(two.replicas(2)) == [2, 2]
    three = plan(3, 4, [1, 2, 4])
    assert three.cost == 1 and three.groups[0].width == 4 and sorted(three.replicas(3)) == [1, 1, 2]
    nine = plan(9, 4, [1, 2, 4])
    assert nine.cost == 3 and all(g.width == 4 for g in nine.groups)
    one = plan(1, 4, [1, 2, 4])
    assert one.groups[0].width == 1 and list(one.replicas(1)) == [4]


def test_policies_set_the_replica_floor():
    assert [min_replicas(p, 4) for p in ("throughput", "balanced", "robust")] == [1, 2, 4]
    assert plan(4, 4, [1, 2, 4], replicas=2).cost == 2 and min(plan(4, 4, [1, 2, 4], replicas=2).replicas(4)) == 2
    assert plan(4, 4, [1, 2, 4], replicas=4).cost == 4 and min(plan(4, 4, [1, 2, 4], replicas=4).replicas(4)) == 4
    with pytest.raises(ConfigError, match="policy"):
        min_replicas("fast", 4)
    with pytest.raises(ConfigError, match="width 3"):
        plan(4, 4, [1, 2, 4], width=3)


@settings(max_examples=200, deadline=None)
@given(count=st.integers(0, 40), capacity_widths=st.sampled_from([(4, [1, 2, 4]), (4, [1, 4]), (4, [2, 4]),
                                                                  (6, [1, 2, 3, 6]), (8, [1, 2, 4, 8]), (1, [1])]),
       replicas=st.integers(1, 8), data=st.data())
def test_plan_properties(count, capacity_widths, replicas, data):
    capacity, widths = capacity_widths
    forced = data.draw(st.sampled_from([None] + widths))
    p = plan(count, capacity, widths, replicas=replicas, width=forced)
    seen = [f for g in p.groups for f in dict.fromkeys(g.frames)]
    assert seen == list(range(count))  # every frame in exactly one group, groups in frame order
    for g in p.groups:
        assert len(g.frames) == g.width and g.width in widths
    if forced is None and count:
        per_group = max([w for w in widths if capacity // w >= replicas] or [min(widths)])
        assert p.cost == -(-count // per_group)  # the fewest passes for the policy's floor
        reachable = min(replicas, capacity // per_group)
        assert p.replicas(count).min() >= reachable
        sizes = [len(set(g.frames)) for g in p.groups]
        assert max(sizes) - min(sizes) <= 1


@settings(max_examples=100, deadline=None)
@given(count=st.integers(1, 30), widths=st.sampled_from([[1, 2, 4], [1, 4], [2, 4]]), replicas=st.integers(1, 4))
def test_gather_returns_each_frames_own_rows(count, widths, replicas):
    """Outputs tagged with their frame id come back to that frame, as many rows as its replicas."""
    p = plan(count, 4, widths, replicas=replicas)
    outputs = {}
    for n, groups in p.by_width().items():
        frames = np.asarray([g.frames for g in groups], dtype=np.float32)  # [G, n]
        outputs[n] = np.broadcast_to(frames[:, None, :, None], (len(groups), 4 // n, n, 3)).copy()
    logits, owner = gather(p, outputs, count)
    assert np.array_equal(logits[:, 0], owner.astype(np.float32))
    assert np.array_equal(np.bincount(owner, minlength=count), p.replicas(count))


def test_frame_statistics_match_the_metrics_module():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(5, 4, 10)) * 3  # 5 frames, 4 replicas
    stats = frame_statistics(logits.reshape(20, 10), np.repeat(np.arange(5), 4), 5, np.full(20, 1.5))
    probs = softmax(logits / 1.5)
    assert np.allclose(stats["disagreement"], mutual_information(probs) / np.log(10))
    assert np.allclose(stats["probabilities"], softmax(logits.mean(1) / 1.5), atol=1e-6)
    single = frame_statistics(logits[:, 0], np.arange(5), 5, np.ones(5))
    assert np.allclose(single["disagreement"], 0.0) and (single["replicas"] == 1).all()
    assert ((stats["entropy"] >= 0) & (stats["entropy"] <= 1)).all()


# -- a real bundle -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bundle(cpu_bundle):
    return cpu_bundle  # compiled once per session (tests/conftest.py)


@pytest.fixture(scope="module")
def runtime(cpu_runtime):
    return cpu_runtime


@pytest.fixture(scope="module")
def validation():
    from edge_mimo.datasets import shipped_sample

    return shipped_sample("validation")


def classify(runtime, images, width: int, per_call: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Class indices and probabilities of ``images`` (28x28 arrays or camera frames), ``per_call`` streams a call."""
    results = []
    for i in range(0, len(images), per_call):
        batch = runtime.infer_many(list(images[i : i + per_call]), width=width)
        assert [r.stream for r in batch] == list(range(len(batch)))
        assert all(r.ok and r.width == width and r.replicas >= runtime.capacity // width for r in batch)
        results += batch
    return np.array([r.class_index for r in results]), np.stack([r.probabilities for r in results])


def test_aligned_camera_frames_agree_with_the_raw_images(runtime, validation):
    """640x480 BGR frames whose centre crop is the garment (noisy background outside it), 8 streams a call: per
    frame, the same class as the raw 28x28 image in >= 99 % of frames at every width."""
    images = validation.images[:1200, 0]
    for width in runtime.widths:
        raw, raw_probs = classify(runtime, images, width)
        cam, cam_probs = [], []
        for i in range(0, len(images), 8):  # rendered per call: 1,200 frames at once would take 1.1 GB
            classes, probs = classify(runtime, [camera_frame(img) for img in images[i : i + 8]], width)
            cam.append(classes)
            cam_probs.append(probs)
        agreement = float(np.mean(np.concatenate(cam) == raw))
        assert agreement >= 0.99, (width, agreement)
        assert np.abs(np.concatenate(cam_probs) - raw_probs).max(1).mean() < 0.02, width


def test_results_in_order_dicts_keep_keys_and_bad_frames_stay_local(runtime, validation):
    frames = {f"cam{i}": camera_frame(validation.images[i, 0]) for i in range(5)}
    frames["broken"] = None
    frames["nan"] = np.full((480, 640, 3), np.nan, np.float32)
    results = runtime.infer_many(frames)
    assert list(results) == list(frames)
    assert isinstance(results["broken"].error, FrameError) and isinstance(results["nan"].error, FrameError)
    good = [results[f"cam{i}"] for i in range(5)]
    assert all(r.ok for r in good)
    alone = runtime.infer_many({k: v for k, v in frames.items() if k.startswith("cam")})
    for r in good:  # same plan for the 5 good frames: identical predictions with or without the bad ones
        assert np.allclose(r.probabilities, alone[r.stream].probabilities, atol=1e-6)
    json.dumps([r.to_dict() for r in results.values()])


def test_stream_frames_are_accepted(runtime, validation):
    from edge_mimo.streams import Frame

    image = camera_frame(validation.images[0, 0])
    frames = {"cam": Frame("cam", image, 7, 0.0, 0.0)}
    assert np.array_equal(runtime.infer_many(frames)["cam"].probabilities,
                          runtime.infer_many({"cam": image})["cam"].probabilities)


def test_empty_and_all_bad_calls(runtime):
    assert runtime.infer_many([]) == [] and runtime.infer_many({}) == {}
    results = runtime.infer_many([None, np.zeros((0, 0, 3), np.uint8)])
    assert [type(r.error) for r in results] == [FrameError, FrameError] and results[0].timing.groups == 0


def test_result_fields_are_consistent(runtime, validation):
    frames = [camera_frame(img[0]) for img in validation.images[:3]]
    for policy in ("throughput", "balanced", "robust"):
        for r in runtime.infer_many(frames, policy=policy):
            assert r.class_index == int(np.argmax(r.probabilities)) and r.class_name == runtime.class_names[r.class_index]
            assert abs(r.probabilities.sum() - 1) < 1e-4 and r.confidence == pytest.approx(r.probabilities.max())
            assert 0 <= r.entropy <= 1 and 0 <= r.disagreement <= 1
            assert r.uncertain == (r.entropy > runtime.entropy_threshold[r.width])
            assert r.disagreement == 0 if r.replicas == 1 else True
    robust = runtime.infer_many(frames, policy="robust")
    assert all(r.width == 1 and r.replicas == runtime.capacity for r in robust)
    assert robust[0].timing.groups == 3
    assert runtime.infer_many(frames, policy="throughput")[0].timing.groups == 1


def test_budget_lowers_replicas_but_drops_no_frame(runtime, validation):
    frames = [camera_frame(img[0]) for img in validation.images[:8]]
    generous = runtime.infer_many(frames, policy="robust", budget_ms=1e6)
    tight = runtime.infer_many(frames, policy="robust", budget_ms=1e-6)
    assert len(tight) == 8 and all(r.ok for r in tight)
    assert generous[0].timing.groups == 8 and tight[0].timing.groups == 2


def test_region_of_interest_per_stream(runtime, validation):
    garment = camera_frame(validation.images[0, 0])
    wide = np.zeros((480, 1280, 3), np.uint8)
    wide[:, 640:] = garment  # the garment sits in the right half only
    cropped = runtime.infer_many({"a": wide}, rois={"a": (640, 0, 640, 480)})["a"]
    plain = runtime.infer_many({"a": garment})["a"]  # same slot, same width: must be the same prediction
    assert np.allclose(cropped.probabilities, plain.probabilities, atol=1e-5)
    whole = runtime.infer_many({"a": wide})["a"]  # without the ROI the centre crop sees another picture
    assert not np.allclose(whole.probabilities, plain.probabilities, atol=1e-3)
    with pytest.raises(ConfigError, match="unknown streams"):
        runtime.infer_many({"a": wide}, rois={"z": (0, 0, 10, 10)})


def test_thread_safe_calls_give_the_single_threaded_answers(runtime, validation):
    frames = [camera_frame(img[0]) for img in validation.images[:24]]
    batches = [frames[i : i + 6] for i in range(0, 24, 6)]
    def answer(results) -> list[tuple[int, bytes]]:
        return [(r.class_index, r.probabilities.round(6).tobytes()) for r in results]

    expected = [answer(runtime.infer_many(b)) for b in batches]
    got, errors = {}, []

    def worker(k):
        try:
            for _ in range(3):
                got.setdefault(k, []).append(runtime.infer_many(batches[k]))  # kept: read after every call ended
        except Exception as e:  # surfaced below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for k in range(4):
        assert len(got[k]) == 3 and all(answer(results) == expected[k] for results in got[k])


def test_altered_artifact_is_refused(bundle, tmp_path):
    from edge_mimo import Runtime

    copy = tmp_path / "b"
    shutil.copytree(bundle, copy)
    loaded = Runtime(bundle, warmup=False)
    graph = copy / loaded.manifest.artifacts[1].graph(loaded.precision).file  # a graph the Runtime loads
    data = bytearray(graph.read_bytes())
    data[len(data) // 2] ^= 0xFF
    graph.write_bytes(bytes(data))
    with pytest.raises(BundleIntegrityError, match="sha256"):
        Runtime(copy)


def test_backend_choice_without_a_gpu(bundle):
    from edge_mimo import Runtime
    from edge_mimo.errors import BackendUnavailableError
    from edge_mimo.engines import gpu_available

    if gpu_available():
        pytest.skip("this machine has TensorRT and a GPU: the refusal below cannot happen here")
    assert Runtime(bundle, warmup=False).backend_name == "onnxruntime"  # auto falls back to the CPU
    with pytest.raises(BackendUnavailableError, match="pip install tensorrt cuda-python"):
        Runtime(bundle, backend="tensorrt")
    with pytest.raises(ConfigError, match="precision='int8'"):
        Runtime(bundle, backend="tensorrt", precision="fp32")


def test_runtime_and_streams_import_without_torch(bundle):
    code = ("import sys; sys.modules['torch'] = None; import edge_mimo.streams; from edge_mimo import Runtime; "
            f"import numpy as np; rt = Runtime({str(bundle)!r}, threads=1); "
            "r = rt.infer(np.zeros((480, 640, 3), np.uint8)); print(r.ok)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "True", result.stderr


def test_cli_run_writes_json_lines_per_stream_and_a_video(bundle, tmp_path, capsys):
    import cv2

    from edge_mimo.cli.main import main

    from .test_streams import write_video

    a = write_video(tmp_path / "a.avi", 30, 30)
    b = write_video(tmp_path / "b.avi", 10, 10)
    out, video = tmp_path / "out.jsonl", tmp_path / "mosaic.avi"
    began = time.monotonic()
    rc = main(["run", str(bundle), "--source", f"front={a}", "--source", b, "--source", str(tmp_path / "gone.mp4"),
               "-o", str(out), "--video", str(video), "--stats-every", "0", "--gather-ms", "20"])
    took = time.monotonic() - began
    assert rc == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    by_stream = {}
    for rec in lines:
        assert rec["ok"] and 0 <= rec["confidence"] <= 1 and rec["replicas"] >= 1
        by_stream.setdefault(rec["stream"], []).append(rec["frame"])
    assert set(by_stream) == {"front", "cam1"}  # the missing source produced nothing and stopped nothing
    for frames in by_stream.values():
        assert frames == sorted(set(frames))
    assert by_stream["front"][-1] >= 25 and by_stream["cam1"][-1] >= 8
    err = capsys.readouterr().err
    assert "cam2: failed" in err and "does not exist" in err
    cap = cv2.VideoCapture(str(video))
    assert cap.get(cv2.CAP_PROP_FRAME_COUNT) > 10 and cap.read()[1].shape == (480, 640, 3)
    # the video lasts as long as the run: at least the 1 s the paced files played, at most the whole command
    assert 0.9 <= cap.get(cv2.CAP_PROP_FRAME_COUNT) / cap.get(cv2.CAP_PROP_FPS) <= took + 0.1


def test_multi_camera_example_runs(bundle, tmp_path):
    from .test_streams import write_video

    videos = [write_video(tmp_path / f"v{i}.avi", 12, 12) for i in range(2)]
    result = subprocess.run([sys.executable, "examples/multi_camera.py", str(bundle), *videos],
                            capture_output=True, text=True, timeout=120, cwd=Path(__file__).parent.parent)
    assert result.returncode == 0, result.stderr
    assert "cam0: ended" in result.stdout and "cam1: ended" in result.stdout


def test_runtime_is_a_context_manager_that_closes(bundle):
    from edge_mimo import Runtime
    from edge_mimo.engines import Backend, OnnxRuntimeBackend
    from edge_mimo.errors import BackendUnavailableError

    with Runtime(bundle, threads=1, warmup=False) as rt:
        assert isinstance(rt._backend, OnnxRuntimeBackend) and isinstance(rt._backend, Backend)
        assert rt.infer(np.zeros((28, 28), np.uint8)).ok
    with pytest.raises(BackendUnavailableError, match="closed"):
        rt.infer(np.zeros((28, 28), np.uint8))
    with pytest.raises(BackendUnavailableError, match="closed"):  # several frames
        rt.infer_many([np.zeros((28, 28), np.uint8)] * 4)


def test_infer_in_calls_feeds_streams_at_a_time_and_keeps_order(cpu_runtime):
    rng = np.random.default_rng(3)
    frames = [rng.integers(0, 256, (48, 64, 3), dtype=np.uint8) for _ in range(7)]
    got = cpu_runtime.infer_in_calls(frames, 3, policy="robust")
    want = cpu_runtime.infer_many(frames[:3], policy="robust") + cpu_runtime.infer_many(frames[3:6], policy="robust") \
        + cpu_runtime.infer_many(frames[6:], policy="robust")
    assert [r.class_index for r in got] == [r.class_index for r in want]
    assert all(np.allclose(a.probabilities, b.probabilities, atol=1e-6) for a, b in zip(got, want))
    assert [r.stream for r in got] == [0, 1, 2, 0, 1, 2, 0]  # each call's own stream ids
    with pytest.raises(ConfigError, match="streams"):
        cpu_runtime.infer_in_calls(frames, 0)
