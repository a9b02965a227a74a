"""Sources that blocked the others, spun, ended the run or showed credentials: cameras that accept and never answer,
a FIFO given as a file, looping files truncated while read, read/enter arguments that raised foreign exceptions
(issue 11, items 7-9, 17), credentials in source URIs and sources files that ended the run or blocked it (issue 21,
items 5, 10, 11)."""

import math
import os
import shutil
import socket
import subprocess
import sys
import threading
import time

import pytest

from edge_mimo.errors import ConfigError
from edge_mimo.live.sources import read_sources_file
from edge_mimo.streams import FAILED, LIVE, StreamMux, VideoSource, classify_uri

from .test_streams import write_video
from .test_streams_camera_faults import free_port, reader_threads, wait_for


class SilentServer:
    """Accepts TCP connections on 127.0.0.1 and never answers (a camera hung after accept)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)

    def close(self) -> None:
        self.sock.close()
        for conn in self.held:
            conn.close()


@pytest.fixture
def clip(tmp_path):
    return write_video(tmp_path / "clip.avi", 40, 20)


def test_cameras_that_accept_and_never_answer_do_not_hold_up_the_other_streams(clip):
    servers = [SilentServer() for _ in range(3)]
    before = set(reader_threads())
    sources = {f"hung{i}": VideoSource(f"rtsp://127.0.0.1:{s.port}/cam", f"hung{i}", open_timeout=6.0,
                                       backoff=(0.1, 0.2)) for i, s in enumerate(servers)}
    sources["udp"] = VideoSource(f"udp://127.0.0.1:{free_port()}", "udp", open_timeout=6.0)
    sources["file"] = VideoSource(clip, "file", loop=True)
    mux = StreamMux(sources).start()
    try:
        start = time.monotonic()
        first = None
        while time.monotonic() - start < 10 and first is None:
            if "file" in mux.read(timeout=0.1):
                first = time.monotonic() - start
        assert first is not None and first < 2.0, f"first file frame after {first} s"
        assert all(mux.health()[f"hung{i}"].state != LIVE for i in range(3))
    finally:
        t = time.monotonic()
        mux.close(timeout=2.0)
        took = time.monotonic() - t
        for s in servers:
            s.close()
    assert took < 2.5, f"close took {took:.1f} s"
    assert wait_for(lambda: set(reader_threads()) <= before, 2.0), reader_threads()


def test_a_camera_that_accepts_and_never_answers_is_reported(clip):
    server = SilentServer()
    src = VideoSource(f"rtsp://127.0.0.1:{server.port}/cam", "hung", open_timeout=0.5, retries=1,
                      backoff=(0.05, 0.1)).start()
    try:
        assert wait_for(lambda: src.finished, 5.0), src.status()
        status = src.status()
        assert status.state == FAILED and "cannot open" in status.error and "did not answer" in status.error
    finally:
        src.close()
        server.close()


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_a_fifo_given_as_a_file_fails_and_the_others_play(tmp_path, clip):
    fifo = tmp_path / "pipe.avi"
    os.mkfifo(fifo)
    with StreamMux({"fifo": str(fifo), "file": clip}, backoff=(0.05, 0.1)) as mux:
        assert wait_for(lambda: mux.health()["fifo"].state == FAILED, 5.0), mux.health()["fifo"]
        assert "not a regular file" in mux.health()["fifo"].error
        assert wait_for(lambda: mux.health()["file"].frames > 5, 5.0)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_edge_mimo_run_with_a_fifo_source_ends_by_itself(cpu_bundle, tmp_path, clip):
    fifo = tmp_path / "pipe.avi"
    os.mkfifo(fifo)
    out = tmp_path / "out.jsonl"
    proc = subprocess.run([sys.executable, "-m", "edge_mimo.cli.main", "run", str(cpu_bundle), "--source", str(fifo),
                           "--source", clip, "--no-pace", "-o", str(out)], cwd=tmp_path, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "not a regular file" in proc.stderr and len(out.read_text().splitlines()) > 0


def test_a_looping_file_truncated_while_read_fails_instead_of_spinning(tmp_path):
    import cv2
    import numpy as np

    path = tmp_path / "long.avi"  # noise frames: megabytes, more than the reader buffers
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 20, (320, 240))
    rng = np.random.default_rng(0)
    for _ in range(300):
        writer.write(rng.integers(0, 256, (240, 320, 3), dtype=np.uint8))
    writer.release()
    src = VideoSource(str(path), "looping", loop=True, pace=False, backoff=(0.05, 0.1)).start()
    try:
        assert wait_for(lambda: src.status().frames > 0, 5.0)
        with open(path, "r+b") as f:
            f.truncate(4096)  # under the reader: the header survives, the frames are gone
        cpu = time.process_time()
        assert wait_for(lambda: src.finished, 10.0), src.status()  # used to stay `stalled` for ever
        assert src.status().state == FAILED and src.status().error, src.status()
        assert time.process_time() - cpu < 1.0  # used to spin a core re-reading the dead file
    finally:
        src.close()


def test_read_with_an_infinite_timeout_waits_and_a_nan_one_is_refused(clip):
    with StreamMux({"file": clip}) as mux:
        assert "file" in mux.read(timeout=math.inf)
        assert mux.read(timeout=math.inf, gather=math.inf)  # one stream: gathering ends at once
        for bad in (math.nan, -1, "1"):
            with pytest.raises(ConfigError, match="timeout must be a number of seconds"):
                mux.read(timeout=bad)


def test_entering_a_mux_again_after_a_source_failed_is_harmless(tmp_path):
    mux = StreamMux({"missing": str(tmp_path / "none.mp4")}, backoff=(0.01, 0.02))
    with mux:
        assert wait_for(lambda: not mux.active, 5.0)
    with mux:  # used to raise RuntimeError("threads can only be started once")
        assert mux.health()["missing"].state == FAILED
    src = VideoSource(str(tmp_path / "none.mp4"), backoff=(0.01, 0.02)).start()
    assert wait_for(lambda: src.finished, 5.0)
    src.start()  # again: nothing happens
    src.close()
    assert src.status().state == FAILED
    shutil.rmtree(tmp_path, ignore_errors=True)


# -- issue 21, items 5, 10, 11 ------------------------------------------------------------------------------------


SECRET = "s3cr3tPa55"


# -- item 5: credentials -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("uri", [
    f"rtsp://admin:{SECRET}@10.0.0.5:554/stream1",
    f"rtsp://{SECRET}@cam/x",
    f"http://user:{SECRET}@cam.local/video.mjpg?x=1",
    f"rtsps://a:{SECRET}@[::1]:8554/s",
    f"gst:rtspsrc location=rtsp://u:{SECRET}@cam/1 ! decodebin ! appsink",
    f"gst:rtspsrc location=rtsp://cam/1 user-id=admin user-pw={SECRET} ! decodebin ! appsink",
    f"http://cam/video?user=admin&password={SECRET}&fps=5",
    f"https://cam/v.m3u8?token={SECRET}",
    f"https://cam/v.m3u8?api_key={SECRET}&a=b",
    f"srt://cam:9000?passphrase={SECRET}",
])
def test_redact_hides_every_credential(uri):
    from edge_mimo.streams.source import redact

    shown = redact(uri)
    assert SECRET not in shown and "***" in shown, shown


@pytest.mark.parametrize("uri", ["rtsp://10.0.0.5:554/stream1", "/videos/a@b.mp4", "0", "udp://239.0.0.1:5000"])
def test_redact_leaves_uris_without_credentials_alone(uri):
    from edge_mimo.streams.source import redact

    assert redact(uri) == uri


def test_a_source_never_names_its_credentials(tmp_path):
    uri = f"rtsp://admin:{SECRET}@127.0.0.1:{free_port()}/cam"
    src = VideoSource(uri, retries=0, open_timeout=1.0).start()
    try:
        assert wait_for(lambda: src.finished, 10.0)
        status = src.status()
        assert status.error and SECRET not in status.error and SECRET not in status.stream, status
    finally:
        src.close()
    with StreamMux([uri], retries=0) as mux:
        assert all(SECRET not in name for name in mux.sources)
    listing = tmp_path / "sources.txt"
    listing.write_text(f"{uri}\n")
    assert all(SECRET not in name for name in read_sources_file(listing))


def test_edge_mimo_run_shows_no_credentials_on_stderr_or_in_metrics(cpu_bundle, tmp_path):
    clip = write_video(tmp_path / "clip.avi", 20, 20)
    listing = tmp_path / "sources.txt"
    listing.write_text(f"rtsp://admin:{SECRET}@127.0.0.1:{free_port()}/cam\n")
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "edge_mimo.cli.main", "run", str(cpu_bundle), "--source", clip,
                             "--sources-file", str(listing), "--loop", "--metrics-port", str(port),
                             "--duration", "6", "-o", str(tmp_path / "out.jsonl")], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    import urllib.request

    page = ""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
                page = r.read().decode()
            if "rtsp://" in page:
                break
        except OSError:
            pass
        time.sleep(0.3)
    out, err = proc.communicate(timeout=60)
    assert "rtsp://***@127.0.0.1" in page and SECRET not in page
    assert SECRET not in out + err, err


# -- item 10: sources files ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("content, words", [
    (b"cam=rtsp://a/b\n\xff\xfe\n", ":2: not UTF-8"),
    (b"cam=" + b"x" * 5000 + b"\n", ":1: the line"),
    (b"cam=/tmp/a\x00b.avi\n", ":1: the line holds a NUL"),
    (b"x" * (2 << 20), "larger than"),
])
def test_a_malformed_sources_file_is_one_config_error(tmp_path, content, words):
    path = tmp_path / "sources.txt"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=words):
        read_sources_file(path)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_a_fifo_or_a_device_as_sources_file_is_refused_at_once(tmp_path):
    fifo = tmp_path / "sources.fifo"
    os.mkfifo(fifo)
    start = time.monotonic()
    for path in (fifo, "/dev/zero", tmp_path):
        with pytest.raises(ConfigError, match="not a regular file"):
            read_sources_file(path)
    assert time.monotonic() - start < 2.0


@pytest.mark.parametrize("uri", ["a\x00b.avi", "x" * 5000, "9" * 5000, True])
def test_a_source_with_nul_or_thousands_of_characters_is_refused_not_a_dead_reader(uri):
    with pytest.raises(ConfigError, match="NUL"):
        classify_uri(uri)
    with pytest.raises(ConfigError):
        VideoSource(uri)


def test_edge_mimo_run_keeps_running_when_the_sources_file_turns_bad(cpu_bundle, tmp_path):
    clip = write_video(tmp_path / "clip.avi", 20, 20)
    listing = tmp_path / "sources.txt"
    listing.write_text(f"a={clip}\n")
    proc = subprocess.Popen([sys.executable, "-m", "edge_mimo.cli.main", "run", str(cpu_bundle), "--sources-file",
                             str(listing), "--loop", "--duration", "8", "-o", str(tmp_path / "out.jsonl")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(4)
    listing.write_bytes(b"a=" + clip.encode() + b"\nb=\xff\xfe\x00" + b"y" * 5000 + b"\n")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "sources file not applied" in err and "Traceback" not in err, err


# -- item 11: looping files truncated under the reader -------------------------------------------------------------


def test_a_looping_file_truncated_to_nothing_stops_being_live(tmp_path):
    path = write_video(tmp_path / "clip.avi", 40, 20)
    src = VideoSource(path, "looping", loop=True, pace=True, backoff=(0.05, 0.1)).start()
    try:
        assert wait_for(lambda: src.status().state == LIVE, 5.0)
        with open(path, "r+b") as f:
            f.truncate(0)
        assert wait_for(lambda: src.finished, 5.0), src.status()  # used to stay live, delivering buffered frames
        frames = src.status().frames
        time.sleep(0.5)
        assert src.status().state == FAILED and src.status().frames == frames
    finally:
        src.close()
