"""Calibration data: *superposed* inputs of one width (n distinct images per group)."""

from __future__ import annotations

import hashlib

import numpy as np
from onnxruntime.quantization import CalibrationDataReader

from ..bundle.names import INPUT_NAME
from ..packing import pack_groups


def normalize(images: np.ndarray, mean, std) -> np.ndarray:
    """uint8 [..., C, H, W] -> float32 normalised with per-channel mean/std (0..1 units)."""
    m = np.asarray(mean, np.float32).reshape(-1, 1, 1)
    s = np.asarray(std, np.float32).reshape(-1, 1, 1)
    return (images.astype(np.float32) / 255.0 - m) / s


def data_hash(images: np.ndarray) -> str:
    """sha256 of the calibration images (shape, dtype and bytes)."""
    h = hashlib.sha256(f"{images.shape}{images.dtype}".encode())
    h.update(np.ascontiguousarray(images).tobytes())
    return h.hexdigest()


class GroupReader(CalibrationDataReader):
    """Feeds the calibrator groups of ``width`` distinct images, ``batch`` groups per call.

    n distinct images superposed behave differently from n copies, so each width is calibrated on its own
    superposed activations.
    """

    def __init__(self, images: np.ndarray, width: int, mean, std, input_name: str = INPUT_NAME, batch: int = 16):
        groups, _ = pack_groups(normalize(images, mean, std), width)
        self.batches = [groups[i : i + batch] for i in range(0, len(groups), batch)]
        self.input_name = input_name
        self.pos = 0

    def get_next(self) -> dict | None:
        """The next batch of superposed groups as ONNX Runtime feeds, or None at the end."""
        if self.pos >= len(self.batches):
            return None
        self.pos += 1
        return {self.input_name: self.batches[self.pos - 1]}

    def rewind(self) -> None:
        """Start again from the first batch."""
        self.pos = 0

    def __len__(self) -> int:
        return len(self.batches)
