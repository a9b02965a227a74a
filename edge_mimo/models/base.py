"""What every superposed classifier shares: slot layout, replication and the output shape."""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError

from .config import ModelConfig


def replicate(x: torch.Tensor, capacity: int) -> torch.Tensor:
    """[B, n, ...] -> [B, N, ...]: image j fills slots j, j+n, j+2n, ... (slot s holds image s % n)."""
    n = x.shape[1]
    return x.repeat(1, capacity // n, *([1] * (x.dim() - 2)))


class SuperposedClassifier(nn.Module):
    """Base class: ``forward`` maps images [B, n, C, H, W] to per-replica logits [B, N/n, n, classes].

    Replica r of image j sits in slot r*n + j. The averaged prediction is ``logits.mean(1)``.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config

    def check_width(self, n: int) -> None:
        """Raise ConfigError unless ``n`` divides the capacity."""
        if n not in self.config.widths:
            raise ConfigError(
                f"width {n} does not divide the capacity {self.config.capacity}: use one of {self.config.widths}"
            )

    def slot_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Images [B, n, C, H, W] -> logits per slot [B, N, classes]."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images [B, n, C, H, W] -> per-replica logits [B, N/n, n, classes]."""
        if x.dim() != 5:
            raise ConfigError(f"expected images shaped [batch, width, C, H, W], got {tuple(x.shape)}")
        n = int(x.shape[1])  # int(): constant under ONNX tracing (one graph per width), the batch stays dynamic
        self.check_width(n)
        logits = self.slot_logits(x)
        return logits.view(-1, self.config.capacity // n, n, self.config.num_classes)

    def regularizer(self) -> torch.Tensor:
        """Extra training loss of the architecture (zero unless overridden)."""
        return torch.zeros(())
