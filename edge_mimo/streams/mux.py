"""``StreamMux``: several sources, and the freshest new frame of each live one on demand."""

from __future__ import annotations

import functools
import math
import threading
import time
from typing import Callable, Iterator, Mapping, Sequence

import numpy as np

from ..errors import ConfigError
from .source import Frame, SourceStatus, VideoSource, redact


class StreamMux:
    """Opens every source (each with its own reader thread) and hands out their freshest frames.

    ``sources``: a dict {stream name: uri or VideoSource} or a list of uris (named by their uri).
    ``source_options`` go to every :class:`VideoSource` built here (pace, loop, retries, backoff, ...), also
    those added later with :meth:`add`. A dead or stalled stream never blocks the others: :meth:`read` returns
    whatever streams have new frames. Streams may be added and removed while others run (:meth:`add`,
    :meth:`remove`), from any thread. ``prepare(stream, image)``: run in each stream's reader thread on every
    new frame (see :meth:`set_prepare`).
    """

    def __init__(self, sources: Mapping[str, str | int | VideoSource] | Sequence[str | int | VideoSource],
                 prepare: Callable[[str, np.ndarray], object] | None = None, **source_options) -> None:
        items = sources.items() if isinstance(sources, Mapping) else (
            ((s.name if isinstance(s, VideoSource) else redact(s)), s) for s in sources)
        self._options = source_options
        self._prepare = prepare
        self._cond = threading.Condition()
        self._started = False
        self.sources: dict[str, VideoSource] = {}
        self._handed: dict[str, int] = {}  # last frame index handed out per stream
        self.skipped: dict[str, int] = {}  # frames superseded before being read, per stream
        for name, src in items:
            self._insert(name, src)
        if not self.sources:
            raise ConfigError("no sources given: pass at least one file, URL, device or pipeline")

    def _insert(self, name: str, source: str | int | VideoSource) -> VideoSource:
        """Register one source under ``self._cond`` (or during construction)."""
        if name in self.sources:
            raise ConfigError(f"two sources are named {name!r}: give each stream its own name "
                              "(or remove the running one first)")
        src = source if isinstance(source, VideoSource) else VideoSource(source, name, **self._options)
        src.add_listener(self._cond)
        if self._prepare is not None:
            src.prepare = functools.partial(self._prepare, name)
        self.sources = {**self.sources, name: src}  # a new dict: iterating threads keep a consistent snapshot
        self.skipped[name] = 0
        return src

    def add(self, name: str, source: str | int | VideoSource) -> VideoSource:
        """Add a stream while the others run (started at once if the mux is started); returns its source."""
        with self._cond:
            src = self._insert(name, source)
            if self._started:
                src.start()
            self._cond.notify_all()
        return src

    def remove(self, name: str, timeout: float = 5.0) -> SourceStatus:
        """Stop and forget stream ``name`` without touching the others: its reader thread ends (waiting up to
        ``timeout`` s), its capture is released and :meth:`read` hands out no more of its frames. Returns its
        last status."""
        with self._cond:
            if name not in self.sources:
                raise ConfigError(f"no stream is named {name!r}: "
                                  f"running streams are {', '.join(self.sources) or 'none'}")
            src = self.sources[name]
            self.sources = {n: s for n, s in self.sources.items() if n != name}
            self._handed.pop(name, None)
            self.skipped.pop(name, None)
            src.remove_listener(self._cond)
            self._cond.notify_all()
        src.close(timeout)  # outside the lock: the other streams keep being read meanwhile
        return src.status()

    def set_prepare(self, prepare: Callable[[str, np.ndarray], object] | None) -> None:
        """Have every stream's reader thread (those added later too) call ``prepare(stream, image)`` on each new
        frame and keep the result as the frame's ``prepared`` (e.g. ``lambda name, image: runtime.prepare(image)``:
        frames then reach :meth:`Runtime.infer_many` as model input, prepared once each, off the loop's thread).
        None: stop preparing."""
        with self._cond:
            self._prepare = prepare
            for name, src in self.sources.items():
                src.prepare = None if prepare is None else functools.partial(prepare, name)

    def start(self) -> "StreamMux":
        """Start every source's reader thread; returns the mux."""
        with self._cond:
            self._started = True
            for src in self.sources.values():
                src.start()
        return self

    def close(self, timeout: float = 5.0) -> None:
        """Stop every reader thread and release the captures, waiting ``timeout`` seconds in all (not per source)."""
        sources = list(self.sources.values())
        for src in sources:
            src.request_stop()  # signal all first, so slow ones stop in parallel
        deadline = time.monotonic() + timeout
        for src in sources:
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
                self.skipped[name] = self.skipped.get(name, 0) + frame.index - self._handed.get(name, -1) - 1
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

