"""Live statistics per stream for the status lines of ``edge-mimo run``: prediction rate, uncertain and error
counts."""

from __future__ import annotations

import collections
import time


class Stats:
    """Per-stream prediction rate (last 30 predictions) and running uncertainty / error counts."""

    def __init__(self) -> None:
        self.times: dict[str, collections.deque] = collections.defaultdict(lambda: collections.deque(maxlen=30))
        self.count: dict[str, int] = collections.defaultdict(int)
        self.uncertain: dict[str, int] = collections.defaultdict(int)
        self.errors: dict[str, int] = collections.defaultdict(int)

    def add(self, name: str, result) -> None:
        """Count one result of stream ``name``."""
        self.times[name].append(time.monotonic())
        self.count[name] += 1
        self.uncertain[name] += bool(result.ok and result.uncertain)
        self.errors[name] += not result.ok

    def fps(self, name: str) -> float:
        """Predictions per second of stream ``name`` over its last 30."""
        t = self.times[name]
        return (len(t) - 1) / (t[-1] - t[0]) if len(t) > 1 and t[-1] > t[0] else 0.0

    def rate(self, name: str) -> float:
        """Share of stream ``name``'s good predictions flagged uncertain."""
        ok = self.count[name] - self.errors[name]
        return self.uncertain[name] / ok if ok else 0.0

    def line(self, health: dict, elapsed: float) -> str:
        """One status line for stderr (the streams in ``health``)."""
        parts = [f"{n} {health[n].state} {self.fps(n):.1f} fps uncertain {100 * self.rate(n):.0f}%"
                 + (f" errors {self.errors[n]}" if self.errors[n] else "") for n in health]
        return f"[{elapsed:6.1f}s] " + " | ".join(parts)
