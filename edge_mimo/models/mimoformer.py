"""MIMOFormer (after Menet et al., NeurIPS 2023): a transformer that runs on a superposition of images.

Each image is cut into patches and embedded on its own; slot s binds its tokens to a fixed random bipolar key
(element-wise product with a +1/-1 vector, "MAP" binding) and the bound token sequences are summed, so N images
become one sequence. The transformer blocks — linear (FAVOR+) attention with a ReLU random-feature kernel, and
the MLP — then run once on that sequence, in superposition. At the end, slot s is unbound by multiplying with its
key again (a bipolar key is its own inverse) and read out by a shared head.

Unbinding is exact only for one image: with several, ``key_s * sum_t key_t * x_t = x_s + sum_{t != s} (key_s *
key_t) * x_t``, where each foreign term is the other image scrambled by a random sign pattern — noise that is
uncorrelated with ``x_s`` (cosine ~ 0) and whose energy grows with the number of distinct images. The layers
learn to compute through that noise. Unlike the authors' code (bound per attention head, only the attention
shared), the whole network runs on the superposition here, so a pass of width n costs one sequence, not n.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError

from .base import SuperposedClassifier
from .config import ModelConfig

KEY_SEED = 1234  # the keys and random features are fixed buffers: drawn from their own seed, saved with the weights


def bipolar_keys(capacity: int, dim: int, seed: int = KEY_SEED) -> torch.Tensor:
    """Random +1/-1 keys [capacity, dim] (MAP binding: multiply to bind, multiply again to unbind)."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 2, (capacity, dim), generator=gen).float() * 2 - 1


