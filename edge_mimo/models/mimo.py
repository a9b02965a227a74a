"""MIMO (Havasi et al., ICLR 2021): slots concatenated on channels into the first conv, one head per slot."""

from __future__ import annotations

import torch
from torch import nn

from .base import SuperposedClassifier, replicate
from .config import ModelConfig
from .wrn import WideResNetTrunk, init_weights


class MIMO(SuperposedClassifier):
    """First conv over N*C input channels -> WideResNet trunk -> dense N*classes, read as [B, N, classes]."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        c = config.stem_channels
        self.stem = nn.Sequential(
            nn.Conv2d(config.capacity * config.in_channels, c, 3, 1, 1, bias=False),
            nn.BatchNorm2d(c),
            nn.ReLU(inplace=True),
        )
        self.trunk = WideResNetTrunk(c, config.stage_widths, config.blocks_per_stage)
        self.heads = nn.Linear(self.trunk.out_features, config.capacity * config.num_classes)
        init_weights(self)

    def slot_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Images [B, n, C, H, W] -> logits per slot [B, N, classes]: slots concatenated on channels, one head per slot."""
        slots = replicate(x, self.config.capacity)  # [B, N, C, H, W]
        feats = self.trunk(self.stem(slots.flatten(1, 2)))
        # Slot-major: unit s*classes + k is slot s, class k.
        return self.heads(feats).view(x.shape[0], self.config.capacity, self.config.num_classes)
