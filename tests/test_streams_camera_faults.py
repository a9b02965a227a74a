"""Camera faults with real OpenCV sources: a loopback MJPEG camera killed and restarted, one that stalls, one that
sends garbage, one that drops the connection, one that never opens, and broken video files. Each time: reconnect
with backoff, the right health state, the other streams unaffected, no frame queue, clean shutdown."""

import gc
import json
import socket
import threading
import time

import numpy as np
import pytest

from edge_mimo.runtime.preprocess import prepare_frame
from edge_mimo.streams import ENDED, FAILED, LIVE, RECONNECTING, STALLED, Frame, StreamMux, VideoSource

from .support.mjpeg_server import LoopbackCamera, frame_number, generation, render
from .test_streams import write_video


def wait_for(predicate, timeout: float, step: float = 0.02) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def reader_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("edge-mimo-source-")]


class Recorder:
    """Consumes a mux like an application would, logging every frame handed out and every health state seen."""

    def __init__(self, mux: StreamMux) -> None:
        self.mux = mux
        self.frames: dict[str, list[tuple[float, Frame]]] = {name: [] for name in mux.sources}
        self.states: dict[str, list[str]] = {name: [] for name in mux.sources}
        self.sizes: list[int] = []

    def run(self, seconds: float, until=None) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end and not (until and until()):
            batch = self.mux.read(timeout=0.1)
            now = time.monotonic()
            for name, frame in batch.items():
                self.frames[name].append((now, frame))
            for name, status in self.mux.health().items():
                if not self.states[name] or self.states[name][-1] != status.state:
                    self.states[name].append(status.state)
            time.sleep(0.02)

    def indices(self, name: str) -> list[int]:
        return [f.index for _, f in self.frames[name]]

    def count_between(self, name: str, start: float, end: float) -> int:
        return sum(start <= t < end for t, _ in self.frames[name])


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return write_video(tmp_path_factory.mktemp("faults") / "clip.avi", 40, 20)  # 2 s at 20 fps, looped below


def test_killed_camera_reconnects_with_backoff_and_the_other_stream_never_stops(clip):
    with LoopbackCamera(fps=25, lifetime=40) as cam:
        net = VideoSource(cam.url, "net", backoff=(0.2, 1.0), read_timeout=1.0, open_timeout=2.0, stall_after=0.5)
        with StreamMux({"net": net, "file": VideoSource(clip, "file", loop=True)}) as mux:
            rec = Recorder(mux)
            rec.run(1.5)
            assert rec.frames["net"] and all(generation(f.image) == 0 for _, f in rec.frames["net"])
            killed = time.monotonic()
            cam.kill()
            files_before = len(rec.frames["file"])
            # wait for what the mux does, not for the clock: the camera reported down with a reason, and the file
            # stream handing out frames meanwhile
            rec.run(60.0, until=lambda: mux.health()["net"].state == RECONNECTING
                    and "cannot open" in (mux.health()["net"].error or "")
                    and len(rec.frames["file"]) >= files_before + 20)
            down = mux.health()["net"]
            assert down.state == RECONNECTING and "cannot open" in down.error and "check" in down.error
            restarted = time.monotonic()
            cam.restart()
            rec.run(60.0, until=lambda: any(generation(f.image) == 1 for _, f in rec.frames["net"][-3:]))
            rec.run(10.0, until=lambda: mux.health()["net"].state == LIVE and rec.states["net"][-1] == LIVE)
            health = mux.health()
    assert any(generation(f.image) == 1 for _, f in rec.frames["net"]), "the restarted camera was read again"
    assert health["net"].state == LIVE and health["net"].reconnects == 1 and health["net"].error is None
    assert RECONNECTING in rec.states["net"] and rec.states["net"][-1] == LIVE
    # nothing stale handed out while it was down: after the kill, only frames of the restarted camera
    stale = [f for t, f in rec.frames["net"] if t > killed and generation(f.image) == 0]
    assert len(stale) <= 2, "at most the frames already read when the camera died"
    assert rec.count_between("file", killed, restarted) >= 20  # the file stream kept going
    assert rec.states["file"][-1] == LIVE and RECONNECTING not in rec.states["file"]
    for name in ("net", "file"):
        idx = rec.indices(name)
        assert idx == sorted(set(idx)), f"{name}: each frame handed out once, in order, across the reconnect"


def test_camera_that_never_opens_reports_reconnecting_then_fails_when_retries_run_out():
    url = f"http://127.0.0.1:{free_port()}/nothing.mjpg"
    forever = VideoSource(url, "forever", retries=None, backoff=(0.1, 0.2), open_timeout=1.0).start()
    limited = VideoSource(url, "limited", retries=2, backoff=(0.1, 0.2), open_timeout=1.0).start()
    try:
        assert wait_for(lambda: forever.status().state == RECONNECTING, 3.0), forever.status()
        assert "cannot open" in forever.status().error and "check" in forever.status().error
        assert wait_for(lambda: limited.finished, 5.0)
        assert limited.status().state == FAILED and "gave up after 3 attempts" in limited.status().error
        assert forever.status().state == RECONNECTING and forever.latest() is None
    finally:
        forever.close()
        limited.close()


