"""The reference image-to-logits path: preprocessing, normalisation, packing into superposed groups and reading
replicas back, exactly as :meth:`Runtime.infer_many` does it, for any callable that runs one width.

INT8 calibration, the compile gate (accuracy, temperature, uncertainty threshold), training evaluation and the
runtime all go through these functions, so every reported figure is a figure of the shipped path. A change to
how images become logits is made here (and in :mod:`.preprocess`), never in a copy.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..bundle.manifest import InputSpec
from ..errors import DataError
from .preprocess import Normalizer, prepare_batch
from .scheduler import Plan, gather, plan

RunWidth = Callable[[int, np.ndarray], np.ndarray]  # (width n, inputs [G, n, C, H, W]) -> logits [G, N/n, n, K]


def model_inputs(images: np.ndarray, spec: InputSpec) -> np.ndarray:
    """uint8 images [M, C, H, W] (a dataset's, any size) -> normalised float32 model inputs [M, C, h, w],
    through the runtime's frame preprocessing (colour, centre crop, exact area resize) and normaliser."""
    frames = list(images[:, 0]) if images.shape[1] == 1 else [img.transpose(1, 2, 0)[..., ::-1] for img in images]
    batch, _, errors = prepare_batch(frames, spec)
    if errors:
        index, error = next(iter(errors.items()))
        raise DataError(f"image {index} of the dataset cannot be used: {error}")
    return Normalizer(spec)(batch)


def _square_spec(channels: int, height: int, width_px: int, mean, std) -> InputSpec:
    return InputSpec(channels, height, width_px, "gray" if channels == 1 else "rgb", tuple(mean), tuple(std))


def spec_for(config) -> InputSpec:
    """The input spec of a model config (channels, square size, mean/std; centre crop)."""
    return _square_spec(config.in_channels, config.image_size, config.image_size, config.mean, config.std)


def pack(x: np.ndarray, plan_: Plan) -> dict[int, np.ndarray]:
    """Model inputs [M, C, H, W] -> {width n: groups [G_n, n, C, H, W]} in ``plan_.by_width()`` order."""
    return {n: x[np.asarray([g.frames for g in groups])] for n, groups in plan_.by_width().items()}


def _width_plan(count: int, width: int, capacity: int) -> Plan:
    """The runtime's forced-width plan for ``count`` frames (refused for none)."""
    if count == 0:
        raise DataError("no images to pack: give at least one")
    return plan(count, capacity, (width,), width=width)


def width_groups(x: np.ndarray, width: int) -> np.ndarray:
    """All of ``x`` packed ``width`` distinct frames per group (the runtime's forced-width plan, which does not
    depend on the capacity): [ceil(M / width), width, C, H, W]; a short last group repeats its frames."""
    return pack(x, _width_plan(len(x), width, width))[width]


def images_spec(images: np.ndarray, mean, std) -> InputSpec:
    """The input spec of a dataset's images [M, C, H, W] normalised with ``mean``/``std`` (as-is size)."""
    return _square_spec(*images.shape[1:], mean, std)


def frame_logits(run: RunWidth, x: np.ndarray, width: int, capacity: int, batch: int = 64) -> np.ndarray:
    """Replica-averaged logits [M, K] of model inputs ``x`` at one width, as ``infer_many(width=...)`` forms
    them (a frame in a short last group gets the extra replicas of the spare positions)."""
    plan_ = _width_plan(len(x), width, capacity)
    groups = pack(x, plan_)[width]
    out = np.concatenate([run(width, groups[i : i + batch]) for i in range(0, len(groups), batch)])
    logits, owner = gather(plan_, {width: out}, len(x))
    starts = np.searchsorted(owner, np.arange(len(x)))
    counts = np.diff(np.append(starts, len(owner)))
    return np.add.reduceat(logits.astype(np.float64), starts, axis=0) / counts[:, None]
