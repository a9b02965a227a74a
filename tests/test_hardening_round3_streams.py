"""Issue 21, items 5, 10, 11: credentials in source URIs shown anywhere, sources files that ended the run or blocked it,
and looping files truncated under the reader."""

import os
import subprocess
import sys
import time

import pytest

from edge_mimo.live.sources import read_sources_file
from edge_mimo.errors import ConfigError
from edge_mimo.streams import FAILED, LIVE, StreamMux, VideoSource, classify_uri

from .test_faults_streams import free_port, wait_for
from .test_streams import write_video

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
