"""Repeated timing with warm-up, interleaved across configurations; medians and tails."""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable

import numpy as np


def measure_interleaved(calls: dict[Hashable, Callable[[], object]], repeats: int,
                        warmup: int = 1) -> tuple[dict[Hashable, np.ndarray], dict[Hashable, list]]:
    """Time every call once per round for ``repeats`` rounds (after ``warmup`` untimed rounds).

    Interleaving makes the ratios between calls robust to the machine's speed drifting during the run (shared or
    throttled CPUs). Each timed call follows an untimed call of the same configuration, so it runs with its own
    weights in cache and no other library's threads still spinning, as it would in a deployment that runs
    one configuration continuously. Returns ({key: wall times in ms}, {key: what each timed call returned}).
    """
    for _ in range(warmup):
        for fn in calls.values():
            fn()
    times = {key: np.empty(repeats) for key in calls}
    returned = {key: [] for key in calls}
    for i in range(repeats):
        for key, fn in calls.items():
            fn()
            start = time.perf_counter()
            value = fn()
            times[key][i] = (time.perf_counter() - start) * 1e3
            returned[key].append(value)
    return times, returned


def summary(ms: np.ndarray, frames: int) -> dict:
    p50 = float(np.median(ms))
    return {"p50_ms": p50, "p99_ms": float(np.percentile(ms, 99)), "fps": 1e3 * frames / p50, "repeats": len(ms)}
