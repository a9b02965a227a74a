"""The live loop (edge_mimo.live.run) and streams added and removed at run time, over real video files."""

import collections
import json
import os
import signal
import subprocess
import sys
import threading
import time

import cv2
import numpy as np
import pytest

from edge_mimo import live
from edge_mimo.cli.main import main
from edge_mimo.live.sources import SourcesFile, read_sources_file
from edge_mimo.errors import ConfigError, FrameError
from edge_mimo.streams import StreamMux, VideoSource

from .test_streams import frame_number, write_video

pytestmark = pytest.mark.slow


def write_garment_video(path, frames: int, fps: float, seed: int) -> str:
    """A camera-like 640x480 video (a garment of the shipped sample in a scene), as examples/demo_videos.py."""
    from edge_mimo.camera.scenes import CONDITIONS, render_frame
    from edge_mimo.datasets import shipped_sample

    images = shipped_sample("validation").images[:, 0]
    rng = np.random.default_rng(seed)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (640, 480))
    assert writer.isOpened()
    for i in range(frames):
        writer.write(render_frame(images[(seed * 50 + i // 3) % len(images)], CONDITIONS["mid-background"], rng,
                                  (640, 480)))
    writer.release()
    return str(path)


@pytest.fixture(scope="module")
def garments(tmp_path_factory):
    d = tmp_path_factory.mktemp("garments")
    return {f"cam{k}": write_garment_video(d / f"cam{k}.avi", 24, 24, k) for k in range(3)}


@pytest.fixture(scope="module")
def numbered(tmp_path_factory):
    d = tmp_path_factory.mktemp("numbered")
    return {"a": write_video(d / "a.avi", 60, 20), "b": write_video(d / "b.avi", 60, 20),
            "c": write_video(d / "c.avi", 60, 20)}


def all_frames(path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(path)
    frames = []
    while True:
        ok, image = cap.read()
        if not ok:
            break
        frames.append(image)
    cap.release()
    return frames


def test_live_loop_results_equal_infer_many_on_the_same_frames(cpu_runtime, garments):
    batches = []
    results = {}

    def on_result(frame, result):
        results[(frame.stream, frame.index)] = result

    with StreamMux(garments, pace=False) as mux:
        summary = live.run(cpu_runtime, mux, on_result, gather_ms=50, duration=60,
                           on_batch=lambda frames, res: batches.append(frames))
    assert summary.reason == "ended" and summary.results == len(results) > 0
    decoded = {name: all_frames(path) for name, path in garments.items()}
    for frames in batches:  # the same frames, grouped as the loop grouped them, through infer_many
        direct = cpu_runtime.infer_many({n: decoded[n][f.index] for n, f in frames.items()})
        for name, frame in frames.items():
            ours, theirs = results[(name, frame.index)], direct[name]
            assert ours.ok and theirs.ok
            assert (ours.class_index, ours.width, ours.replicas) == (theirs.class_index, theirs.width, theirs.replicas)
            np.testing.assert_allclose(ours.probabilities, theirs.probabilities, rtol=1e-6, atol=1e-7)
            assert ours.uncertain == theirs.uncertain


def test_frames_are_prepared_once_in_their_reader_threads(cpu_runtime, garments, monkeypatch):
    """With the live loop, each frame is prepared by its camera's thread as it arrives, never in the loop's."""
    from edge_mimo.runtime import preprocess

    calls = collections.Counter()
    prepare_frame = preprocess.prepare_frame

    def counted(frame, spec, roi=None):
        calls[threading.current_thread().name] += 1
        return prepare_frame(frame, spec, roi)

    monkeypatch.setattr(preprocess, "prepare_frame", counted)
    results = []
    with StreamMux(garments, pace=False) as mux:
        live.run(cpu_runtime, mux, lambda frame, result: results.append(frame), gather_ms=50, duration=60,
                 rois={"cam1": (100, 50, 320, 240)})
        captured = {name: status.frames for name, status in mux.health().items()}
        assert all(src.prepare is None for src in mux.sources.values())  # off after the run
    # The caller started the mux before the run: a stream's latest frame from before the run installed the
    # readers' prepare may reach the loop unprepared (seen on a loaded machine) and is prepared there, at most one
    # per stream; every later frame is prepared once, by its reader, and never again in the loop's thread.
    early = [f for f in results if f.prepared is None]
    assert calls[threading.current_thread().name] == len(early) <= len(garments)
    assert all(f.index == min(g.index for g in results if g.stream == f.stream) for f in early)
    readers = {name: calls[f"edge-mimo-source-{name}"] for name in garments}
    assert all(0 < readers[n] <= captured[n] for n in garments)  # at most once per frame read
    assert len(results) > len(early)
    cam1 = next(f for f in results if f.stream == "cam1")
    assert cam1.prepared.roi == (100, 50, 320, 240)
    np.testing.assert_array_equal(cpu_runtime.prepare(cam1.image, (100, 50, 320, 240)).tensor, cam1.prepared.tensor)


def test_prepared_frames_are_used_only_for_their_input(cpu_runtime, garments):
    image = all_frames(garments["cam0"])[0]
    ready = cpu_runtime.prepare(image)
    assert np.array_equal(cpu_runtime.infer_many([ready])[0].probabilities,
                          cpu_runtime.infer_many([image])[0].probabilities)
    other = cpu_runtime.infer_many([ready], rois=[(0, 0, 100, 100)])[0]  # prepared without that region
    assert not other.ok and "prepared for another input" in str(other.error)
    with pytest.raises(FrameError, match="frame is None"):
        cpu_runtime.prepare(None)


def test_live_loop_stops_on_limits_and_checks_its_options(cpu_runtime, numbered):
    with StreamMux({"a": numbered["a"]}, pace=False, loop=True) as mux:
        summary = live.run(cpu_runtime, mux, lambda f, r: None, max_results=5)
        assert summary.reason == "max_results" and summary.results >= 5
        stop = threading.Event()
        stop.set()
        assert live.run(cpu_runtime, mux, lambda f, r: None, stop=stop).reason == "stopped"
        for bad in ({"gather_ms": -1}, {"duration": float("nan")}, {"period": 0}, {"max_results": 0}):
            with pytest.raises(ConfigError, match="must be"):
                live.run(cpu_runtime, mux, lambda f, r: None, **bad)


def source_threads(name: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == f"edge-mimo-source-{name}"]


def test_streams_added_and_removed_while_the_others_run(cpu_runtime, numbered):
    got: dict[str, list[int]] = {"a": [], "b": [], "c": []}
    events: list[str] = []
    removed_at: dict[str, float] = {}
    after_removal: dict[str, int] = {}
    done = threading.Event()

    def on_result(frame, result):
        assert result.ok and frame.stream not in removed_at, f"{frame.stream} gave a result after its removal"
        assert frame_number(frame.image) == frame.index % 256
        got[frame.stream].append(frame.index)
        if after_removal and all(len(got[n]) >= after_removal[n] + 3 for n in "ac"):
            done.set()  # both streams left delivered three more results after b went: the run ends

    def on_step():  # runs in the loop's thread, as edge-mimo run's sources file does
        if "b" not in events and len(got["a"]) >= 5:
            mux.add("b", numbered["b"])
            events.append("b")
        elif "c" not in events and len(got["b"]) >= 5:
            mux.add("c", VideoSource(numbered["c"], "c", loop=True))
            events.append("c")
        elif "-b" not in events and len(got["c"]) >= 5:
            threads["b"] = source_threads("b")
            mux.remove("b")
            removed_at["b"] = time.monotonic()
            events.append("-b")
            after_removal.update({n: len(got[n]) for n in "ac"})

    threads: dict[str, list[threading.Thread]] = {}
    mux = StreamMux({"a": numbered["a"]}, loop=True)
    with mux:
        live.run(cpu_runtime, mux, on_result, on_step=on_step, poll=0.1, duration=60, stop=done)
        assert events == ["b", "c", "-b"], f"streams did not all deliver: {got}"
        assert threads["b"] and not any(t.is_alive() for t in threads["b"]), "the removed stream's thread runs on"
        assert "b" not in mux.sources and "b" not in mux.skipped and set(mux.health()) == {"a", "c"}
        counts = {name: len(v) for name, v in got.items()}
        frames = {n: mux.health()[n].frames for n in "ac"}
        assert wait_for(lambda: all(mux.health()[n].frames > frames[n] for n in "ac"), 30), "a reader stopped"
        assert all(len(source_threads(n)) == 1 and source_threads(n)[0].is_alive() for n in ("a", "c"))
        with pytest.raises(ConfigError, match="no stream is named 'b'"):
            mux.remove("b")
        with pytest.raises(ConfigError, match="two sources are named 'a'"):
            mux.add("a", numbered["b"])
        mux.add("b", numbered["b"])  # the name is free again
        assert len(source_threads("b")) == 1
    assert counts["a"] > 5 and counts["c"] >= 5 and got["b"] == sorted(got["b"])  # latest-frame order kept
    assert not any(t.is_alive() for n in "abc" for t in source_threads(n))


def test_sources_file_parsing(tmp_path, numbered):
    f = tmp_path / "sources.txt"
    f.write_text(f"# cameras\n\nleft={numbered['a']}\n  {numbered['b']}  \n")
    assert read_sources_file(f) == {"left": numbered["a"], numbered["b"]: numbered["b"]}
    f.write_text(f"x={numbered['a']}\nx={numbered['b']}\n")
    with pytest.raises(ConfigError, match=r"sources.txt:2: a second source is named 'x'"):
        read_sources_file(f)
    with pytest.raises(ConfigError, match="cannot read the sources file"):
        read_sources_file(tmp_path / "absent.txt")


def start_run(bundle, *args, tmp_path):
    """`edge-mimo run BUNDLE ARGS` in its own process (signals reach its main thread); JSON lines to out.jsonl."""
    out, err = tmp_path / "out.jsonl", open(tmp_path / "stderr.txt", "w")
    code = "import sys; from edge_mimo.cli.main import main; sys.exit(main(sys.argv[1:]))"
    proc = subprocess.Popen([sys.executable, "-c", code, "run", str(bundle), *args, "--threads", "1",
                             "--stats-every", "0", "-o", str(out)], stdout=subprocess.DEVNULL, stderr=err)
    err.close()
    return proc, out, tmp_path / "stderr.txt"


def stop_run(proc) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)  # Ctrl-C: edge-mimo run stops cleanly
    try:
        return proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def streams_in(path) -> set:
    return {r["stream"] for r in records(path)}


def records(path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]


def count_of(path, stream) -> int:
    return sum(r["stream"] == stream for r in records(path))


def wait_for(condition, timeout: float = 90.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


def test_run_sources_file_reread_on_change_and_on_sighup(cpu_bundle, numbered, tmp_path):
    """`edge-mimo run --sources-file`: an edit removes a stream and adds another while the first runs on; an
    edit the file's stamp does not show (same size, mtime put back) is applied on SIGHUP."""
    sources = tmp_path / "sources.txt"
    sources.write_text(f"a={numbered['a']}\nb={numbered['b']}\n")
    proc, out, err = start_run(cpu_bundle, "--sources-file", str(sources), "--loop", "--duration", "120",
                               tmp_path=tmp_path)
    try:
        assert wait_for(lambda: {"a", "b"} <= streams_in(out)), err.read_text()
        sources.write_text(f"a={numbered['a']}\nc={numbered['c']}\n")  # b out, c in
        assert wait_for(lambda: "c" in streams_in(out)), err.read_text()
        assert "b: removed" in err.read_text() and "c: added" in err.read_text()
        b_count, a_count = count_of(out, "b"), count_of(out, "a")
        assert wait_for(lambda: count_of(out, "a") > a_count + 5), "stream a stopped when the others changed"
        assert count_of(out, "b") == b_count, "the removed stream still gives results"

        stamp = sources.stat()
        sources.write_text(f"a={numbered['a']}\nd={numbered['c']}\n")  # c renamed d: same size
        os.utime(sources, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))  # unseen by the checks (next test)
        proc.send_signal(signal.SIGHUP)
        assert wait_for(lambda: "d" in streams_in(out)), err.read_text()
        assert "c: removed" in err.read_text()
    finally:
        rc = stop_run(proc)
    assert rc == 0, err.read_text()


def test_sources_file_applies_a_change_once_it_is_stable_and_an_unseen_one_on_sighup(numbered, tmp_path):
    """Checked at every step here (check_every=0), so each `apply` is one check: a change is applied at the check
    after the one that saw it (never half-written), an edit that keeps the file's stamp is never seen, and SIGHUP
    applies whatever the file says."""
    sources = tmp_path / "sources.txt"
    sources.write_text(f"a={numbered['a']}\n")
    watch = SourcesFile(str(sources), {}, check_every=0.0)
    with StreamMux(watch.current, loop=True) as mux:
        sources.write_text(f"a={numbered['a']}\nb={numbered['b']}\n")
        watch.apply(mux)
        assert set(mux.sources) == {"a"}, "applied at the first check that saw the change"
        watch.apply(mux)
        assert set(mux.sources) == set(watch.current) == {"a", "b"}

        stamp = sources.stat()
        sources.write_text(f"a={numbered['a']}\nc={numbered['b']}\n")  # b renamed c: same size, stamp put back
        os.utime(sources, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
        for _ in range(3):
            watch.apply(mux)
        assert set(mux.sources) == {"a", "b"}
        watch.hangup.set()
        watch.apply(mux)
        assert set(mux.sources) == set(watch.current) == {"a", "c"} and not watch.hangup.is_set()


def test_run_sources_file_errors(cpu_bundle, numbered, tmp_path, capsys):
    sources = tmp_path / "sources.txt"
    sources.write_text(f"cam0={numbered['a']}\n")
    for args, message in (
            (["--source", numbered["b"]], "names cam0, which --source names too: rename one of them"),
            (["--video", str(tmp_path / "v.mp4")], "--video needs a fixed set of streams"),
            (["--metrics-port", "70000"], "--metrics-port must be a port number")):
        assert main(["run", str(cpu_bundle), "--sources-file", str(sources), *args]) == 2
        assert message in capsys.readouterr().err
    sources.write_text("# nothing yet\n")
    assert main(["run", str(cpu_bundle), "--sources-file", str(sources)]) == 2
    assert "no sources given" in capsys.readouterr().err


def test_mosaic_video_lasts_as_long_as_the_run(tmp_path):
    """Batches come at the loop's pace, not the video's: the mosaic is repeated over a gap and dropped when batches
    come faster, so the file's length is the run's (written 0, 0.01 ... 0.09 s, then nothing until 1.02 s, at 10 fps:
    11 frames, 1.1 s)."""
    from edge_mimo.live.mosaic import MosaicWriter, draw_tile

    path = tmp_path / "mosaic.avi"
    writer = MosaicWriter(path, 2, fps=10.0)
    tiles = [draw_tile(None, "a", [], False), draw_tile(None, "b", [], True)]
    for at in [0.01 * i for i in range(10)] + [1.02]:
        writer.write(tiles, at)
    writer.close()
    cap = cv2.VideoCapture(str(path))
    assert cap.get(cv2.CAP_PROP_FRAME_COUNT) == 11 and cap.get(cv2.CAP_PROP_FPS) == 10.0
    cap.release()


def test_tile_lines_say_what_each_figure_is():
    from edge_mimo.live.mosaic import tile_lines
    from edge_mimo.runtime.results import StreamResult

    lines = tile_lines(StreamResult("cam0", 3, "Dress", confidence=0.914, entropy=0.071, disagreement=0.0114,
                                    replicas=4, width=1, uncertain=True))
    assert lines == ["Dress 91%  uncertain", "entropy 0.07  disagreement 0.011", "4 replicas at width 1"]
    assert tile_lines(StreamResult("cam0", error=ValueError("frame is empty"))) == ["frame is empty"]


def test_a_video_rate_that_would_only_fill_the_disk_is_refused(cpu_bundle, numbered, tmp_path, capsys):
    """The mosaic keeps the run's time by repeating frames: --video-fps 1e9 would write a billion a second."""
    from edge_mimo.live.mosaic import MosaicWriter

    video = tmp_path / "m.avi"
    assert main(["run", str(cpu_bundle), "--source", numbered["a"], "--video", str(video), "--video-fps", "1e9"]) == 2
    assert "--video-fps 1e+09 is above 120" in capsys.readouterr().err and not video.exists()
    with pytest.raises(ConfigError, match="video frame rate"):
        MosaicWriter(video, 1, fps=float("inf"))
