"""MIMOConv (Menet et al., NeurIPS 2023): images bound to keys by circular convolution and summed."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from .base import SuperposedClassifier
from .config import ModelConfig
from .wrn import WideResNetTrunk, init_weights


def circulant(keys: torch.Tensor) -> torch.Tensor:
    """Keys [N, C] -> circulant matrices [N, C, C] with M[i, j] = key[(i - j) mod C].

    ``M @ x`` is the circular convolution of x with the key (HRR binding).
    """
    c = keys.shape[-1]
    i = torch.arange(c, device=keys.device)  # on the keys' device: no host copy per pass (nor in a CUDA graph)
    idx = (i[:, None] - i[None, :]) % c
    return keys[:, idx]


class KeyBinding(nn.Module):
    """Binding + superposition as one 1x1 convolution.

    Binding slot s is a per-pixel circular convolution of the C-vector with key s; the bound maps are
    summed over slots. Both steps are linear, so together they are one 1x1 conv from N*C to C channels
    whose weight is the N circulant matrices side by side. At width n < N image j fills slots j, j+n, ...,
    so its weight block is the sum of those slots' circulants: replication is folded into the weight.
    """

    def __init__(self, capacity: int, channels: int) -> None:
        super().__init__()
        self.capacity = capacity
        bound = 1.0 / math.sqrt(channels)  # the default init of the authors' Conv1d keys
        self.keys = nn.Parameter(torch.empty(capacity, channels).uniform_(-bound, bound))
        self.frozen: dict[int, torch.Tensor] = {}

    @contextmanager
    def freeze(self) -> Iterator[None]:
        """Within the block, the weights are precomputed constants (so exported graphs hold one plain Conv)."""
        with torch.no_grad():
            self.frozen = {n: self.weight(n) for n in range(1, self.capacity + 1) if self.capacity % n == 0}
        try:
            yield
        finally:
            self.frozen = {}

    @torch.no_grad()
    def fix_unitary(self, generator: torch.Generator) -> None:
        """Fixed keys instead of learned ones: random unitary keys (every Fourier coefficient of unit magnitude,
        random phase), whose circulants are orthogonal matrices, so binding keeps each image's energy."""
        c = self.keys.shape[1]
        phase = torch.rand(self.capacity, c // 2 + 1, generator=generator) * 2 * math.pi
        phase[:, 0] = 0.0  # real signal: the DC coefficient (and Nyquist, for even C) is +-1
        if c % 2 == 0:
            phase[:, -1] = 0.0
        self.keys.copy_(torch.fft.irfft(torch.polar(torch.ones_like(phase), phase), n=c))
        self.keys.requires_grad_(False)

    def weight(self, n: int) -> torch.Tensor:
        """The [C, n*C] matrix for width n."""
        if n in self.frozen:
            return self.frozen[n]
        mats = circulant(self.keys)  # [N, C, C]
        c = mats.shape[-1]
        folded = mats.view(self.capacity // n, n, c, c).sum(0)  # slot r*n+j -> image j
        return folded.permute(1, 0, 2).reshape(c, n * c)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """Stem features [B, n, C, H, W] -> superposed map [B, C, H, W]."""
        n, c, h, w = (int(d) for d in feats.shape[1:])  # int(): constants under ONNX tracing, batch stays dynamic
        return F.conv2d(feats.reshape(-1, n * c, h, w), self.weight(n)[:, :, None, None])

    def regularizer(self) -> torch.Tensor:
        """Push keys to unit norm and mutual orthogonality: ||K K^T - I||_F^2."""
        gram = self.keys @ self.keys.t()
        return ((gram - torch.eye(self.capacity, device=gram.device)) ** 2).sum()


class MIMOConv(SuperposedClassifier):
    """Shared stem per image -> key binding + sum -> WideResNet trunk -> unbinding -> shared classifier."""

    key_loss_weight = 0.1

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        c, n_slots = config.stem_channels, config.capacity
        self.stem = nn.Sequential(
            nn.Conv2d(config.in_channels, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True)
        )
        self.binding = KeyBinding(n_slots, c)
        self.trunk = WideResNetTrunk(c, config.stage_widths, config.blocks_per_stage)
        f = self.trunk.out_features
        self.unbind = nn.Linear(f, n_slots * f)
        self.classifier = nn.Linear(f, config.num_classes)
        init_weights(self)

    def slot_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Images [B, n, C, H, W] -> logits per slot [B, N, classes]: bind, superpose, trunk, unbind, classify."""
        n = int(x.shape[1])  # int() keeps reshapes constant under ONNX tracing; the batch stays dynamic (-1)
        stem = self.stem(x.reshape(-1, *(int(d) for d in x.shape[2:])))
        stem = stem.view(-1, n, *(int(d) for d in stem.shape[1:]))
        feats = self.trunk(self.binding(stem))
        slots = F.relu(self.unbind(feats)).view(-1, self.config.capacity, self.trunk.out_features)
        return self.classifier(slots)

    def regularizer(self) -> torch.Tensor:
        """The weighted key loss (unit norm, mutual orthogonality)."""
        return self.key_loss_weight * self.binding.regularizer()
