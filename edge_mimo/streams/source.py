"""One camera or video source read by its own thread, keeping only the latest frame.

Sources OpenCV can open: video files (paced at their own frame rate by default, like a camera), RTSP / HTTP
/ RTMP / UDP URLs (FFmpeg), V4L2 devices (an index such as ``0`` or ``/dev/video0``) and GStreamer pipelines
(``gst:...`` or any string with `` ! ``, when OpenCV was built with GStreamer).

Health states: ``opening`` (first connection attempt), ``live`` (frames arriving), ``stalled`` (live but no frame for
``stall_after`` seconds), ``reconnecting`` (lost; retrying with exponential backoff), ``ended`` (a file reached
its end), ``failed`` (gave up after ``retries`` attempts), ``closed`` (closed by the caller).
Memory is bounded: a source holds one frame, never a queue.
"""

from __future__ import annotations

import collections
import ipaddress
import re
import select
import socket
import stat
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal
from urllib.parse import urlsplit

import cv2
import numpy as np

from ..errors import ConfigError, StreamError

OPENING, LIVE, STALLED, RECONNECTING, ENDED, FAILED, CLOSED = (
    "opening", "live", "stalled", "reconnecting", "ended", "failed", "closed")
FINISHED = (ENDED, FAILED, CLOSED)
NETWORK_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://", "srt://")
MAX_BAD_READS = 5  # consecutive empty reads from a live source before reconnecting
POLL = 0.1  # seconds between checks of the stop flag while waiting on the network
MAX_URI = 4096
FILE_CHECK = 0.25  # seconds between checks that a file being read was not truncated or replaced
# Secrets a source may carry: the user:password@ of any URL (also inside a GStreamer pipeline), and the values
# of password / token / key parameters (query strings, GStreamer properties such as rtspsrc's user-pw).
_USERINFO = re.compile(r"(?i)([a-z][a-z0-9+.-]*://)[^/?#@\s]*@")
_SECRET_PARAM = re.compile(r"(?i)\b((?:user-?pw|user-?id|pass(?:word|phrase)?|passwd|pwd|token|secret|api[-_]?key|"
                           r"access[-_]?key|auth|sig(?:nature)?|credentials?)\s*=\s*)(\"[^\"]*\"|[^&;\s!]*)")


def redact(uri: str | int) -> str:
    """``uri`` as it may be shown (logs, stderr, metrics labels, stream names): credentials replaced by ``***``."""
    return _SECRET_PARAM.sub(r"\1***", _USERINFO.sub(r"\1***@", str(uri)))


@dataclass(frozen=True)
class Frame:
    """A captured frame: ``index`` counts frames read from this source (continuing across reconnects).
    ``prepared``: the model input the reader thread made of ``image`` (its ``prepare``), or None."""

    stream: str
    image: np.ndarray
    index: int
    timestamp: float  # wall clock (time.time()) at capture
    monotonic: float  # time.monotonic() at capture, for ages
    prepared: object = None

    @property
    def age(self) -> float:
        """Seconds since capture."""
        return time.monotonic() - self.monotonic


@dataclass(frozen=True)
class SourceStatus:
    """A snapshot of one source's health, as :meth:`VideoSource.status` reports it."""
    stream: str
    state: str
    frames: int  # frames read so far
    fps: float  # measured capture rate over the last frames
    reconnects: int
    age: float | None  # seconds since the last frame (None before the first)
    error: str | None  # the last problem seen, with its fix


def classify_uri(uri: str | int) -> tuple[object, int, str]:
    """Source -> (OpenCV target, capture API, kind: 'device' | 'network' | 'pipeline' | 'file')."""
    if isinstance(uri, int) and not isinstance(uri, bool):
        return uri, cv2.CAP_V4L2, "device"
    if not isinstance(uri, str) or not uri or "\x00" in uri or len(uri) > MAX_URI:
        raise ConfigError(f"source {redact(uri)[:80]!r} is not a path, URL, device index or pipeline (no NUL "
                          f"byte, at most {MAX_URI} characters): check the source")
    if uri.isdigit() and len(uri) < 10:
        return int(uri), cv2.CAP_V4L2, "device"
    if re.fullmatch(r"/dev/video\d+", uri):
        return uri, cv2.CAP_V4L2, "device"
    if uri.lower().startswith(NETWORK_SCHEMES):
        return uri, cv2.CAP_FFMPEG, "network"
    if uri.startswith("gst:") or " ! " in uri:
        if not re.search(r"GStreamer:\s+YES", cv2.getBuildInformation()):
            raise StreamError(
                f"{redact(uri)!r} is a GStreamer pipeline but this OpenCV has no GStreamer support: "
                "install an OpenCV built with GStreamer (e.g. the distribution's python3-opencv), or use a URL/file"
            )
        return uri.removeprefix("gst:"), cv2.CAP_GSTREAMER, "pipeline"
    return uri, cv2.CAP_ANY, "file"


