"""A small image folder a new user might bring: circles, squares and triangles, colour, 64x64 (OpenCV-drawn)."""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

SHAPES = ("circle", "square", "triangle")


def draw(shape: str, rng: np.random.Generator, size: int = 64) -> np.ndarray:
    """One BGR image: a filled shape of random colour, size and place on a random plain background."""
    img = np.full((size, size, 3), rng.integers(0, 120, 3), np.uint8)
    colour = tuple(int(c) for c in rng.integers(130, 256, 3))
    r = int(rng.integers(size // 6, size // 3))
    cx, cy = (int(v) for v in rng.integers(r + 2, size - r - 2, 2))
    if shape == "circle":
        cv2.circle(img, (cx, cy), r, colour, -1)
    elif shape == "square":
        cv2.rectangle(img, (cx - r, cy - r), (cx + r, cy + r), colour, -1)
    else:
        pts = np.array([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], np.int32)
        cv2.fillPoly(img, [pts], colour)
    return img


def write_shapes(root: str | Path, per_class: int, seed: int = 0, size: int = 64) -> Path:
    """``root/<shape>/<i>.png``: ``per_class`` images of each shape."""
    root, rng = Path(root), np.random.default_rng(seed)
    for shape in SHAPES:
        (root / shape).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            cv2.imwrite(str(root / shape / f"{i:03d}.png"), draw(shape, rng, size))
    return root


if __name__ == "__main__":  # python tests/support/shapes.py ROOT [PER_CLASS]
    write_shapes(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 67)
