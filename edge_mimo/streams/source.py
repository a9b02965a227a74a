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
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from ..errors import ConfigError, StreamError

OPENING, LIVE, STALLED, RECONNECTING, ENDED, FAILED, CLOSED = (
    "opening", "live", "stalled", "reconnecting", "ended", "failed", "closed")
FINISHED = (ENDED, FAILED, CLOSED)
NETWORK_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://", "srt://")
MAX_BAD_READS = 5  # consecutive empty reads from a live source before reconnecting


@dataclass(frozen=True)
class Frame:
    """A captured frame: ``index`` counts frames read from this source (continuing across reconnects)."""

    stream: str
    image: np.ndarray
    index: int
    timestamp: float  # wall clock (time.time()) at capture
    monotonic: float  # time.monotonic() at capture, for ages

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
    if isinstance(uri, int) or (isinstance(uri, str) and uri.isdigit()):
        return int(uri), cv2.CAP_V4L2, "device"
    if not isinstance(uri, str) or not uri:
        raise ConfigError(f"source {uri!r} is not a path, URL, device index or pipeline")
    if re.fullmatch(r"/dev/video\d+", uri):
        return uri, cv2.CAP_V4L2, "device"
    if uri.lower().startswith(NETWORK_SCHEMES):
        return uri, cv2.CAP_FFMPEG, "network"
    if uri.startswith("gst:") or " ! " in uri:
        if not re.search(r"GStreamer:\s+YES", cv2.getBuildInformation()):
            raise StreamError(
                f"{uri!r} is a GStreamer pipeline but this OpenCV has no GStreamer support: "
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
    """

    def __init__(self, uri: str | int, name: str | None = None, *, pace: bool | None = None, loop: bool = False,
                 retries: int | None | Literal["auto"] = "auto", backoff: tuple[float, float] = (0.5, 8.0),
                 stall_after: float = 2.0, read_timeout: float = 5.0, open_timeout: float = 10.0) -> None:
        self.uri = uri
        self.name = name if name is not None else str(uri)
        self.target, self.api, self.kind = classify_uri(uri)
        is_file = self.kind == "file"
        self.pace = is_file if pace is None else pace
        self.loop = loop
        self.retries = (2 if is_file else None) if retries == "auto" else retries
        self.backoff = backoff
        self.stall_after = stall_after
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
        """Start the reader thread (once); returns the source."""
        if not self._thread.is_alive() and not self._stop.is_set():
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

    def __enter__(self) -> "VideoSource":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # -- reader thread -------------------------------------------------------------------------------------
    def _notify(self) -> None:
        for cond in self._listeners:
            with cond:
                cond.notify_all()

    def _set_state(self, state: str, error: str | None = None) -> None:
        with self._lock:
            if self._state != CLOSED:
                self._state = state
            if error is not None:
                self._error = error
        self._notify()

    def _open(self) -> cv2.VideoCapture | None:
        params = []
        if self.kind == "network":
            params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(self.open_timeout * 1000),
                      cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(self.read_timeout * 1000)]
        if self.kind == "file" and not Path(str(self.target)).exists() and "%" not in str(self.target):
            self._error = f"{self.target} does not exist: check the path"
            return None
        try:
            cap = cv2.VideoCapture(self.target, self.api, params)
        except cv2.error as e:
            self._error = f"OpenCV cannot open {self.uri!r} ({e}): check the source and OpenCV's backends"
            return None
        if not cap.isOpened():
            cap.release()
            self._error = f"cannot open {self.uri!r}: check the path/URL/device and that the camera is connected"
            return None
        return cap

    def _run(self) -> None:
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
            failures, first = 0, False
            outcome = self._read_until_lost(cap)
            cap.release()
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

    def _read_until_lost(self, cap: cv2.VideoCapture) -> str:
        """Read frames until stop ('stopped'), a file's end ('ended') or a lost source ('lost')."""
        fps = cap.get(cv2.CAP_PROP_FPS)
        period = 1.0 / fps if self.pace and 0 < fps < 1000 else (1.0 / 30 if self.pace else 0.0)
        next_at, bad = time.monotonic(), 0
        while not self._stop.is_set():
            ok, image = cap.read()
            if not ok or image is None or image.size == 0:
                if self.kind == "file":
                    if self.loop and self._frames and cap.set(cv2.CAP_PROP_POS_FRAMES, 0):
                        continue
                    return ENDED
                bad += 1
                if bad >= MAX_BAD_READS:
                    self._error = f"{self.uri!r} stopped delivering frames: reconnecting (check the camera/network)"
                    return "lost"
                continue
            bad = 0
            now = time.monotonic()
            with self._lock:
                self._latest = Frame(self.name, image, self._frames, time.time(), now)
                self._frames += 1
                self._times.append(now)
                if self._state != CLOSED:
                    self._state = LIVE
            self._notify()
            if period:
                next_at = max(next_at + period, now)  # behind schedule: resync, no burst to catch up
                self._stop.wait(max(0.0, next_at - time.monotonic()))
        return "stopped"