@pytest.mark.parametrize("uri", ["/dev/video9", 7, "rtsp://127.0.0.1:{port}/none", "udp://127.0.0.1:{port}"])
def test_missing_devices_and_dead_urls_fail_within_bounds(uri):
    uri = uri.format(port=free_port()) if isinstance(uri, str) else uri
    src = VideoSource(uri, retries=1, backoff=(0.05, 0.1), open_timeout=1.0, read_timeout=1.0).start()
    try:
        assert wait_for(lambda: src.finished, 10.0), src.status()  # UDP waits for its open timeout, others refuse
        assert src.status().state == FAILED and "cannot open" in src.status().error and src.latest() is None
    finally:
        src.close()


def test_camera_back_at_another_resolution_is_classified(cpu_runtime):
    """A camera reconfigured while away (640x480 -> 112x84): frames of both sizes are classified, in order."""
    with LoopbackCamera(fps=20, lifetime=30, size=(640, 480)) as cam:
        net = VideoSource(cam.url, "net", backoff=(0.1, 0.3), read_timeout=1.0)
        with StreamMux({"net": net}) as mux:
            shapes, results, images, restarted = [], [], [], False
            end = time.monotonic() + 10
            while time.monotonic() < end and not (shapes and shapes[-1] == (84, 112, 3) and len(results) > 15):
                batch = mux.read(timeout=0.2)
                if batch:
                    results.append(cpu_runtime.infer_many(batch)["net"])
                    shapes.append(batch["net"].image.shape)
                    images.append(batch["net"].image)
                if len(shapes) == 8 and not restarted:
                    cam.restart(size=(112, 84))
                    restarted = True
    assert shapes[0] == (480, 640, 3) and shapes[-1] == (84, 112, 3)
    assert all(r.ok and np.isfinite(r.probabilities).all() for r in results)
    # Content: each result belongs to its frame. The reference is the frame the server rendered (its number and
    # generation are written in the frame), before JPEG: the same model input and the same class.
    same = []
    for image, result in zip(images, results):
        sent = render(frame_number(image), generation(image), (image.shape[1], image.shape[0]))
        got_input, sent_input = (prepare_frame(x, cpu_runtime.spec).astype(int) for x in (image, sent))
        assert np.abs(got_input - sent_input).mean() < 2.0  # JPEG noise only
        same.append(result.class_index == cpu_runtime.infer(sent).class_index)
    assert {generation(image) for image in images} == {0, 1} and np.mean(same) >= 0.9, same


def test_reconnect_attempts_back_off_exponentially():
    """A server that accepts and hangs up at once: attempts must slow down (0.2, 0.4, 0.8, 1, 1 s), not spin."""
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    srv.settimeout(0.2)
    attempts, stop = [], threading.Event()

    def accept():
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                continue
            attempts.append(time.monotonic())
            conn.close()

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    src = VideoSource(f"http://127.0.0.1:{srv.getsockname()[1]}/x.mjpg", "hangup", backoff=(0.2, 1.0),
                      open_timeout=1.0, read_timeout=1.0).start()
    assert wait_for(lambda: len(attempts) >= 7, 60.0), attempts  # waits on attempts, not a fixed 3.7 s
    src.close()
    stop.set()
    acceptor.join(2)
    srv.close()
    gaps = np.diff(attempts[:7])  # backoff 0.2, 0.4, 0.8, 1, 1, 1 s (plus the time each attempt takes)
    assert all(g >= b * 0.9 for g, b in zip(gaps, (0.2, 0.4, 0.8, 1.0, 1.0, 1.0))), gaps  # never spins
    assert all(b >= a * 0.9 for a, b in zip(gaps, gaps[1:4])), gaps  # growing
    assert max(gaps[4:]) < 1.9, gaps  # capped at 1 s: uncapped doubling would wait 1.6, then 3.2 s


def test_stalled_camera_is_reported_stalled_then_reconnected(clip):
    with LoopbackCamera(fps=25, lifetime=30, mode="stall", after=10) as cam:
        net = VideoSource(cam.url, "net", stall_after=0.4, read_timeout=1.5, backoff=(0.2, 0.5))
        with StreamMux({"net": net, "file": VideoSource(clip, "file", loop=True)}) as mux:
            rec = Recorder(mux)
            rec.run(8.0, until=lambda: mux.health()["net"].reconnects >= 1 and len(rec.frames["net"]) > 12)
            health = mux.health()
    states = rec.states["net"]
    assert STALLED in states and RECONNECTING in states
    assert states.index(STALLED) < states.index(RECONNECTING)  # frozen first, then declared lost
    assert health["net"].reconnects >= 1
    idx = rec.indices("net")
    assert idx == sorted(set(idx)) and len(idx) > 12  # frames of the second connection came through
    assert [frame_number(f.image) for _, f in rec.frames["net"]][-1] < 10  # ... and they are the server's new ones
    assert len(rec.frames["file"]) >= 20 and STALLED not in rec.states["file"]