def bind(tokens: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """Tokens [B, n, T, D] of n images -> one superposed sequence [B, T, D].

    Image j fills slots j, j+n, j+2n, ... (replication), so its effective key is the sum of those slots' keys:
    binding at width n equals binding the replicated images at width N.
    """
    n = tokens.shape[1]
    folded = keys.view(keys.shape[0] // n, n, keys.shape[1]).sum(0)  # [n, D]
    return (tokens * folded[None, :, None, :]).sum(1)


def unbind(x: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """Superposed features [B, ..., D] -> one copy per slot [B, N, ..., D], each multiplied by its key."""
    shape = (1, keys.shape[0]) + (1,) * (x.dim() - 2) + (keys.shape[1],)
    return x.unsqueeze(1) * keys.view(shape)


class FavorAttention(nn.Module):
    """Multi-head linear attention with the FAVOR+ ReLU kernel (Performer).

    ``phi(u) = relu(u W) / sqrt(m)`` with fixed random Gaussian features W [head_dim, m] (orthogonalised in
    blocks); attention = phi(Q) (phi(K)^T V) / (phi(Q) phi(K)^T 1): linear in the number of tokens, matrix
    products and elementwise ops only (exports to plain ONNX MatMul / Relu / Div).
    """

    def __init__(self, dim: int, heads: int, features: int, seed: int) -> None:
        super().__init__()
        if dim % heads:
            raise ConfigError(f"embed_dim {dim} is not divisible by heads {heads}")
        self.heads, self.head_dim = heads, dim // heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.register_buffer("features", _orthogonal_gaussian(self.head_dim, features, seed), persistent=True)

    def macs(self, inputs: tuple, output: torch.Tensor) -> int:
        """Multiply-accumulates of the feature maps and products (the projections are counted as Linear layers)."""
        b, t, _ = inputs[0].shape
        m = self.features.shape[1]
        return b * self.heads * t * m * (4 * self.head_dim + 1)  # q, k features; K^T V; Q (K^T V); normaliser

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, T, D] -> [B, T, D]."""
        t = int(x.shape[1])  # constant under ONNX tracing (fixed token count); the batch stays dynamic
        q, k, v = self.qkv(x).view(-1, t, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)  # [B, H, T, hd]
        scale = self.head_dim ** -0.25  # split 1/sqrt(hd) between queries and keys, as in softmax attention
        m = self.features.shape[1]
        qf = F.relu((q * scale) @ self.features) / math.sqrt(m)  # [B, H, T, m]
        kf = F.relu((k * scale) @ self.features) / math.sqrt(m)
        context = kf.transpose(-2, -1) @ v  # [B, H, m, hd]
        norm = qf @ kf.sum(-2, keepdim=True).transpose(-2, -1)  # [B, H, T, 1]
        out = (qf @ context) / (norm + 1e-6)
        return self.proj(out.transpose(1, 2).reshape(-1, t, self.heads * self.head_dim))


def _orthogonal_gaussian(dim: int, count: int, seed: int) -> torch.Tensor:
    """[dim, count] random features: blocks of orthogonal directions with chi-distributed norms (FAVOR+)."""
    gen = torch.Generator().manual_seed(seed)
    blocks = []
    for _ in range(math.ceil(count / dim)):
        q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=gen))
        norms = torch.randn(dim, dim, generator=gen).norm(dim=1)
        blocks.append(q * norms[None, :])
    return torch.cat(blocks, 1)[:, :count].contiguous()


class Block(nn.Module):
    """Pre-norm transformer block: x + attention(LN(x)); x + MLP(LN(x))."""

    def __init__(self, dim: int, heads: int, features: int, mlp_ratio: int, seed: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = FavorAttention(dim, heads, features, seed)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_ratio * dim), nn.ReLU(),
                                 nn.Linear(mlp_ratio * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


def patch_embedding(config: ModelConfig) -> nn.Module:
    """Images [M, C, H, W] -> token maps [M, D, H/p, W/p].

    "linear": one linear map per p x p patch (ViT). "conv": two 3x3 convolutions with ReLU down to the same grid
    (strides p/2 and 2, or p and 1 for odd p), then a 1x1 projection: a small convolutional stem, which copes
    better with objects that are shifted, scaled or tilted within the frame (Xiao et al., 2021).
    """
    d, p, c = config.embed_dim, config.patch_size, config.in_channels
    if config.embedding == "linear":
        return nn.Conv2d(c, d, p, p)
    first, second = (p // 2, 2) if p % 2 == 0 else (p, 1)
    width = max(16, d // 4)
    return nn.Sequential(nn.Conv2d(c, width, 3, first, 1), nn.ReLU(),
                         nn.Conv2d(width, 2 * width, 3, second, 1), nn.ReLU(), nn.Conv2d(2 * width, d, 1))


class MIMOFormer(SuperposedClassifier):
    """Patch embedding per image -> bipolar binding + sum -> transformer blocks -> unbinding -> shared head."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        d, p = config.embed_dim, config.patch_size
        if config.image_size % p:
            raise ConfigError(f"patch_size {p} does not divide image_size {config.image_size}")
        tokens = (config.image_size // p) ** 2
        self.embed = patch_embedding(config)
        self.pos = nn.Parameter(torch.randn(1, tokens, d) * 0.02)
        self.register_buffer("keys", bipolar_keys(config.capacity, d), persistent=True)
        self.blocks = nn.Sequential(*(Block(d, config.heads, config.random_features, config.mlp_ratio, KEY_SEED + 1 + i)
                                      for i in range(config.layers)))
        self.norm = nn.LayerNorm(d)
        self.head = nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Linear(d, config.num_classes))
        for mod in self.modules():
            if isinstance(mod, nn.Linear):
                nn.init.trunc_normal_(mod.weight, std=0.02)
                nn.init.zeros_(mod.bias)

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Images [B, n, C, H, W] -> tokens [B, n, T, D] (each image embedded on its own)."""
        n = int(x.shape[1])
        e = self.embed(x.reshape(-1, *(int(d) for d in x.shape[2:])))  # [B*n, D, h, w]
        e = e.flatten(2).transpose(1, 2) + self.pos
        return e.reshape(-1, n, *(int(d) for d in e.shape[1:]))

    def macs(self, inputs: tuple, output: torch.Tensor) -> int:
        """Multiply-accumulates of binding (one per bound token element) and unbinding (one per slot element)."""
        b, n = inputs[0].shape[:2]
        tokens = (self.config.image_size // self.config.patch_size) ** 2
        return b * (n * tokens + self.config.capacity) * self.config.embed_dim

    def slot_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Images [B, n, C, H, W] -> logits per slot [B, N, classes]."""
        z = self.blocks(bind(self.tokens(x), self.keys))
        pooled = self.norm(z).mean(1)  # [B, D]: pooling commutes with the (linear) unbinding
        return self.head(unbind(pooled, self.keys))
