"""Soak: thousands of ``infer_many`` calls and dozens of camera reconnects with flat memory, threads and file
descriptors (bounded in time, CI-sized)."""

import gc
import os
import threading
import time

import numpy as np
import pytest

from edge_mimo.streams import StreamMux, VideoSource

from .support.mjpeg_server import LoopbackCamera
from .test_runtime_bad_frames import bad_frames
from .test_runtime_preprocess import camera_frame
from .test_streams import started_since, write_video

PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE / 2**20


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def calls(garments):
    """An endless, varied call mix: 1-12 streams, every policy, sizes, bad frames, ROIs, dicts."""
    rng = np.random.default_rng(0)
    bad = list(bad_frames().values())
    policies = ("throughput", "balanced", "robust")
    i = 0
    while True:
        count = int(rng.integers(1, 13))
        frames = [garments[int(k)] for k in rng.integers(0, len(garments), count)]
        if i % 5 == 0:
            frames[int(rng.integers(0, count))] = bad[i % len(bad)]
        kwargs = {"policy": policies[i % 3] if count <= 4 else "throughput"}
        if i % 7 == 0:
            frames = {f"s{k}": f for k, f in enumerate(frames)}
            kwargs["rois"] = {"s0": (10, 10, 200, 200)}
        yield frames, kwargs
        i += 1


@pytest.mark.slow
def test_thousands_of_calls_keep_memory_flat(cpu_runtime):
    from edge_mimo.datasets import shipped_sample

    rt = cpu_runtime
    images = shipped_sample("validation").images[:16, 0]
    garments = [camera_frame(img, size) for img, size in zip(images, [(640, 480), (320, 240), (1280, 720), (96, 96)] * 4)]
    mix = calls(garments)
    for _ in range(200):  # warm-up: ORT arenas and allocator pools reach their working size
        frames, kwargs = next(mix)
        rt.infer_many(frames, **kwargs)
    gc.collect()
    base_rss, base_objects, threads_before = rss_mb(), len(gc.get_objects()), set(threading.enumerate())
    samples, done, frames_done, start = [], 0, 0, time.monotonic()
    while done < 3000 and time.monotonic() - start < 30:
        frames, kwargs = next(mix)
        results = rt.infer_many(frames, **kwargs)
        assert len(results) == len(frames)
        done += 1
        frames_done += len(frames)
        if done % 100 == 0:
            samples.append(rss_mb())
    gc.collect()
    # Growth within the measured calls: from the first sample (the allocators' pools can still settle during the first
    # hundred calls after warm-up: seen once, +20.7 MB there, then flat to the byte for 2,900 calls) to the last ones.
    growth = max(samples[-3:]) - samples[0]
    print(f"soak: {done} calls, {frames_done} frames in {time.monotonic() - start:.1f} s; "
          f"RSS {base_rss:.1f} -> {samples[0]:.1f} (after 100 calls) -> {samples[-1]:.1f} MB (growth {growth:.2f} MB)")
    assert done >= 600, "too few calls to say anything about memory"
    assert growth < 8.0, f"RSS grew {growth:.1f} MB over {done} calls: {samples}"
    assert len(gc.get_objects()) - base_objects < 2000  # no Python objects piling up between calls
    assert started_since(threads_before) == []  # infer_many leaves no thread behind


@pytest.mark.slow
def test_dozens_of_reconnects_leak_no_threads_descriptors_or_memory(tmp_path):
    """A camera that drops its connection every few frames, beside a looping file, for 12 s."""
    clip = write_video(tmp_path / "clip.avi", 20, 20, (160, 120))
    with LoopbackCamera(fps=30, lifetime=40, mode="close", after=4) as cam:
        # a first round to let FFmpeg and OpenCV load what they keep for the process
        with StreamMux({"net": VideoSource(cam.url, backoff=(0.05, 0.1))}) as mux:
            assert mux.read(timeout=5)
        gc.collect()
        base_rss, base_fds, threads_before = rss_mb(), open_fds(), set(threading.enumerate())
        net = VideoSource(cam.url, "net", backoff=(0.05, 0.1), read_timeout=1.0)
        with StreamMux({"net": net, "file": VideoSource(clip, "file", loop=True)}) as mux:
            start, got, peak_fds = time.monotonic(), {"net": 0, "file": 0}, 0
            while time.monotonic() - start < 12:
                for name in mux.read(timeout=0.2):
                    got[name] += 1
                peak_fds = max(peak_fds, open_fds())
            reconnects = mux.health()["net"].reconnects
        gc.collect()
        growth = rss_mb() - base_rss
    print(f"reconnect soak: {reconnects} reconnects in 12 s; frames {got}; RSS growth {growth:.2f} MB; "
          f"fds {base_fds} -> peak {peak_fds}")
    assert reconnects >= 20 and got["net"] >= 60 and got["file"] >= 150
    assert peak_fds <= base_fds + 12  # one capture (and its socket) per source at a time, none left open
    assert open_fds() <= base_fds + 1 and started_since(threads_before) == []  # readers and openers all joined
    assert growth < 10.0, f"RSS grew {growth:.1f} MB over {reconnects} reconnects"
