"""The plain network whose cost per frame equals a superposed model's at its widest width."""

from __future__ import annotations

import dataclasses
import functools

from ..models.config import ModelConfig


def macs_per_frame(config: ModelConfig, width: int | None = None) -> float:
    """Multiply-accumulates per frame of a pass at ``width`` (default: the capacity, the cheapest per frame)."""
    from ..models import build_model
    from ..models.weights import count_macs

    width = width or config.capacity
    return count_macs(build_model(config), width) / width


def plain_twin_config(config: ModelConfig, width: int | None = None) -> ModelConfig:
    """A plain WideResNet of the model's depth and stem whose MACs per frame match the model's at ``width``.

    The stage widths (w, 2w, 4w) are the integer w whose cost is closest to the target (MACs grow with w, so a
    bisection finds it). MIMOFormer's twin is the same transformer at capacity 1 with a token width matched the
    same way.
    """
    target = macs_per_frame(config, width)
    if config.arch == "mimoformer":
        def make(w: int) -> ModelConfig:
            return dataclasses.replace(config, capacity=1, embed_dim=w * config.heads)
    else:
        def make(w: int) -> ModelConfig:
            return dataclasses.replace(config, arch="plain", capacity=1, widen=1, base_width=w)
    cost = functools.lru_cache(maxsize=None)(lambda w: macs_per_frame(make(w)))  # each width built and counted once
    lo, hi = 1, 2
    while cost(hi) < target:
        lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if cost(mid) < target:
            lo = mid
        else:
            hi = mid
    return make(min((lo, hi), key=lambda w: abs(cost(w) - target)))
