"""Calibration data: *superposed* inputs of one width (n distinct images per group)."""

from __future__ import annotations

import hashlib

import numpy as np
from onnxruntime.quantization import CalibrationDataReader

from ..bundle.names import INPUT_NAME
from ..runtime.batching import images_spec, model_inputs, width_groups


def calibration_groups(images: np.ndarray, width: int, mean, std) -> np.ndarray:
    """uint8 images [M, C, H, W] -> superposed groups [G, width, C, H, W] of model inputs, prepared and packed
    by the runtime's own path (:mod:`edge_mimo.runtime.batching`)."""
    return width_groups(model_inputs(images, images_spec(images, mean, std)), width)


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
        groups = calibration_groups(images, width, mean, std)
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