@pytest.mark.parametrize("mode", ["garbage", "close"])
def test_garbage_or_dropped_connection_reconnects_and_hands_out_only_real_frames(mode):
    with LoopbackCamera(fps=25, lifetime=30, mode=mode, after=6) as cam:
        src = VideoSource(cam.url, "net", backoff=(0.1, 0.3), read_timeout=1.0).start()
        seen, deadline = [], time.monotonic() + 8
        while time.monotonic() < deadline and (src.status().reconnects < 2 or len(seen) < 10):
            f = src.latest()
            if f is not None and (not seen or f.index > seen[-1].index):
                seen.append(f)
            time.sleep(0.01)
        status = src.status()
        alive = any(t.name == "edge-mimo-source-net" for t in reader_threads())
        src.close()
    assert status.reconnects >= 2 and alive and status.state != FAILED
    for f in seen:  # every frame handed out is a whole, decoded image from the server, never the garbage
        assert f.image.shape == (120, 160, 3) and f.image.dtype == np.uint8
        assert frame_number(f.image) < 6 and generation(f.image) == 0
    assert [f.index for f in seen] == sorted({f.index for f in seen})


def test_broken_video_files_fail_or_end_cleanly_and_the_good_one_plays_to_the_end(tmp_path, clip):
    good = write_video(tmp_path / "good.avi", 30, 30)
    full = open(write_video(tmp_path / "full.avi", 60, 30), "rb").read()
    (tmp_path / "truncated.avi").write_bytes(full[: len(full) // 2])  # copied half-way
    (tmp_path / "garbage.avi").write_bytes(np.random.default_rng(0).integers(0, 256, 50_000, np.uint8).tobytes())
    (tmp_path / "empty.avi").write_bytes(b"")
    (tmp_path / "folder.avi").mkdir()
    names = ["truncated", "garbage", "empty", "folder"]
    sources = {"good": good, **{n: str(tmp_path / f"{n}.avi") for n in names}}
    with StreamMux(sources, backoff=(0.05, 0.1)) as mux:
        rec = Recorder(mux)
        rec.run(8.0, until=lambda: not mux.active)
        health = mux.health()
    assert not mux.active
    assert health["good"].state == ENDED and health["good"].frames == 30
    assert health["truncated"].state == ENDED and 5 < health["truncated"].frames < 60
    for name in ("garbage", "empty", "folder"):
        assert health[name].state == FAILED and rec.frames[name] == []
        assert "gave up" in health[name].error and "check" in health[name].error
    for name in ("good", "truncated"):
        idx = rec.indices(name)
        assert idx == sorted(set(idx)) and all(frame_number(f.image) == f.index % 256 for _, f in rec.frames[name])
    assert rec.indices("good")[-1] >= 27  # the good file was read to (near) its end despite four broken ones


def test_slow_consumer_keeps_one_frame_per_stream_not_a_queue(clip):
    """Three fast sources (one read as fast as the disk allows), nobody reading for 2 s: memory stays bounded."""
    def frames_alive() -> int:
        gc.collect()
        return sum(type(o) is Frame for o in gc.get_objects())

    with LoopbackCamera(fps=50, lifetime=30) as cam:
        sources = {"net": VideoSource(cam.url, "net"), "paced": VideoSource(clip, "paced", loop=True),
                   "flood": VideoSource(clip, "flood", loop=True, pace=False)}
        with StreamMux(sources) as mux:
            assert wait_for(lambda: all(s.frames > 0 for s in mux.health().values()), 5.0)
            before = mux.health()
            # nobody reads while the flooding source races on (waited for by its frame count, not a fixed 2 s)
            assert wait_for(lambda: mux.health()["flood"].frames - before["flood"].frames > 250, 60.0)
            alive = frames_alive()
            after = mux.health()
            batch = mux.read(timeout=1.0)
    assert after["flood"].frames - before["flood"].frames > 200  # hundreds of frames went by ...
    assert alive <= len(sources)  # ... yet only the latest frame of each source is held
    assert set(batch) == set(sources)
    for name, frame in batch.items():
        assert frame.index >= after[name].frames - 1  # the freshest frame, not the oldest in some buffer
        assert mux.skipped[name] == frame.index  # the frames it superseded were dropped and counted, never queued


def test_close_stops_every_reader_thread_whatever_its_state(clip):
    """Shutdown while one camera is live, one frozen (blocked in a read) and one in a long backoff wait."""
    before = set(reader_threads())
    with LoopbackCamera(fps=25, lifetime=30) as live, LoopbackCamera(fps=25, lifetime=30, mode="stall",
                                                                      after=3) as frozen:
        mux = StreamMux({
            "live": VideoSource(live.url, "live"),
            "frozen": VideoSource(frozen.url, "frozen", read_timeout=2.0),
            "waiting": VideoSource(f"http://127.0.0.1:{free_port()}/x.mjpg", "waiting", backoff=(8.0, 8.0)),
            "file": VideoSource(clip, "file", loop=True),
        }).start()
        assert wait_for(lambda: mux.health()["frozen"].frames >= 3 and mux.health()["live"].frames > 0, 5.0)
        assert wait_for(lambda: mux.health()["waiting"].error is not None, 3.0)
        time.sleep(0.3)  # the frozen camera is now blocked inside OpenCV's read
        t = time.monotonic()
        mux.close()
        took = time.monotonic() - t
    assert took < 3.0, f"close took {took:.1f} s"  # bounded by the 2 s read timeout, not the 8 s backoff
    assert set(reader_threads()) <= before
    assert {n: s.state for n, s in mux.health().items()} == dict.fromkeys(mux.sources, "closed")


def test_edge_mimo_run_survives_a_camera_restart(cpu_bundle, clip, tmp_path, capsys, monkeypatch):
    """`edge-mimo run` on a loopback camera beside a looping file; the camera is killed once it has been classified,
    restarted once the run reports it reconnecting and the file has gone on being classified, and the run is stopped
    once the camera is classified again. Every step waits on what the run did, never on the clock (a fixed 2 s timer
    failed under load: the bundle was not even loaded by then)."""
    from edge_mimo import live
    from edge_mimo.cli.main import main

    out = tmp_path / "out.jsonl"
    stop, failure = threading.Event(), []
    reconnecting_steps = [0]
    real_run = live.run

    def records() -> list[dict]:
        text = out.read_text() if out.exists() else ""
        return [json.loads(line) for line in text.splitlines() if line.endswith("}")]

    def count(stream: str) -> int:
        return sum(r["stream"] == stream for r in records())

    def controlled_run(runtime, mux, on_result, **kw):
        real_step = kw["on_step"]

        def on_step():
            if mux.health()["cam"].state == RECONNECTING:
                reconnecting_steps[0] += 1
            real_step()

        def control():
            try:
                assert wait_for(lambda: count("cam") >= 5, 120), "the camera was never classified"
                cam.kill()
                files_at_kill = count("file")
                assert wait_for(lambda: reconnecting_steps[0] >= 3 and count("file") >= files_at_kill + 15, 60), \
                    "the camera was not reported reconnecting while the file went on"
                cams_at_restart = count("cam")
                cam.restart()
                assert wait_for(lambda: mux.health()["cam"].state == LIVE and count("cam") >= cams_at_restart + 5,
                                60), "the restarted camera was not classified again"
            except BaseException as e:  # noqa: BLE001 - reported by the test's thread
                failure.append(e)
            finally:
                stop.set()

        controller = threading.Thread(target=control, daemon=True)
        controller.start()
        try:
            return real_run(runtime, mux, on_result, **{**kw, "on_step": on_step, "stop": stop})
        finally:
            stop.set()
            controller.join(10)

    monkeypatch.setattr(live, "run", controlled_run)
    with LoopbackCamera(fps=15, lifetime=300) as cam:
        rc = main(["run", str(cpu_bundle), "--source", f"cam={cam.url}", "--source", f"file={clip}", "--loop",
                   "--duration", "240", "--threads", "1", "--stats-every", "0.01", "-o", str(out)])
    assert not failure, failure
    assert rc == 0
    recs = records()
    assert all(r["ok"] for r in recs)
    by_stream = {}
    for r in recs:
        by_stream.setdefault(r["stream"], []).append(r)
    for name, rs in by_stream.items():
        frames = [r["frame"] for r in rs]
        assert frames == sorted(set(frames)), name
    cam_rows = [i for i, r in enumerate(recs) if r["stream"] == "cam"]
    gap_at = int(np.argmax(np.diff(cam_rows)))
    during = recs[cam_rows[gap_at] + 1: cam_rows[gap_at + 1]]  # everything classified while the camera was away
    assert len(during) >= 15 and all(r["stream"] == "file" for r in during)
    assert len(cam_rows) - gap_at - 1 >= 5  # ... and the camera classified again after it
    err = capsys.readouterr().err
    lines = err.splitlines()
    lost = next(i for i, line in enumerate(lines) if "cam reconnecting" in line)  # health shown live by the CLI
    assert any("cam live" in line for line in lines[lost:]) and "file reconnecting" not in err