class VideoSource:
    """Reads ``uri`` in a background thread; :meth:`latest` returns the newest frame, never a backlog.

    ``pace``: sleep between frames at the source's frame rate (default: on for files, which would otherwise
    be read as fast as the disk allows; off for live sources). ``loop``: restart a file at its end.
    ``retries``: connection attempts after a failure before ``failed`` (None = forever; default: forever for
    live sources, 2 for files). ``backoff``: first and maximum delay between attempts (doubling).
    ``prepare``: called in the reader thread on each new image, its result kept as the frame's ``prepared``
    (e.g. :meth:`Runtime.prepare`, so that the model input is ready before anyone asks); an exception it raises
    leaves ``prepared`` None for that frame (whoever classifies it then sees the error). Settable while running.
    """

    def __init__(self, uri: str | int, name: str | None = None, *, pace: bool | None = None, loop: bool = False,
                 retries: int | None | Literal["auto"] = "auto", backoff: tuple[float, float] = (0.5, 8.0),
                 stall_after: float = 2.0, read_timeout: float = 5.0, open_timeout: float = 10.0,
                 prepare: Callable[[np.ndarray], object] | None = None) -> None:
        self.uri = uri
        self.shown = redact(uri)  # what messages name: never the credentials
        self.name = name if name is not None else self.shown
        self.target, self.api, self.kind = classify_uri(uri)
        is_file = self.kind == "file"
        self.pace = is_file if pace is None else pace
        self.loop = loop
        self.retries = (2 if is_file else None) if retries == "auto" else retries
        self.backoff = backoff
        self.stall_after = stall_after
        self.prepare = prepare
        self.read_timeout, self.open_timeout = read_timeout, open_timeout
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._listeners: list[threading.Condition] = []
        self._latest: Frame | None = None
        self._state = OPENING
        self._error: str | None = None
        self._frames = 0
        self._reconnects = 0
        self._times: collections.deque[float] = collections.deque(maxlen=30)
        self._thread = threading.Thread(target=self._run, name=f"edge-mimo-source-{self.name}", daemon=True)

    # -- public --------------------------------------------------------------------------------------------
    def start(self) -> "VideoSource":
        """Start the reader thread (once: a source that ended, failed or was closed stays so)."""
        if self._thread.ident is None and not self._stop.is_set():
            self._thread.start()
        return self

    def request_stop(self) -> None:
        """Ask the reader thread to stop, without waiting (see :meth:`close`)."""
        self._stop.set()

    def close(self, timeout: float = 5.0) -> None:
        """Stop the reader thread and release the capture (waits up to ``timeout`` seconds)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        with self._lock:
            if self._state not in FINISHED:  # an ended or failed source keeps saying so
                self._state = CLOSED
        self._notify()

    def latest(self) -> Frame | None:
        """The freshest frame read so far, or None."""
        with self._lock:
            return self._latest

    def status(self) -> SourceStatus:
        """The source's health now (LIVE turns STALLED when no frame came for ``stall_after`` s)."""
        with self._lock:
            state, last, times = self._state, self._latest, list(self._times)
            frames, reconnects, error = self._frames, self._reconnects, self._error
        age = last.age if last is not None else None
        if state == LIVE and age is not None and age > self.stall_after:
            state = STALLED
        fps = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else 0.0
        return SourceStatus(self.name, state, frames, fps, reconnects, age, error)

    @property
    def finished(self) -> bool:
        """True once the source ended or failed for good."""
        with self._lock:
            return self._state in FINISHED

    def add_listener(self, condition: threading.Condition) -> None:
        """``condition.notify_all()`` is called after every new frame and state change."""
        self._listeners.append(condition)

    def remove_listener(self, condition: threading.Condition) -> None:
        """Stop notifying ``condition`` (no error if it was not listening)."""
        if condition in self._listeners:
            self._listeners.remove(condition)

    def __enter__(self) -> "VideoSource":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # -- reader thread -------------------------------------------------------------------------------------
    def _notify(self) -> None:
        for cond in list(self._listeners):  # a copy: remove_listener may run meanwhile
            with cond:
                cond.notify_all()

    def _set_state(self, state: str, error: str | None = None) -> None:
        with self._lock:
            if self._state != CLOSED:
                self._state = state
            if error is not None:
                self._error = error
        self._notify()

    def _wait_readable(self, sock: socket.socket, deadline: float, writable: bool = False) -> bool:
        """Wait for ``sock`` in short slices, so that :meth:`close` is never held up; False on stop or timeout."""
        while not self._stop.is_set() and time.monotonic() < deadline:
            ready = select.select([] if writable else [sock], [sock] if writable else [], [], POLL)
            if ready[0] or ready[1]:
                return True
        return False

    def _probe(self) -> str | None:
        """Before OpenCV opens an RTSP or UDP source, check here that it answers (None if it does, else why not).

        OpenCV's FFmpeg backend opens captures under one process-wide lock: a camera that accepts and never
        answers would hold every other source's open (files included) for its whole ``open_timeout``. This wait
        holds no lock and stops as soon as :meth:`close` is called.
        """
        url = urlsplit(str(self.target))
        scheme, deadline = url.scheme.lower(), time.monotonic() + self.open_timeout
        try:
            port = url.port
        except ValueError:
            return f"cannot open {self.shown!r}: its port is not a number, check the URL"
        if scheme == "udp" and port:
            host = url.hostname or ""
            try:
                if host and ipaddress.ip_address(socket.gethostbyname(host)).is_multicast:
                    return None  # a multicast group: OpenCV joins it itself
            except OSError as e:
                return f"cannot open {self.shown!r} ({e.strerror or e}): check the host name"
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    sock.bind(("", port))
                except OSError:
                    return None  # someone else holds the port: let OpenCV try
                if self._wait_readable(sock, deadline):
                    return None
            return f"cannot open {self.shown!r}: no data arrived on UDP port {port} within {self.open_timeout:g} s"
        if scheme != "rtsp":
            return None
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setblocking(False)
            try:
                sock.connect_ex((socket.gethostbyname(url.hostname or ""), port or 554))
                if not self._wait_readable(sock, deadline, writable=True) or sock.getsockopt(
                        socket.SOL_SOCKET, socket.SO_ERROR):
                    return f"cannot open {self.shown!r}: the camera does not accept connections, check the URL"
                sock.send(f"OPTIONS {self.target} RTSP/1.0\r\nCSeq: 1\r\nUser-Agent: edge-mimo\r\n\r\n".encode())
                if self._wait_readable(sock, deadline) and sock.recv(1):
                    return None
            except OSError as e:
                return f"cannot open {self.shown!r} ({e.strerror or e}): check the URL and the network"
        return (f"cannot open {self.shown!r}: the camera accepted the connection but did not answer within "
                f"{self.open_timeout:g} s; check the camera (or raise open_timeout)")

    def _open(self) -> cv2.VideoCapture | None:
        params = []
        if self.kind == "network":
            params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(self.open_timeout * 1000),
                      cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(self.read_timeout * 1000)]
            problem = self._probe()
            if problem:
                self._error = problem
                return None
        if self.kind == "file" and "%" not in str(self.target):
            path = Path(str(self.target))
            try:
                mode = path.stat().st_mode
            except FileNotFoundError:
                self._error = f"{self.target} does not exist: check the path"
                return None
            except OSError as e:
                self._error = f"{self.target} cannot be read ({e.strerror or e}): check the path and its permissions"
                return None
            if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):  # a FIFO would block the open for ever
                self._error = (f"{self.target} is not a regular file (a pipe, socket or device): give a video file, "
                               "a device as /dev/videoN or a URL")
                return None
        try:
            cap = cv2.VideoCapture(self.target, self.api, params)
        except cv2.error as e:
            self._error = f"OpenCV cannot open {self.shown!r} ({e}): check the source and OpenCV's backends"
            return None
        if not cap.isOpened():
            cap.release()
            self._error = f"cannot open {self.shown!r}: check the path/URL/device and that the camera is connected"
            return None
        return cap

    def _run(self) -> None:
        try:
            self._read_source()
        except Exception as e:  # noqa: BLE001 - whatever OpenCV or the OS raised: the stream fails, visibly
            self._set_state(FAILED, f"the reader of {self.shown!r} stopped ({type(e).__name__}: {e}): check the "
                                    "source")

    def _file_stamp(self) -> tuple | None:
        """(size, inode, mtime) of a file source, to notice truncation or replacement while it is read."""
        if self.kind != "file" or "%" in str(self.target):
            return None
        try:
            st = Path(str(self.target)).stat()
        except OSError:
            return ()
        return st.st_size, st.st_ino, st.st_mtime_ns

    def _read_source(self) -> None:
        failures, first = 0, True
        while not self._stop.is_set():
            self._set_state(OPENING if first and not failures else RECONNECTING)  # retrying counts as reconnecting
            cap = self._open()
            if cap is None:
                failures += 1
                if self.retries is not None and failures > self.retries:
                    self._set_state(FAILED, f"gave up after {failures} attempts: {self._error}")
                    return
                self._stop.wait(min(self.backoff[1], self.backoff[0] * 2 ** (failures - 1)))
                continue
            with self._lock:
                self._reconnects += not first
                self._error = None  # connected again: the last problem is over
                before = self._frames
            first = False
            outcome = self._read_until_lost(cap)
            cap.release()
            if self._frames > before:
                failures = 0  # a source that opens but gives no frame still counts against its retries
            if outcome == ENDED:
                self._set_state(ENDED)
                return
            if outcome == "lost":
                failures += 1
                if self.retries is not None and failures > self.retries:
                    self._set_state(FAILED, f"gave up after {failures} attempts: {self._error}")
                    return
                self._set_state(RECONNECTING)
                self._stop.wait(min(self.backoff[1], self.backoff[0] * 2 ** (failures - 1)))

    def _prepare(self, image: np.ndarray) -> object:
        prepare = self.prepare
        if prepare is None:
            return None
        try:
            return prepare(image)
        except Exception:  # noqa: BLE001 - a bad frame: the consumer prepares it itself and reports the error
            return None

    def _read_until_lost(self, cap: cv2.VideoCapture) -> str:
        """Read frames until stop ('stopped'), a file's end ('ended') or a lost source ('lost')."""
        fps = cap.get(cv2.CAP_PROP_FPS)
        period = 1.0 / fps if self.pace and 0 < fps < 1000 else (1.0 / 30 if self.pace else 0.0)
        next_at, bad, rewound = time.monotonic(), 0, False
        stamp, checked = self._file_stamp(), time.monotonic()
        while not self._stop.is_set():
            if stamp is not None and (rewound or time.monotonic() - checked > FILE_CHECK):
                checked = time.monotonic()
                if self._file_stamp() != stamp:
                    self._error = f"{self.shown!r} was truncated or replaced while being read: reopening"
                    return "lost"
            ok, image = cap.read()
            if not ok or image is None or image.size == 0:
                if self.kind == "file":
                    if rewound:  # nothing to read even from the start: the file was truncated or replaced
                        self._error = f"{self.shown!r} gave no frame after rewinding (truncated or replaced?): reopening"
                        return "lost"
                    if self.loop and self._frames and cap.set(cv2.CAP_PROP_POS_FRAMES, 0):
                        rewound = True
                        continue
                    return ENDED
                bad += 1
                if bad >= MAX_BAD_READS:
                    self._error = f"{self.shown!r} stopped delivering frames: reconnecting (check the camera/network)"
                    return "lost"
                continue
            bad, rewound = 0, False
            now = time.monotonic()
            prepared = self._prepare(image)
            with self._lock:
                self._latest = Frame(self.name, image, self._frames, time.time(), now, prepared)
                self._frames += 1
                self._times.append(now)
                if self._state != CLOSED:
                    self._state = LIVE
            self._notify()
            if period:
                next_at = max(next_at + period, now)  # behind schedule: resync, no burst to catch up
                self._stop.wait(max(0.0, next_at - time.monotonic()))
        return "stopped"
