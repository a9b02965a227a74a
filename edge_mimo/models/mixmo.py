"""MixMo (Ramé et al., ICCV 2021): a first conv per slot, features mixed by CutMix-style masks."""

from __future__ import annotations

import torch
from torch import nn

from .base import SuperposedClassifier, replicate
from .config import ModelConfig
from .wrn import WideResNetTrunk, init_weights


def rectangle_masks(batch: int, area: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Binary masks [B, 1, H, W], each a random axis-aligned rectangle covering about ``area`` of the map."""
    side = area.clamp(0, 1).sqrt()
    rh = (side * h).round().long().clamp(0, h)
    rw = (side * w).round().long().clamp(0, w)
    top = (torch.rand(batch) * (h - rh + 1).float()).long()
    left = (torch.rand(batch) * (w - rw + 1).float()).long()
    ys = torch.arange(h)[None, :]
    xs = torch.arange(w)[None, :]
    in_y = (ys >= top[:, None]) & (ys < (top + rh)[:, None])
    in_x = (xs >= left[:, None]) & (xs < (left + rw)[:, None])
    return (in_y[:, :, None] & in_x[:, None, :]).float()[:, None]


class MixMo(SuperposedClassifier):
    """Per-slot first convs -> mixing (sum at test, CutMix mask in training) -> trunk -> one head per slot.

    In training, ``mix_weights`` (set by :meth:`forward_train`) holds each slot's share of the mixed map, so the
    loss can weight each slot's cross-entropy by it.
    """

    def __init__(self, config: ModelConfig, dirichlet_alpha: float = 2.0) -> None:
        super().__init__(config)
        c, n_slots = config.stem_channels, config.capacity
        self.encoders = nn.ModuleList(
            nn.Sequential(nn.Conv2d(config.in_channels, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True))
            for _ in range(n_slots)
        )
        self.trunk = WideResNetTrunk(c, config.stage_widths, config.blocks_per_stage)
        self.heads = nn.Linear(self.trunk.out_features, n_slots * config.num_classes)
        self.alpha = dirichlet_alpha
        init_weights(self)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Images [B, n, C, H, W] -> each slot's own first-conv features [B, N, C, H, W]."""
        slots = replicate(x, self.config.capacity)
        return torch.stack([enc(slots[:, s]) for s, enc in enumerate(self.encoders)], 1)  # [B, N, C, H, W]

    def mix(self, feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """CutMix mixing: one random slot gets a rectangle of area w_k, the others share the rest.

        Returns the mixed map (scaled by N, like the linear sum at test) and the slots' shares [B, N].
        """
        b, n_slots, _, h, w = feats.shape
        shares = torch.distributions.Dirichlet(torch.full((n_slots,), self.alpha)).sample((b,))
        k = torch.randint(n_slots, (b,))
        area = shares[torch.arange(b), k]
        mask = rectangle_masks(b, area, h, w)  # [B, 1, H, W]
        weights = shares / (1 - area).clamp_min(1e-6)[:, None]
        weights[torch.arange(b), k] = 0.0
        outside = (feats * weights[:, :, None, None, None]).sum(1)
        inside = feats[torch.arange(b), k]
        mixed = n_slots * (mask * inside + (1 - mask) * outside)
        real_area = mask.mean((1, 2, 3))
        shares = weights * (1 - real_area)[:, None]
        shares[torch.arange(b), k] = real_area
        return mixed, shares

    def slot_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Images [B, n, C, H, W] -> logits per slot [B, N, classes]: CutMix-mixed in training, summed at test."""
        feats = self.encode(x)
        if self.training and x.shape[1] == self.config.capacity:
            mixed, self.mix_weights = self.mix(feats)
        else:
            mixed, self.mix_weights = feats.sum(1), None
        out = self.heads(self.trunk(mixed))
        return out.view(x.shape[0], self.config.capacity, self.config.num_classes)
