"""Streams with real video files written by OpenCV: ordering, freshness, endings, failures, shutdown."""

import threading
import time

import cv2
import numpy as np
import pytest

from edge_mimo.errors import ConfigError
from edge_mimo.streams import ENDED, FAILED, LIVE, StreamMux, VideoSource, classify_uri


def write_video(path, frames: int, fps: float, size=(96, 64)) -> str:
    """Frame i carries its number as 8 black/white 8x8 blocks (bits) along the top, robust to MJPEG."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    assert writer.isOpened()
    for i in range(frames):
        img = np.full((size[1], size[0], 3), 0, np.uint8)
        img[:, :, 1] = (i * 8) % 256
        for bit in range(8):
            img[:8, 8 * bit : 8 * bit + 8] = 255 * ((i >> bit) & 1)
        writer.write(img)
    writer.release()
    return str(path)


def started_since(before: set[threading.Thread]) -> list[threading.Thread]:
    """Threads alive now that were not in ``before`` (threads other tests left behind do not count)."""
    return [t for t in threading.enumerate() if t not in before]


def frame_number(image: np.ndarray) -> int:
    return sum(1 << bit for bit in range(8) if image[2:6, 8 * bit + 2 : 8 * bit + 6].mean() > 127)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    d = tmp_path_factory.mktemp("videos")
    return {
        "fast": write_video(d / "fast.avi", 90, 30),  # 3 s
        "slow": write_video(d / "slow.avi", 20, 10),  # 2 s
        "short": write_video(d / "short.avi", 6, 12),  # 0.5 s, ends early
        "missing": str(d / "never-there.avi"),
    }


def test_classify_uri():
    assert classify_uri(0)[2] == "device" and classify_uri("/dev/video2")[2] == "device"
    assert classify_uri("rtsp://10.0.0.5/stream")[2] == "network"
    assert classify_uri("http://127.0.0.1:8080/video.mjpg")[2] == "network"
    assert classify_uri("clip.mp4")[2] == "file"
    with pytest.raises(ConfigError):
        classify_uri("")


def test_source_reads_a_file_in_order_at_its_frame_rate(videos):
    seen = []
    with VideoSource(videos["slow"], "slow") as src:
        start = time.monotonic()
        while not src.finished and time.monotonic() - start < 10:
            f = src.latest()
            if f is not None and (not seen or f.index != seen[-1][0]):
                seen.append((f.index, frame_number(f.image), f.timestamp))
            time.sleep(0.01)
        elapsed = time.monotonic() - start
        status = src.status()
    assert status.state == ENDED and status.frames == 20
    # Paced at 10 fps, not read as fast as the disk allows: 20 frames cannot take less than 1.9 s. Only the lower
    # bound is a property of the reader; how much longer a loaded machine takes is not (an upper bound flaked).
    assert elapsed > 1.5
    indices = [s[0] for s in seen]
    assert indices == sorted(indices) and len(indices) >= 10
    assert all(idx == num for idx, num, _ in seen)  # the index is the frame's real position
    assert all(a[2] <= b[2] for a, b in zip(seen, seen[1:]))
    assert status.fps < 13  # never faster than the file's rate
    assert status.fps * elapsed == pytest.approx(20, rel=0.35)  # the fps reported is the rate the frames came at


def test_mux_several_streams_one_ends_one_never_opens(videos):
    sources = {name: videos[name] for name in ("fast", "slow", "short", "missing")}
    handed = {name: [] for name in sources}
    with StreamMux(sources, backoff=(0.05, 0.1)) as mux:
        start = time.monotonic()
        for batch in mux:
            for name, frame in batch.items():
                assert frame.age < 0.5  # fresh: the newest frame, not a backlog
                assert frame_number(frame.image) == frame.index % 256  # the image belongs to its index
                handed[name].append(frame.index)
            time.sleep(0.07)  # a slow consumer (the model): frames in between are skipped, not queued
            assert time.monotonic() - start < 10
        health = mux.health()
        skipped = dict(mux.skipped)
    assert health["missing"].state == FAILED and "does not exist" in health["missing"].error
    assert health["short"].state == ENDED and health["fast"].state == ENDED and health["slow"].state == ENDED
    assert handed["missing"] == []
    for name in ("fast", "slow", "short"):
        idx = handed[name]
        assert idx == sorted(set(idx)), f"{name}: every frame handed out once, in order"
        assert idx, f"{name} delivered nothing"
    # the dead and the short stream did not stop the others: the 3 s stream ran to (near) its end
    assert handed["fast"][-1] >= 80
    assert skipped["fast"] > 0 and len(handed["fast"]) + skipped["fast"] == handed["fast"][-1] + 1


def test_looping_file_and_clean_shutdown(videos):
    before = set(threading.enumerate())
    mux = StreamMux([videos["short"]], loop=True).start()
    readers = started_since(before)
    assert [t.name.startswith("edge-mimo-source-") for t in readers] == [True]  # one reader thread per source
    deadline = time.monotonic() + 30
    while list(mux.health().values())[0].frames <= 12 and time.monotonic() < deadline:  # > 2 passes of the file
        time.sleep(0.02)
    status = list(mux.health().values())[0]
    assert status.state == LIVE and status.frames > 12
    t = time.monotonic()
    mux.close()
    assert time.monotonic() - t < 5.0  # joined promptly (a reader that ignored close would block much longer)
    assert not any(t.is_alive() for t in readers) and started_since(before) == []  # reader threads joined
    assert list(mux.health().values())[0].state == "closed"


def test_missing_file_retries_with_backoff_then_fails(videos):
    src = VideoSource(videos["missing"], retries=3, backoff=(0.1, 0.2)).start()
    t = time.monotonic()
    while not src.finished and time.monotonic() - t < 30:
        time.sleep(0.02)
    took = time.monotonic() - t
    assert src.status().state == FAILED and "gave up after 4 attempts" in src.status().error
    assert took > 0.45  # 0.1 + 0.2 + 0.2 s of backoff were waited (a loaded machine may take longer, never less)
    src.close()


def test_read_returns_empty_when_nothing_new(videos):
    """A frame is handed out once: while the stream plays the next read waits for a newer one; once it has ended and
    its last frame was read, every read returns nothing (at once: nothing more can come)."""
    with StreamMux({"slow": videos["slow"]}) as mux:
        first = mux.read(timeout=2.0)
        second = mux.read(timeout=2.0)  # 10 fps: a newer frame within 2 s, never the same one again
        assert second["slow"].index > first["slow"].index
        handed = [first["slow"].index, second["slow"].index]
        while mux.active:
            handed += [f.index for f in mux.read(timeout=0.5).values()]
        handed += [f.index for f in mux.read(timeout=0).values()]  # the last frame, if the loop missed it
        assert mux.health()["slow"].state == ENDED and handed == sorted(set(handed)) and handed[-1] == 19
        t = time.monotonic()
        assert mux.read(timeout=5.0) == {} and mux.read(timeout=0) == {}
        assert time.monotonic() - t < 2.0


def test_gather_waits_for_the_other_live_streams(videos):
    with StreamMux({"a": videos["slow"], "b": videos["slow"]}) as mux:
        sizes = [len(mux.read(timeout=2.0, gather=1.0)) for _ in range(8)]
    # Both 10 fps streams give a frame every 100 ms: a read that waits up to 1 s for the other live stream gets
    # both (a window ten frames wide: a loaded machine's late reader still makes it).
    assert sizes.count(2) >= 7


def test_duplicate_stream_names_are_refused(videos):
    with pytest.raises(ConfigError, match="named"):
        StreamMux([videos["slow"], videos["slow"]])
