"""Pre-activation WideResNet trunk, as in MIMONets (PReLU initialised at 0.5, no final BN/act)."""

from __future__ import annotations

import torch
from torch import nn


class PreActBlock(nn.Module):
    """BN -> PReLU -> conv3x3 -> BN -> PReLU -> conv3x3, plus an identity or 1x1-conv shortcut."""

    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_ch)
        self.act1 = nn.PReLU(init=0.5)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.act2 = nn.PReLU(init=0.5)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False)
        self.shortcut = None
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Conv2d(in_ch, out_ch, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """BN-act-conv twice, plus the (projected) input."""
        pre = self.act1(self.bn1(x))
        skip = x if self.shortcut is None else self.shortcut(pre)
        out = self.conv1(pre)
        out = self.conv2(self.act2(self.bn2(out)))
        return out + skip


class WideResNetTrunk(nn.Sequential):
    """Three stages of pre-activation blocks (strides 1, 2, 2), then global average pooling."""

    def __init__(self, in_ch: int, widths: tuple[int, int, int], blocks: int) -> None:
        layers: list[nn.Module] = []
        ch = in_ch
        for stage, width in enumerate(widths):
            for b in range(blocks):
                stride = 2 if stage > 0 and b == 0 else 1
                layers.append(PreActBlock(ch, width, stride))
                ch = width
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        super().__init__(*layers)
        self.out_features = ch


def init_weights(module: nn.Module) -> None:
    """He init for convolutions, as in the WideResNet reference code."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
