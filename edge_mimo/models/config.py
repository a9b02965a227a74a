"""Model description stored next to the weights (``config.json``). Torch-free."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from ..errors import ConfigError

CONFIG_FILE = "config.json"  # a model directory: this, the weights and (after training) the training record
WEIGHTS_FILE = "model.safetensors"
TRAINING_FILE = "training.json"

ARCHITECTURES = ("mimoconv", "mimo", "mixmo", "plain", "mimoformer")
# Optimizers of the training recipe -> their default (peak learning rate, weight decay). The convolutional models
# train with SGD + Nesterov momentum as in MIMONets; the transformer with AdamW, as transformers usually are.
OPTIMIZERS = {"sgd": (0.1, 5e-4), "adamw": (2e-3, 0.05)}


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a model and to feed it images.

    ``capacity`` is N, the number of slots; a pass of width n (a divisor of N) holds n distinct images,
    each in N/n replica slots.
    """

    arch: str = "mimoconv"
    capacity: int = 4
    in_channels: int = 1
    image_size: int = 28
    num_classes: int = 10
    class_names: tuple[str, ...] = ()
    mean: tuple[float, ...] = (0.2860,)
    std: tuple[float, ...] = (0.3530,)
    stem_channels: int = 32
    depth: int = 10
    widen: int = 4
    base_width: int = 16
    # MIMOFormer (arch "mimoformer") only: patches, token width, attention heads, FAVOR+ random features per head,
    # transformer blocks and the MLP's expansion. The WideResNet fields above are unused by it, and these by the rest.
    patch_size: int = 4
    embedding: str = "conv"  # a small "conv" stem down to the patch grid, or "linear" patches (ViT)
    embed_dim: int = 128
    heads: int = 4
    random_features: int = 64
    layers: int = 4
    mlp_ratio: int = 2

    def __post_init__(self) -> None:
        if self.arch not in ARCHITECTURES:
            raise ConfigError(f"unknown architecture {self.arch!r}: choose one of {', '.join(ARCHITECTURES)}")
        if self.capacity < 1:
            raise ConfigError(f"capacity must be >= 1, got {self.capacity}")
        if self.arch == "plain" and self.capacity != 1:
            raise ConfigError(f"a plain network takes one image per pass: capacity must be 1, got {self.capacity}")
        if self.arch != "mimoformer" and (self.depth - 4) % 6:
            raise ConfigError(f"WideResNet depth must be 6k+4 (10, 16, 22, 28), got {self.depth}")
        if self.embedding not in ("linear", "conv"):
            raise ConfigError(f"embedding {self.embedding!r} is unknown: choose 'linear' or 'conv'")
        if self.arch == "mimoformer" and (self.image_size % self.patch_size or self.embed_dim % self.heads):
            raise ConfigError(f"MIMOFormer needs patch_size dividing image_size ({self.patch_size}, {self.image_size}) "
                              f"and heads dividing embed_dim ({self.heads}, {self.embed_dim})")
        if len(self.mean) != self.in_channels or len(self.std) != self.in_channels:
            raise ConfigError("mean and std need one value per input channel")
        if self.class_names and len(self.class_names) != self.num_classes:
            raise ConfigError(f"{len(self.class_names)} class names for {self.num_classes} classes")

    @property
    def body(self) -> str:
        """The network between binding and unbinding, in words: "WRN-16-4" or "transformer 4x128, 7x7 patches"."""
        if self.arch == "mimoformer":
            stem = " (conv stem)" if self.embedding == "conv" else ""
            return f"transformer {self.layers}x{self.embed_dim}, {self.patch_size}x{self.patch_size} patches{stem}"
        return f"WRN-{self.depth}-{self.widen}"

    @property
    def widths(self) -> tuple[int, ...]:
        """Superposition widths this model can run: the divisors of its capacity."""
        return tuple(n for n in range(1, self.capacity + 1) if self.capacity % n == 0)

    @property
    def stage_widths(self) -> tuple[int, int, int]:
        """Channels of the three WideResNet stages."""
        w = self.base_width * self.widen
        return (w, 2 * w, 4 * w)

    @property
    def blocks_per_stage(self) -> int:
        """Pre-activation blocks per stage: (depth - 4) / 6."""
        return (self.depth - 4) // 6

    @property
    def feature_dim(self) -> int:
        """Features after global pooling (the last stage's channels)."""
        return self.stage_widths[-1]

    def to_dict(self) -> dict:
        """A JSON-ready dict (tuples as lists)."""
        d = asdict(self)
        for k, v in d.items():
            if isinstance(v, tuple):
                d[k] = list(v)
        return d

    @classmethod
    def from_dict(cls, data: dict) -> "ModelConfig":
        """The config of a :meth:`to_dict` dict; unknown keys raise ConfigError."""
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"unknown model config keys {sorted(unknown)}: is this config from a newer edge-mimo?")
        kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        return cls(**kwargs)

    def save(self, path: str | Path) -> None:
        """Write the config as JSON to ``path``."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "ModelConfig":
        """Read a config written by :meth:`save` (ConfigError for a file that is no JSON object)."""
        try:
            data = json.loads(Path(path).read_text())
        except (UnicodeDecodeError, ValueError, RecursionError) as e:
            raise ConfigError(f"{path} is not a model config ({type(e).__name__}: {str(e)[:200]}): pass a model "
                              "directory written by `edge-mimo train`") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path} is not a model config (not a JSON object): pass a model directory written by "
                              "`edge-mimo train`")
        return cls.from_dict(data)


FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)


def default_fashion_mnist_config(**overrides) -> ModelConfig:
    """The configuration of the shipped default model."""
    base = dict(class_names=FASHION_MNIST_CLASSES)
    base.update(overrides)
    return ModelConfig(**base)


__all__ = ["ModelConfig", "ARCHITECTURES", "OPTIMIZERS", "FASHION_MNIST_CLASSES", "default_fashion_mnist_config"]
