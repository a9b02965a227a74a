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


# Channel counts in multiples of 8 run faster on both kinds of target: GPU tensor cores take them, and on this
# project's 2-core CPU (ONNX Runtime INT8) a twin of 32/64/128 ran 14-20 % more frames/s than one of 31/62/124.
CHANNEL_MULTIPLE = 8


def plain_twin_config(config: ModelConfig, width: int | None = None, multiple: int = 1) -> ModelConfig:
    """A plain WideResNet of the model's depth and stem whose MACs per frame match the model's at ``width``.

    The stage widths (w, 2w, 4w) are the w, a multiple of ``multiple``, whose cost is closest to the target (MACs
    grow with w, so a bisection finds it). ``edge-mimo twin`` uses ``CHANNEL_MULTIPLE``: a twin of odd widths runs
    on slower kernels (on an H200 the 31/62/124 twin was slower than a trunk of 4x its MACs; on the CPU 14-20 %
    slower than 32/64/128), which would flatter superposition; the aligned twin may cost a few percent more per
    frame, and the verdict shows the ratio. MIMOFormer's twin is the same transformer at capacity 1 with a token width
    matched the same way.
    """
    target = macs_per_frame(config, width)
    if config.arch == "mimoformer":
        def make(k: int) -> ModelConfig:
            return dataclasses.replace(config, capacity=1, embed_dim=k * multiple * config.heads)
    else:
        def make(k: int) -> ModelConfig:
            return dataclasses.replace(config, arch="plain", capacity=1, widen=1, base_width=k * multiple)
    cost = functools.lru_cache(maxsize=None)(lambda k: macs_per_frame(make(k)))  # each width built and counted once
    lo, hi = 1, 2
    while cost(hi) < target:
        lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if cost(mid) < target:
            lo = mid
        else:
            hi = mid
    return make(min((lo, hi), key=lambda k: abs(cost(k) - target)))
