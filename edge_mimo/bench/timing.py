"""Repeated timing with warm-up; medians and tails."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np


def measure(fn: Callable[[], object], repeats: int, warmup: int = 2) -> np.ndarray:
    """Wall times of ``repeats`` calls of ``fn`` in milliseconds, after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    out = np.empty(repeats)
    for i in range(repeats):
        start = time.perf_counter()
        fn()
        out[i] = (time.perf_counter() - start) * 1e3
    return out


def summary(ms: np.ndarray, frames: int) -> dict:
    p50 = float(np.median(ms))
    return {"p50_ms": p50, "p99_ms": float(np.percentile(ms, 99)), "fps": 1e3 * frames / p50, "repeats": len(ms)}
