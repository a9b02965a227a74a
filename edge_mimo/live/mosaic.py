"""Drawing predictions on frames and tiling several streams into one video (for `edge-mimo run --video`)."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np

from ..errors import ConfigError
from ..runtime.results import StreamResult

TILE = (320, 240)
MAX_VIDEO_FPS = 120.0  # the mosaic repeats its image to keep time: a higher rate only fills the disk
GREEN, RED, GREY = (60, 200, 60), (40, 40, 230), (150, 150, 150)


def _as_bgr(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2 or image.shape[2] == 1:
        return cv2.cvtColor(image.reshape(image.shape[:2]), cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return image


def draw_tile(image: np.ndarray | None, title: str, lines: list[str], alarm: bool) -> np.ndarray:
    """One stream's frame scaled to a tile, with a title bar and text lines (red when ``alarm``)."""
    tile = np.zeros((TILE[1], TILE[0], 3), np.uint8)
    if image is not None and image.size and image.dtype == np.uint8:
        tile = cv2.resize(_as_bgr(image), TILE, interpolation=cv2.INTER_AREA)
    colour = RED if alarm else GREEN
    cv2.rectangle(tile, (0, 0), (TILE[0] - 1, TILE[1] - 1), colour, 2)
    cv2.rectangle(tile, (0, 0), (TILE[0], 22 + 18 * len(lines)), (0, 0, 0), -1)
    cv2.putText(tile, title, (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, colour, 1, cv2.LINE_AA)
    for i, line in enumerate(lines):
        cv2.putText(tile, line, (6, 36 + 18 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    return tile


def tile_lines(result: StreamResult) -> list[str]:
    """What a tile says under its title: the class and confidence (and `uncertain` when flagged); the entropy of the
    prediction (0 = certain, 1 = uniform over the classes) and the replicas' disagreement (their mutual
    information, 0 with one replica); how many replicas voted at which width. An error's message otherwise."""
    if not result.ok:
        return [str(result.error)[:44]]
    flag = "  uncertain" if result.uncertain else ""
    return [f"{result.class_name} {100 * result.confidence:.0f}%{flag}",
            f"entropy {result.entropy:.2f}  disagreement {result.disagreement:.3f}",
            f"{result.replicas} replica{'s' if result.replicas != 1 else ''} at width {result.width}"]


def mosaic(tiles: list[np.ndarray]) -> np.ndarray:
    """Tiles in a near-square grid (empty cells black)."""
    cols = math.ceil(math.sqrt(len(tiles)))
    rows = math.ceil(len(tiles) / cols)
    blank = np.zeros_like(tiles[0])
    cells = tiles + [blank] * (rows * cols - len(tiles))
    return np.vstack([np.hstack(cells[r * cols : (r + 1) * cols]) for r in range(rows)])


class MosaicWriter:
    """Writes mosaics to a video file at a fixed frame rate, in step with the run's clock: the video lasts as long as
    the run (a mosaic is repeated while no new batch comes, dropped when batches come faster than ``fps``). The size
    is fixed by the number of streams."""

    def __init__(self, path: str | Path, streams: int, fps: float = 15.0) -> None:
        if not (isinstance(fps, (int, float)) and 0 < fps <= MAX_VIDEO_FPS):
            raise ConfigError(f"video frame rate {fps!r} must be a number in (0, {MAX_VIDEO_FPS:g}]: e.g. 15")
        cols = math.ceil(math.sqrt(streams))
        rows = math.ceil(streams / cols)
        size = (TILE[0] * cols, TILE[1] * rows)
        fourcc = "MJPG" if str(path).lower().endswith(".avi") else "mp4v"
        self._writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, size)
        if not self._writer.isOpened():
            raise ConfigError(f"cannot write video {path}: use a .mp4 or .avi path in a writable directory")
        self.fps, self.frames = fps, 0

    def write(self, tiles: list[np.ndarray], at: float) -> None:
        """Show the mosaic of ``tiles`` (one per stream) from ``at`` seconds into the run: the video gets as many
        frames of it as bring its length up to ``at`` (none if it is already there)."""
        due = math.floor(at * self.fps) + 1
        if due > self.frames:
            image = mosaic(tiles)
            for _ in range(due - self.frames):
                self._writer.write(image)
            self.frames = due

    def close(self) -> None:
        """Finish the video file."""
        self._writer.release()
