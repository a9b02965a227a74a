"""A plain (non-superposed) classifier with the same stem and trunk: the baseline MIMO has to beat."""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from .base import SuperposedClassifier
from .config import ModelConfig
from .wrn import WideResNetTrunk, init_weights


class PlainWRN(SuperposedClassifier):
    """Stem conv3x3-BN-ReLU -> the same pre-activation WideResNet trunk -> linear head, one image per pass.

    It is a capacity-1 member of the family (``arch="plain"``; input [B, 1, C, H, W], logits [B, 1, 1, classes]),
    so it trains, exports, quantizes and runs through the same code as the superposed models.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(dataclasses.replace(config, arch="plain", capacity=1))
        c = config.stem_channels
        self.stem = nn.Sequential(nn.Conv2d(config.in_channels, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c),
                                  nn.ReLU(inplace=True))
        self.trunk = WideResNetTrunk(c, config.stage_widths, config.blocks_per_stage)
        self.head = nn.Linear(self.trunk.out_features, config.num_classes)
        init_weights(self)

    def slot_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Images [B, 1, C, H, W] -> logits [B, 1, classes] (one slot: no superposition)."""
        return self.head(self.trunk(self.stem(x[:, 0])))[:, None]
