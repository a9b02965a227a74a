"""Camera-like demo videos made from the Fashion-MNIST sample shipped with edge-mimo (used by the examples).

Each video is 640x480 BGR: garments placed in a scene the way a camera sees them (edge_mimo.camera: one camera
condition per video), a new garment every ``hold`` frames, written with OpenCV at its own frame rate.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from edge_mimo.camera.scenes import CONDITIONS, render_frame
from edge_mimo.datasets import shipped_sample


CAMERAS = ("mid-background", "textured-background", "low-light")  # the condition each video's camera sees


def render(garment: np.ndarray, rng: np.random.Generator, condition: str = "mid-background",
           size=(640, 480)) -> np.ndarray:
    """One frame: the garment (28x28 uint8) in a scene of the named camera condition."""
    return render_frame(garment, CONDITIONS[condition], rng, size)


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
            writer.write(render(images[(k * 500 + i // hold) % len(images)], rng, CAMERAS[k % len(CAMERAS)]))
        writer.release()
        paths.append(str(path))
    return paths
