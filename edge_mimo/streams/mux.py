"""``StreamMux``: several sources, and the freshest new frame of each live one on demand."""

from __future__ import annotations

import math
import threading
import time
from typing import Iterator, Mapping, Sequence

from ..errors import ConfigError
from .source import Frame, SourceStatus, VideoSource


class StreamMux:
    """Opens every source (each with its own reader thread) and hands out their freshest frames.

    ``sources``: a dict {stream name: uri or VideoSource} or a list of uris (named by their uri).
    ``source_options`` go to every :class:`VideoSource` built here (pace, loop, retries, backoff, ...).
    A dead or stalled stream never blocks the others: :meth:`read` returns whatever streams have new frames.
    """

    def __init__(self, sources: Mapping[str, str | int | VideoSource] | Sequence[str | int | VideoSource],
                 **source_options) -> None:
        items = sources.items() if isinstance(sources, Mapping) else (
            ((s.name if isinstance(s, VideoSource) else str(s)), s) for s in sources)
        self.sources: dict[str, VideoSource] = {}
        for name, src in items:
            if name in self.sources:
                raise ConfigError(f"two sources are named {name!r}: give each stream its own name")
            self.sources[name] = src if isinstance(src, VideoSource) else VideoSource(src, name, **source_options)
        if not self.sources:
            raise ConfigError("no sources given: pass at least one file, URL, device or pipeline")
        self._cond = threading.Condition()
        for src in self.sources.values():
            src.add_listener(self._cond)
        self._handed: dict[str, int] = {}  # last frame index handed out per stream
        self.skipped: dict[str, int] = {name: 0 for name in self.sources}  # frames superseded before being read

    def start(self) -> "StreamMux":
        """Start every source's reader thread; returns the mux."""
        for src in self.sources.values():
            src.start()
        return self

    def close(self, timeout: float = 5.0) -> None:
        """Stop every reader thread and release the captures, waiting ``timeout`` seconds in all (not per source)."""
        for src in self.sources.values():
            src.request_stop()  # signal all first, so slow ones stop in parallel
        deadline = time.monotonic() + timeout
        for src in self.sources.values():
            src.close(max(0.0, deadline - time.monotonic()))

    def __enter__(self) -> "StreamMux":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def active(self) -> bool:
        """True while at least one source may still deliver frames."""
        return not all(src.finished for src in self.sources.values())

    def _fresh(self, max_age: float | None) -> dict[str, Frame]:
        out = {}
        for name, src in self.sources.items():
            frame = src.latest()
            if frame is None or frame.index <= self._handed.get(name, -1):
                continue
            if max_age is not None and frame.age > max_age:
                continue
            out[name] = frame
        return out

    def read(self, timeout: float = 1.0, max_age: float | None = None, gather: float = 0.0) -> dict[str, Frame]:
        """Wait up to ``timeout`` s for at least one stream to have a frame not handed out yet; return the newest
        such frame of every stream that has one (in source order). Frames older than ``max_age`` s are left out.
        ``gather``: once one stream has a new frame, wait up to this many seconds more for every other live
        stream to have one too, so that they share superposed passes (latency traded for throughput).
        An empty dict means nothing new arrived (see :meth:`health`).
        """
        for name, value in (("timeout", timeout), ("gather", gather)):
            if not (isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0):
                raise ConfigError(f"{name} must be a number of seconds >= 0 (inf: wait for ever), got {value!r}")
        timeout = None if math.isinf(timeout) else timeout  # threading cannot wait an infinite time
        gather = None if math.isinf(gather) else gather
        with self._cond:  # also makes the hand-out atomic: with several consumer threads, each frame goes to one
            self._cond.wait_for(lambda: bool(self._fresh(max_age)) or not self.active, timeout)
            if gather is None or gather > 0:
                live = [n for n, src in self.sources.items() if src.status().state == "live"]
                self._cond.wait_for(lambda: set(live) <= set(self._fresh(max_age)), gather)
            frames = self._fresh(max_age)
            for name, frame in frames.items():
                self.skipped[name] += frame.index - self._handed.get(name, -1) - 1
                self._handed[name] = frame.index
        return frames

    def __iter__(self) -> Iterator[dict[str, Frame]]:
        """Batches of fresh frames until every source has ended or failed."""
        while True:
            frames = self.read()
            if frames:
                yield frames
            elif not self.active:
                return

    def health(self) -> dict[str, SourceStatus]:
        """Each stream's current status (state, fps, reconnects, age, last error)."""
        return {name: src.status() for name, src in self.sources.items()}

