"""Evaluate a model at each width: accuracy, NLL and ECE."""

from __future__ import annotations

import numpy as np
import torch

from ..metrics import softmax, summary
from ..models.base import SuperposedClassifier
from ..runtime.batching import frame_logits, model_inputs, spec_for


@torch.no_grad()
def predict_logits(model: SuperposedClassifier, images: np.ndarray, width: int, batch: int = 256) -> np.ndarray:
    """Replica-averaged logits [M, classes] of uint8 images [M, C, H, W] at one width, prepared and packed by
    the runtime's own path (:mod:`edge_mimo.runtime.batching`), so training figures are the runtime's."""
    model.eval()
    device = next(model.parameters()).device
    x = model_inputs(images, spec_for(model.config))

    def run(n: int, groups: np.ndarray) -> np.ndarray:
        return model(torch.from_numpy(groups).to(device)).float().cpu().numpy()

    return frame_logits(run, x, width, model.config.capacity, batch)


def evaluate(model: SuperposedClassifier, images: np.ndarray, labels: np.ndarray, widths=None) -> dict:
    """{width: {accuracy, nll, ece}} of the replica-averaged prediction."""
    return {n: summary(softmax(predict_logits(model, images, n)), labels) for n in widths or model.config.widths}
