"""Runtime from several threads at once: the same answers as one thread, passes serialised as documented, no state
shared between calls, and streams read by their own threads beside it."""

import threading
import time

import numpy as np
import pytest

from edge_mimo.errors import BackendUnavailableError, ConfigError, FrameError
from edge_mimo.streams import StreamMux

from .test_streams_camera_faults import reader_threads
from .test_runtime_preprocess import camera_frame
from .test_streams import write_video


@pytest.fixture(scope="module")
def garments():
    from edge_mimo.datasets import shipped_sample

    return [camera_frame(img[0], (320, 240)) for img in shipped_sample("validation").images[:24]]


def workloads(garments) -> list[dict]:
    """Calls that differ in every way a caller can vary them: count, policy, width, ROI, keys, bad frames."""
    g = garments
    wide = np.zeros((240, 640, 3), np.uint8)
    wide[:, 320:] = g[5]
    return [
        dict(frames=g[:1]),
        dict(frames=g[1:4], policy="balanced"),
        dict(frames={f"cam{i}": f for i, f in enumerate(g[4:13])}),
        dict(frames=g[13:18], policy="robust"),
        dict(frames=[g[18], None, g[19], np.zeros((0, 5, 3), np.uint8)], policy="balanced"),
        dict(frames=g[20:24], width=1),
        dict(frames={"roi": wide, "plain": g[6]}, rois={"roi": (320, 0, 320, 240)}),
        dict(frames=g[::3], width=2),
    ]


def summary(results) -> list[tuple]:
    items = results.items() if isinstance(results, dict) else enumerate(results)
    return [(k, r.stream, type(r.error).__name__ if r.error else None, r.width, r.replicas,
             r.probabilities.round(6).tobytes()) for k, r in items]


