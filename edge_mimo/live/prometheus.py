"""Prometheus metrics of a live loop, per stream (``pip install 'edge-mimo[metrics]'``: ``prometheus_client``).

``LiveMetrics`` is fed by the live loop (:func:`edge_mimo.live.run`'s callbacks; ``edge-mimo run --metrics-port``
does it) and served over HTTP by :meth:`LiveMetrics.serve` or any ``prometheus_client`` exporter of its
``registry``. Series (``stream`` label unless noted):

- ``edge_mimo_results_total``, ``edge_mimo_errors_total``, ``edge_mimo_uncertain_total``: results delivered,
  of which bad frames, and good ones flagged uncertain; ``edge_mimo_uncertain_rate``: uncertain / good results.
- ``edge_mimo_result_fps``: results per second over the stream's last 30; ``edge_mimo_capture_fps`` and
  ``edge_mimo_captured_frames``: the camera's own rate and frames read.
- ``edge_mimo_stream_state{state=...}``: 1 for the current health state (opening, live, stalled,
  reconnecting, ended, failed, closed); ``edge_mimo_reconnects_total``.
- ``edge_mimo_latency_seconds``: capture to result (histogram); ``edge_mimo_infer_seconds`` (no label): one
  ``infer_many`` call; ``edge_mimo_passes_total{width=...}``: superposed passes run per width.

A removed stream's series are removed too.
"""

from __future__ import annotations

import collections
import threading
import time
from typing import Mapping

from ..errors import ConfigError
from ..runtime import StreamResult
from ..streams.source import CLOSED, ENDED, FAILED, LIVE, OPENING, RECONNECTING, STALLED, Frame, SourceStatus

STATES = (OPENING, LIVE, STALLED, RECONNECTING, ENDED, FAILED, CLOSED)
LATENCY_BUCKETS = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
INFER_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)


def _prometheus():
    try:
        import prometheus_client
    except ImportError:
        raise ConfigError("Prometheus metrics need prometheus_client: pip install 'edge-mimo[metrics]'") from None
    return prometheus_client


class LiveMetrics:
    """Per-stream live-loop metrics in their own ``registry`` (a new ``CollectorRegistry`` unless given).

    Call :meth:`observe` per result, :meth:`observe_batch` per ``infer_many`` call and :meth:`update` with
    ``StreamMux.health()`` now and then. Thread-safe.
    """

    def __init__(self, registry=None) -> None:
        pc = _prometheus()
        self.registry = registry if registry is not None else pc.CollectorRegistry()
        r, s = self.registry, ["stream"]
        self.results = pc.Counter("edge_mimo_results", "Results delivered", s, registry=r)
        self.errors = pc.Counter("edge_mimo_errors", "Results for bad frames", s, registry=r)
        self.uncertain = pc.Counter("edge_mimo_uncertain", "Good results flagged uncertain", s, registry=r)
        self.uncertain_rate = pc.Gauge("edge_mimo_uncertain_rate", "Uncertain share of good results", s, registry=r)
        self.result_fps = pc.Gauge("edge_mimo_result_fps", "Results per second (last 30)", s, registry=r)
        self.capture_fps = pc.Gauge("edge_mimo_capture_fps", "Frames per second read from the source", s,
                                    registry=r)
        self.captured = pc.Gauge("edge_mimo_captured_frames", "Frames read from the source", s, registry=r)
        self.state = pc.Enum("edge_mimo_stream_state", "Health state of the stream", s, states=list(STATES),
                             registry=r)
        self.reconnects = pc.Counter("edge_mimo_reconnects", "Reconnections of the source", s, registry=r)
        self.latency = pc.Histogram("edge_mimo_latency_seconds", "Capture to result", s, buckets=LATENCY_BUCKETS,
                                    registry=r)
        self.infer = pc.Histogram("edge_mimo_infer_seconds", "One infer_many call", buckets=INFER_BUCKETS,
                                  registry=r)
        self.passes = pc.Counter("edge_mimo_passes", "Superposed passes run", ["width"], registry=r)
        self._lock = threading.Lock()
        self._times: dict[str, collections.deque[float]] = {}
        self._good: dict[str, int] = {}
        self._uncertain: dict[str, int] = {}
        self._reconnects: dict[str, int] = {}
        self._server = None

    def observe(self, frame: Frame, result: StreamResult) -> None:
        """Count one result of ``frame``'s stream."""
        name = frame.stream
        self.results.labels(name).inc()
        self.latency.labels(name).observe(max(0.0, frame.age))
        with self._lock:
            times = self._times.setdefault(name, collections.deque(maxlen=30))
            times.append(time.monotonic())
            fps = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else 0.0
            if result.ok:
                self._good[name] = self._good.get(name, 0) + 1
                self._uncertain[name] = self._uncertain.get(name, 0) + bool(result.uncertain)
            good, uncertain = self._good.get(name, 0), self._uncertain.get(name, 0)
        if not result.ok:
            self.errors.labels(name).inc()
        elif result.uncertain:
            self.uncertain.labels(name).inc()
        self.errors.labels(name)  # every stream shows all its series, zeros included
        self.uncertain.labels(name)
        self.uncertain_rate.labels(name).set(uncertain / good if good else 0.0)
        self.result_fps.labels(name).set(fps)

    def observe_batch(self, results: Mapping[str, StreamResult]) -> None:
        """Count one ``infer_many`` call (its time and passes per width) from its results."""
        timing = next((r.timing for r in results.values() if r.timing is not None), None)
        if timing is None:
            return
        self.infer.observe(timing.total_ms / 1e3)
        for width, passes in timing.passes.items():
            self.passes.labels(str(width)).inc(passes)

    def update(self, health: Mapping[str, SourceStatus]) -> None:
        """Set each stream's state, capture rate, frames and reconnects; forget streams no longer in ``health``."""
        with self._lock:
            gone = (set(self._reconnects) | set(self._times)) - set(health)
            for name in gone:
                self._forget(name)
            for name, status in health.items():
                self.state.labels(name).state(status.state)
                self.capture_fps.labels(name).set(status.fps)
                self.captured.labels(name).set(status.frames)
                self.reconnects.labels(name).inc(max(0, status.reconnects - self._reconnects.get(name, 0)))
                self._reconnects[name] = max(status.reconnects, self._reconnects.get(name, 0))

    def _forget(self, name: str) -> None:
        for metric in (self.results, self.errors, self.uncertain, self.uncertain_rate, self.result_fps,
                       self.capture_fps, self.captured, self.state, self.reconnects, self.latency):
            try:
                metric.remove(name)
            except KeyError:  # no series of that stream yet
                pass
        for table in (self._times, self._good, self._uncertain, self._reconnects):
            table.pop(name, None)

    def serve(self, port: int, host: str = "127.0.0.1") -> int:
        """Serve ``/metrics`` over HTTP on ``host:port`` (loopback by default; port 0: any free one) in a
        background thread; returns the port. :meth:`close` stops it."""
        if self._server is not None:
            raise ConfigError("these metrics are already served: call close() first")
        try:
            server, thread = _prometheus().start_http_server(port, addr=host, registry=self.registry)
        except OSError as e:
            raise ConfigError(f"cannot serve metrics on {host}:{port} ({e.strerror or e}): choose a free port "
                              "with --metrics-port, or a local address with --metrics-host") from None
        self._server = (server, thread)
        return server.server_address[1]

    def close(self) -> None:
        """Stop serving (if :meth:`serve` was called)."""
        if self._server is not None:
            server, thread = self._server
            server.shutdown()
            server.server_close()
            thread.join(5.0)
            self._server = None
