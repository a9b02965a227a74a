"""Evaluate a model at each width: accuracy, NLL and ECE."""

from __future__ import annotations

import numpy as np
import torch

from ..metrics import softmax, summary
from ..models.base import SuperposedClassifier
from ..packing import pack_groups, unpack_groups


def normalize(images: np.ndarray | torch.Tensor, mean, std) -> torch.Tensor:
    """uint8 [..., C, H, W] -> float32 normalised with per-channel mean/std (in 0..1 units)."""
    x = torch.as_tensor(images).float().div_(255.0)
    m = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)
    return (x - m) / s


@torch.no_grad()
def predict_logits(model: SuperposedClassifier, images: np.ndarray, width: int, batch: int = 256) -> np.ndarray:
    """Per-replica logits [M, N/n, classes] for uint8 images [M, C, H, W], packed n distinct per pass."""
    model.eval()
    device = next(model.parameters()).device
    groups, _ = pack_groups(images, width)
    outs = []
    for i in range(0, len(groups), batch):
        x = normalize(groups[i : i + batch], model.config.mean, model.config.std).to(device)
        outs.append(model(x).float().cpu().numpy())
    return unpack_groups(np.concatenate(outs), len(images))


def evaluate(model: SuperposedClassifier, images: np.ndarray, labels: np.ndarray, widths=None) -> dict:
    """{width: {accuracy, nll, ece}} of the replica-averaged prediction."""
    results = {}
    for n in widths or model.config.widths:
        logits = predict_logits(model, images, n).mean(1)
        results[n] = summary(softmax(logits), labels)
    return results