def run_threads(target, count: int, timeout: float = 120) -> list[BaseException]:
    errors: list[BaseException] = []
    barrier = threading.Barrier(count)

    def wrapped(k):
        try:
            barrier.wait(10)
            target(k)
        except BaseException as e:  # surfaced to the test
            errors.append(e)

    threads = [threading.Thread(target=wrapped, args=(k,)) for k in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    return errors


def test_concurrent_calls_of_every_kind_equal_the_single_threaded_answers(cpu_runtime, garments):
    rt = cpu_runtime
    jobs = workloads(garments)
    expected = [summary(rt.infer_many(**job)) for job in jobs]
    got: dict[int, list] = {}

    def worker(k):
        order = np.random.default_rng(k).permutation(len(jobs))  # every thread a different interleaving
        for _ in range(2):
            for j in order:
                got.setdefault(k, []).append((j, summary(rt.infer_many(**jobs[j]))))

    errors = run_threads(worker, 8)
    assert not errors, errors
    calls = [(j, s) for answers in got.values() for j, s in answers]
    assert len(calls) == 8 * 2 * len(jobs)
    for j, s in calls:
        assert s == expected[j], f"workload {j} differed under concurrency"


def test_errors_in_one_thread_do_not_disturb_the_others(cpu_runtime, garments):
    rt = cpu_runtime
    expected = summary(rt.infer_many(garments[:6]))

    def worker(k):
        for _ in range(6):
            if k % 2:
                with pytest.raises(ConfigError):
                    rt.infer_many(garments[:6], policy="nonsense")
                assert isinstance(rt.infer_many([None])[0].error, FrameError)
            else:
                assert summary(rt.infer_many(garments[:6])) == expected

    assert not run_threads(worker, 6)


def test_passes_are_serialised_as_documented(cpu_bundle, garments):
    """The Runtime docstring promises serialised passes: at most one backend call runs at any moment."""
    from edge_mimo import Runtime

    rt = Runtime(cpu_bundle, threads=1, warmup=False)
    inner, active, peak, lock = rt._backend.run, [0], [0], threading.Lock()

    def counting_run(width, groups):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        try:
            time.sleep(0.002)  # widen the window in which an overlap would show
            return inner(width, groups)
        finally:
            with lock:
                active[0] -= 1

    rt._backend.run = counting_run
    assert not run_threads(lambda k: [rt.infer_many(garments[k : k + 5]) for _ in range(5)], 6)
    assert peak[0] == 1


def test_two_runtimes_of_one_bundle_are_independent(cpu_bundle, cpu_runtime, garments):
    from edge_mimo import Runtime

    other = Runtime(cpu_bundle, threads=1)
    expected = summary(cpu_runtime.infer_many(garments[:7], policy="balanced"))
    runtimes = [cpu_runtime, other]

    def worker(k):
        for _ in range(4):
            assert summary(runtimes[k % 2].infer_many(garments[:7], policy="balanced")) == expected

    assert not run_threads(worker, 4)


def test_stream_loop_beside_other_callers_then_clean_shutdown(cpu_runtime, garments, tmp_path):
    """A robot: one loop classifies 3 camera streams from a mux, two other threads classify still images."""
    rt = cpu_runtime
    videos = {f"cam{i}": write_video(tmp_path / f"v{i}.avi", 40, 20, (160, 120)) for i in range(3)}
    expected = summary(rt.infer_many(garments[:4]))
    stop = threading.Event()
    streamed: dict[str, list[int]] = {name: [] for name in videos}
    before = len(reader_threads())

    def target(k):
        if k == 0:
            with StreamMux(videos) as mux:
                while mux.active:
                    batch = mux.read(timeout=0.5)
                    if batch:
                        for name, result in rt.infer_many(batch).items():
                            assert result.ok
                            streamed[name].append(batch[name].index)
            stop.set()
        else:
            while not stop.is_set():
                assert summary(rt.infer_many(garments[:4])) == expected

    assert not run_threads(target, 3, timeout=30)
    for name, indices in streamed.items():
        assert indices == sorted(set(indices)) and indices[-1] >= 35, name  # each stream read to (near) its end
    assert len(reader_threads()) == before


def test_close_while_other_threads_infer_then_every_call_is_refused_cleanly(cpu_bundle, garments):
    """close() waits for the pass in flight; later calls get a clear error (never a freed device buffer)."""
    from edge_mimo import Runtime

    rt = Runtime(cpu_bundle, threads=1)
    outcomes: list[str] = []

    def target(k):
        if k == 0:
            time.sleep(0.2)
            rt.close()
            return
        for _ in range(200):
            try:
                assert all(r.ok for r in rt.infer_many(garments[k : k + 3]))
                outcomes.append("ok")
            except BackendUnavailableError as e:
                assert "closed" in str(e) and "new Runtime" in str(e)
                outcomes.append("closed")
                return

    assert not run_threads(target, 4)
    assert "ok" in outcomes and outcomes.count("closed") == 3
    with pytest.raises(BackendUnavailableError, match="closed"):
        rt.infer(garments[0])


def test_several_consumers_of_one_mux_each_get_distinct_frames(tmp_path):
    """Worker threads sharing one mux: every frame is handed to exactly one of them, in order per stream."""
    import collections
    import sys

    video = write_video(tmp_path / "v.avi", 30, 30, (64, 48))
    handed, lock = collections.Counter(), threading.Lock()
    per_thread: dict[int, dict[str, list[int]]] = {}
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible, so a race would show
    try:
        with StreamMux({f"s{i}": video for i in range(2)}, loop=True, pace=False) as mux:
            def consumer(k):
                mine = per_thread.setdefault(k, collections.defaultdict(list))
                end = time.monotonic() + 2.0
                while time.monotonic() < end:
                    for name, frame in mux.read(timeout=0.1).items():
                        mine[name].append(frame.index)
                        with lock:
                            handed[(name, frame.index)] += 1

            assert not run_threads(consumer, 4)
    finally:
        sys.setswitchinterval(interval)
    assert sum(handed.values()) > 1000
    assert max(handed.values()) == 1, "a frame was handed to two consumers"
    for mine in per_thread.values():
        for indices in mine.values():
            assert indices == sorted(indices)
