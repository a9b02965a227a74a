"""A loopback MJPEG-over-HTTP camera that OpenCV (FFmpeg) can read, for fault tests.

Run as a process (``python tests/support/mjpeg_server.py --port 0``): it prints ``PORT <n>`` once listening on
127.0.0.1 only, serves ``multipart/x-mixed-replace`` JPEG frames at ``--fps`` to every client, and exits by
itself after ``--lifetime`` seconds. Each frame shows its number (bits 0..9, in 8x8 blocks along the top row,
readable with :func:`frame_number`) and the server's ``--generation`` (bits in a second row, :func:`generation`),
so a test can tell frames of a restarted server apart. ``--mode`` injects a fault after ``--after`` frames:

- ``ok``: frames for ever;
- ``stall``: stop sending but keep the connection open (a frozen camera);
- ``garbage``: keep sending parts whose bodies are random bytes instead of JPEG (a corrupt encoder);
- ``close``: close the connection (a cable pulled; the server still accepts new clients).

:class:`LoopbackCamera` runs one such process and can kill (SIGKILL) and restart it on the same port.
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np

BOUNDARY = "edgemimoframe"
INDEX_BITS, GENERATION_BITS, BLOCK = 10, 4, 8
SIZE = (160, 120)  # default width, height (at least 80 pixels wide for the code blocks)


def render(index: int, generation: int, size: tuple[int, int] = SIZE) -> np.ndarray:
    """A BGR frame carrying ``index`` and ``generation`` as black/white blocks (robust to JPEG)."""
    w, h = size
    img = np.zeros((h, w, 3), np.uint8)
    img[BLOCK * 3 :, :, 1] = (index * 7) % 256  # moving content below the code rows
    for bit in range(INDEX_BITS):
        img[:BLOCK, BLOCK * bit : BLOCK * (bit + 1)] = 255 * ((index >> bit) & 1)
    for bit in range(GENERATION_BITS):
        img[2 * BLOCK : 3 * BLOCK, BLOCK * bit : BLOCK * (bit + 1)] = 255 * ((generation >> bit) & 1)
    return img


def _read_bits(image: np.ndarray, row: int, bits: int) -> int:
    y = row * BLOCK
    return sum(1 << b for b in range(bits) if image[y + 2 : y + 6, BLOCK * b + 2 : BLOCK * b + 6].mean() > 127)


def frame_number(image: np.ndarray) -> int:
    return _read_bits(image, 0, INDEX_BITS)


def generation(image: np.ndarray) -> int:
    return _read_bits(image, 2, GENERATION_BITS)


def _handler(fps: float, mode: str, after: int, gen: int, deadline: float, size: tuple[int, int]):
    import cv2

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # quiet
            pass

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
            self.send_header("Cache-Control", "no-cache")
            self.end_headers()
            rng = np.random.default_rng(gen)
            index = 0
            try:
                while time.monotonic() < deadline:
                    faulty = mode != "ok" and index >= after
                    if faulty and mode == "close":
                        return
                    if faulty and mode == "stall":
                        time.sleep(0.05)
                        continue
                    if faulty and mode == "garbage":
                        body = rng.integers(0, 256, 4000, dtype=np.uint8).tobytes()
                    else:
                        body = cv2.imencode(".jpg", render(index, gen, size), [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
                    head = f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(body)}\r\n\r\n"
                    self.wfile.write(head.encode() + body + b"\r\n")
                    self.wfile.flush()
                    index += 1
                    time.sleep(1.0 / fps)
            except (BrokenPipeError, ConnectionResetError):
                return

    return Handler


def serve(port: int, fps: float, lifetime: float, mode: str, after: int, gen: int, size: tuple[int, int]) -> None:
    deadline = time.monotonic() + lifetime
    ThreadingHTTPServer.allow_reuse_address = True
    server = ThreadingHTTPServer(("127.0.0.1", port), _handler(fps, mode, after, gen, deadline, size))
    server.daemon_threads = True
    print(f"PORT {server.server_address[1]}", flush=True)
    threading.Timer(lifetime, server.shutdown).start()
    server.serve_forever(poll_interval=0.1)


class LoopbackCamera:
    """One MJPEG server process on 127.0.0.1; :meth:`kill` and :meth:`restart` simulate a camera that dies."""

    def __init__(self, fps: float = 25.0, lifetime: float = 60.0, mode: str = "ok", after: int = 0,
                 size: tuple[int, int] = SIZE) -> None:
        self.fps, self.lifetime, self.mode, self.after, self.size = fps, lifetime, mode, after, size
        self.port = 0
        self.generation = 0
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/stream.mjpg"

    def start(self, mode: str | None = None, after: int | None = None,
              size: tuple[int, int] | None = None) -> "LoopbackCamera":
        self.mode = mode or self.mode
        self.after = self.after if after is None else after
        self.size = size or self.size
        cmd = [sys.executable, str(Path(__file__).resolve()), "--port", str(self.port), "--fps", str(self.fps),
               "--lifetime", str(self.lifetime), "--mode", self.mode, "--after", str(self.after),
               "--generation", str(self.generation), "--size", f"{self.size[0]}x{self.size[1]}"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()  # "PORT n" once listening
        if not line.startswith("PORT "):
            self.proc.kill()
            raise RuntimeError(f"loopback camera did not start (said {line!r})")
        self.port = int(line.split()[1])
        return self

    def kill(self) -> None:
        """SIGKILL the server: open connections drop at once, new ones are refused."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def restart(self, mode: str | None = None, after: int | None = None,
                size: tuple[int, int] | None = None) -> "LoopbackCamera":
        """Kill, then serve again on the same port (optionally at another resolution), next generation number."""
        self.kill()
        self.generation += 1
        deadline = time.monotonic() + 5
        while True:  # the port may take a moment to be free again
            try:
                with socket.socket() as s:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    s.bind(("127.0.0.1", self.port))
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        return self.start(mode, after, size)

    def close(self) -> None:
        self.kill()
        if self.proc and self.proc.stdout:
            self.proc.stdout.close()

    def __enter__(self) -> "LoopbackCamera":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--fps", type=float, default=25.0)
    p.add_argument("--lifetime", type=float, default=60.0, help="exit after this many seconds")
    p.add_argument("--mode", choices=("ok", "stall", "garbage", "close"), default="ok")
    p.add_argument("--after", type=int, default=0, help="frames sent before the fault")
    p.add_argument("--generation", type=int, default=0)
    p.add_argument("--size", default=f"{SIZE[0]}x{SIZE[1]}", help="WIDTHxHEIGHT, at least 80 wide")
    a = p.parse_args()
    serve(a.port, a.fps, a.lifetime, a.mode, a.after, a.generation, tuple(int(v) for v in a.size.split("x")))
