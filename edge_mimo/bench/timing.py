"""Repeated timing with warm-up, interleaved across configurations; medians and tails."""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable

import numpy as np


def measure_interleaved(calls: dict[Hashable, Callable[[], object]], repeats: int, burst: int = 5,
                        warmup: int = 1, pause_s: float = 0.05) -> tuple[dict[Hashable, np.ndarray], dict[Hashable, list]]:
    """``repeats`` timed calls of each configuration, in rounds: every round runs each configuration for one
    untimed call then a burst of ``burst`` timed ones (after ``warmup`` untimed rounds).

    Rounds make the ratios between configurations robust to the machine's speed drifting during the run (shared
    or throttled CPUs); bursts time each one in the steady state of a deployment that runs it continuously (its
    weights in cache). A ``pause_s`` pause after each burst lets the previous library's idle threads stop
    spinning (OpenMP's busy wait after PyTorch took the cores from the next configuration's first calls).
    Returns ({key: wall times in ms}, {key: what each timed call returned}).
    """
    for _ in range(warmup):
        for fn in calls.values():
            fn()
    times = {key: [] for key in calls}
    returned = {key: [] for key in calls}
    for start in range(0, repeats, burst):
        for key, fn in calls.items():
            fn()
            for _ in range(min(burst, repeats - start)):
                t0 = time.perf_counter()
                value = fn()
                times[key].append((time.perf_counter() - t0) * 1e3)
                returned[key].append(value)
            time.sleep(pause_s)
    return {key: np.asarray(ms) for key, ms in times.items()}, returned


def summary(ms: np.ndarray, frames: int) -> dict:
    """Median and 99th-percentile milliseconds per call of ``ms``, and frames/s at ``frames`` frames per call."""
    p50 = float(np.median(ms))
    return {"p50_ms": p50, "p99_ms": float(np.percentile(ms, 99)), "fps": 1e3 * frames / p50, "repeats": len(ms)}
