"""Camera-like demo videos made from the Fashion-MNIST sample shipped with edge-mimo (used by the examples).

Each video is 640x480 BGR: a noisy background with a garment filling the centre square, a new garment every
``hold`` frames, written with OpenCV at its own frame rate.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from edge_mimo.datasets import shipped_sample


def render(garment: np.ndarray, rng: np.random.Generator, size=(640, 480)) -> np.ndarray:
    w, h = size
    frame = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    side = min(w, h)
    x0, y0 = (w - side) // 2, (h - side) // 2
    frame[y0 : y0 + side, x0 : x0 + side] = cv2.resize(garment, (side, side), interpolation=cv2.INTER_NEAREST)[..., None]
    return frame


def write_demo_videos(folder: str | Path, rates=(30, 15, 10), seconds: float = 4.0, hold: int = 5) -> list[str]:
    """One video per frame rate; returns their paths. Garments come from the shipped validation sample."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    images = shipped_sample("validation").images[:, 0]
    rng = np.random.default_rng(0)
    paths = []
    for k, fps in enumerate(rates):
        path = folder / f"camera{k}_{fps}fps.avi"
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (640, 480))
        for i in range(int(fps * seconds)):
            writer.write(render(images[(k * 500 + i // hold) % len(images)], rng))
        writer.release()
        paths.append(str(path))
    return paths
