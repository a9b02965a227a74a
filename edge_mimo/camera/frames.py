"""Camera-like benchmark frames: dataset objects placed in a scene (see :mod:`edge_mimo.camera.scenes`)."""

from __future__ import annotations

import numpy as np

from .scenes import CONDITIONS, render_frames

BENCH_CONDITION = "textured-background"  # a scene behind a garment that fills 100 % of the centre square


def camera_frames(images: np.ndarray, size: tuple[int, int] = (640, 480), seed: int = 0) -> list[np.ndarray]:
    """uint8 [M, 1, 28, 28] -> M BGR frames (``size`` = (width_px, height)) of the objects on a textured scene."""
    return render_frames(images, CONDITIONS[BENCH_CONDITION], seed, size)
