"""Camera-like test frames: Fashion-MNIST garments centred on a 640x480 BGR background."""

from __future__ import annotations

import cv2
import numpy as np


def camera_frames(images: np.ndarray, size: tuple[int, int] = (640, 480), seed: int = 0) -> list[np.ndarray]:
    """uint8 [M, 1, 28, 28] -> M BGR frames (``size`` = (width_px, height)), the garment filling the centre square."""
    w, h = size
    rng = np.random.default_rng(seed)
    frames = []
    for img in images:
        frame = np.clip(rng.normal(40, 12, (h, w, 3)), 0, 255).astype(np.uint8)  # sensor noise on a dark scene
        side = h
        garment = cv2.resize(img[0], (side, side), interpolation=cv2.INTER_LINEAR)
        x0 = (w - side) // 2
        frame[:, x0 : x0 + side] = np.maximum(frame[:, x0 : x0 + side], garment[:, :, None])
        frames.append(frame)
    return frames
