"""Save and load a model directory: ``config.json`` + ``model.safetensors`` (no pickle)."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..atomic import atomic_dir
from ..errors import NotFoundError
from . import build_model
from .base import SuperposedClassifier
from .config import CONFIG_FILE, WEIGHTS_FILE, ModelConfig
from .mimoconv import KeyBinding


def save_model(model: SuperposedClassifier, directory: str | Path) -> Path:
    """Write the model directory atomically (it appears complete or not at all)."""
    with atomic_dir(directory, marker=CONFIG_FILE) as tmp:
        model.config.save(tmp / CONFIG_FILE)
        state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
        save_file(state, str(tmp / WEIGHTS_FILE))
    return Path(directory)


def load_model(directory: str | Path) -> SuperposedClassifier:
    """Rebuild a model from its directory, in eval mode."""
    directory = Path(directory)
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        if not (directory / name).is_file():
            raise NotFoundError(f"{directory} has no {name}: pass a model directory written by `edge-mimo train`")
    model = build_model(ModelConfig.load(directory / CONFIG_FILE))
    model.load_state_dict(load_file(str(directory / WEIGHTS_FILE)))
    return model.eval()


def count_macs(model: SuperposedClassifier, width: int) -> int:
    """Multiply-accumulates of one pass at ``width``, per pass: convolutions, linear layers, and what modules with a
    ``macs(inputs, output)`` method compute beyond those (MIMOFormer's attention products and binding)."""
    cfg = model.config
    total = 0

    def hook(module, inputs, output):
        nonlocal total
        if isinstance(module, torch.nn.Conv2d):
            k = module.weight[0].numel()  # in/groups * kh * kw
            total += output.numel() * k
        elif isinstance(module, torch.nn.Linear):
            total += output.numel() * module.in_features
        elif isinstance(module, KeyBinding):  # a 1x1 conv from width*C to C channels
            total += output.numel() * width * cfg.stem_channels
        if hasattr(module, "macs"):
            total += module.macs(inputs, output)

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    try:
        with torch.no_grad():
            was_training = model.training
            model.eval()
            model(torch.zeros(1, width, cfg.in_channels, cfg.image_size, cfg.image_size))
            model.train(was_training)
    finally:
        for h in handles:
            h.remove()
    return total
