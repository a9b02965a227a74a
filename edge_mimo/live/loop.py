"""The live loop itself: the freshest frames of a :class:`StreamMux`, classified together, handed to callbacks.

``run(runtime, mux, on_result)`` is what ``edge-mimo run`` and the examples use::

    with Runtime(bundle) as runtime, StreamMux({"left": 0, "right": "rtsp://..."}) as mux:
        live.run(runtime, mux, lambda frame, result: print(frame.stream, result.class_name), gather_ms=10)

Each step waits for new frames (:meth:`StreamMux.read`), classifies them in one :meth:`Runtime.infer_many`
call and calls ``on_result(frame, result)`` per stream, then ``on_batch`` and ``on_step``. Streams may be
added and removed while it runs (:meth:`StreamMux.add` / :meth:`StreamMux.remove`, from ``on_step`` or any
thread): a stream removed while its frame was being classified gets no result for it. Torch-free.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Mapping

from ..errors import ConfigError
from ..runtime import InferOptions, Runtime, StreamResult
from ..runtime.scheduler import is_integer, is_real
from ..streams import Frame, StreamMux

if TYPE_CHECKING:  # prometheus_client is an optional extra
    from .prometheus import LiveMetrics

OnResult = Callable[[Frame, StreamResult], None]
OnBatch = Callable[[dict[str, Frame], dict[str, StreamResult]], None]


@dataclass(frozen=True)
class Summary:
    """What one :func:`run` did: results delivered, steps with frames, seconds, and why it stopped."""

    results: int
    steps: int
    elapsed: float
    reason: str  # "ended" (every source ended or failed), "duration", "max_results", "stopped"


def check_limit(name: str, value: object, lowest: float = 0.0, strict: bool = False, whole: bool = False,
                optional: bool = True) -> None:
    """The one check of the live loop's numbers (``run``'s arguments, ``edge-mimo run``'s options, named as the
    caller knows them): None when ``optional``, else a finite (``whole``: integer) number > / >= ``lowest``;
    ``inf`` or ``nan`` would mean something else than asked. ConfigError naming ``name`` otherwise."""
    if value is None and optional:
        return
    ok = (is_integer(value) if whole else is_real(value)) and (value > lowest if strict else value >= lowest)
    if not ok:
        raise ConfigError(f"{name} must be a {'whole' if whole else 'finite'} number {'>' if strict else '>='} "
                          f"{lowest:g}, got {value!r}: " + ("leave it out for no limit" if optional else
                                                             "give a finite number"))


def run(runtime: Runtime, mux: StreamMux, on_result: OnResult, *, policy: str = "throughput",
        budget_ms: float | None = None, width: int | None = None,
        rois: Mapping[str, tuple[int, int, int, int]] | None = None, gather_ms: float = 0.0,
        max_age: float | None = None, period: float | None = None, duration: float | None = None,
        max_results: int | None = None, stop: threading.Event | None = None,
        on_batch: OnBatch | None = None, on_step: Callable[[], None] | None = None,
        metrics: LiveMetrics | None = None, prepare_in_readers: bool = True, until_ended: bool = True,
        poll: float = 0.5) -> Summary:
    """Classify ``mux``'s freshest frames until every source ended (``until_ended``), ``duration`` seconds,
    ``max_results`` results, or ``stop`` is set; returns a :class:`Summary`. Starts the mux if needed; never
    closes it (the caller owns it, e.g. ``with StreamMux(...) as mux``).

    ``policy``, ``budget_ms``, ``width``: as :meth:`Runtime.infer_many`. ``rois``: {stream: (x, y, w, h)}; streams
    without one (or added later) use the whole frame. ``gather_ms``: after a first new frame, wait up to this
    long for the other live streams, so that they share passes. ``max_age``: skip frames older than this many
    seconds. ``period``: at most one step per ``period`` seconds (a fixed-rate control loop); None: step as soon
    as frames arrive. ``on_result(frame, result)``: once per classified frame, in the loop's thread.
    ``on_batch(frames, results)``: once per step with frames. ``on_step()``: after every step, with or without
    frames (stats, reloading sources), at least every ``poll`` seconds. ``metrics``: a
    :class:`~edge_mimo.live.prometheus.LiveMetrics` fed with every result (after ``on_batch``, so that what
    it counts was already handed on) and the streams' health every step. ``prepare_in_readers``: each camera's
    reader thread turns its frames into model input as they arrive (:meth:`Runtime.prepare`), so that the
    loop's thread only runs the passes; each frame is prepared once, by its reader (off at the end of the run).
    ``until_ended=False``: keep running when no source is left (sources may still be added), until ``duration``,
    ``max_results`` or ``stop``.
    """
    InferOptions(policy, budget_ms, width)  # refused before any camera opens
    _check_limits(gather_ms, max_age, period, duration, poll, max_results)
    if prepare_in_readers:
        mux.set_prepare(lambda name, image: runtime.prepare(image, rois.get(name) if rois else None))
    stop = stop or threading.Event()
    try:
        mux.start()  # a no-op for started sources
        start = time.monotonic()
        next_step = start
        results_count = steps = 0
        while True:
            now = time.monotonic()
            if reason := _stop_reason(stop, now - start, duration, results_count, max_results,
                                      until_ended and not mux.active):
                break
            wait = poll if duration is None else max(0.0, min(poll, start + duration - now))
            batch = mux.read(timeout=wait, max_age=max_age, gather=gather_ms / 1e3)
            if batch:
                batch, results = _classify(runtime, mux, batch, policy, budget_ms, width, rois)
                _deliver(batch, results, on_result, on_batch, metrics)
                results_count += len(results)
                steps += 1
            if on_step is not None:
                on_step()
            if metrics is not None:
                metrics.update(mux.health())
            if period is not None:
                next_step = max(next_step + period, time.monotonic())  # late: resync, no burst to catch up
                stop.wait(max(0.0, next_step - time.monotonic()))
    finally:
        if prepare_in_readers:
            mux.set_prepare(None)
    return Summary(results_count, steps, time.monotonic() - start, reason)


def _check_limits(gather_ms: float, max_age: float | None, period: float | None, duration: float | None,
                  poll: float, max_results: int | None) -> None:
    """Refuse limits that are not finite numbers in range (ConfigError)."""
    check_limit("gather_ms", gather_ms, optional=False)
    check_limit("max_age", max_age, strict=True)
    check_limit("period", period, strict=True)
    check_limit("duration", duration, strict=True)
    check_limit("poll", poll, strict=True, optional=False)
    check_limit("max_results", max_results, 1, whole=True)


def _stop_reason(stop: threading.Event, elapsed: float, duration: float | None, results: int,
                 max_results: int | None, ended: bool) -> str | None:
    """Why the loop stops now (a :attr:`Summary.reason`), or None to go on."""
    if stop.is_set():
        return "stopped"
    if duration is not None and elapsed >= duration:
        return "duration"
    if max_results is not None and results >= max_results:
        return "max_results"
    return "ended" if ended else None


def _classify(runtime: Runtime, mux: StreamMux, batch: dict[str, Frame], policy: str, budget_ms: float | None,
              width: int | None, rois: Mapping[str, tuple[int, int, int, int]] | None
              ) -> tuple[dict[str, Frame], dict[str, StreamResult]]:
    """One :meth:`Runtime.infer_many` call on ``batch``; returns the frames and results of the streams still in the
    mux (a stream removed while its frame was classified gets no result)."""
    results = runtime.infer_many(batch, policy=policy, budget_ms=budget_ms, width=width,
                                 rois={n: rois[n] for n in batch if n in rois} if rois else None)
    current = mux.sources
    results = {n: r for n, r in results.items() if current.get(n) is not None}
    return {n: batch[n] for n in results}, results


def _deliver(batch: dict[str, Frame], results: dict[str, StreamResult], on_result: OnResult,
             on_batch: OnBatch | None, metrics: LiveMetrics | None) -> None:
    """Hand the results to ``on_result`` one by one, then to ``on_batch``, then to the metrics (so that what they
    count was already handed on)."""
    for name, result in results.items():
        on_result(batch[name], result)
    if on_batch is not None and results:
        on_batch(batch, results)
    if metrics is not None and results:
        for name, result in results.items():
            metrics.observe(batch[name], result)
        metrics.observe_batch(results)
