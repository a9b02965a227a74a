"""Sources that blocked the others or spun (issue 11, items 7-9, 17): cameras that accept and never answer, a FIFO
given as a file, a looping file truncated while read, and read/enter arguments that raised foreign exceptions."""

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
from edge_mimo.streams import FAILED, LIVE, StreamMux, VideoSource

from .test_faults_streams import free_port, reader_threads, wait_for
from .test_streams import write_video



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
