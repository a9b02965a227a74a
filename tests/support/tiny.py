"""A tiny MIMOConv model (random weights, N=4) and a compile of it that exports each width once per test module:
the compile pipeline's gate and the runtime's manifest handling can then be tested in seconds, with the logits the
gate sees (or the backend returns) chosen by the test, the independent reference."""

from __future__ import annotations

import shutil
from pathlib import Path

TINY = dict(capacity=4, depth=10, widen=1, stem_channels=8, base_width=8)


def tiny_model_dir(root: Path) -> Path:
    import torch

    from edge_mimo.models import ModelConfig, build_model
    from edge_mimo.models.default import DEFAULT_MODEL_DIR
    from edge_mimo.models.weights import load_model, save_model

    shipped = load_model(DEFAULT_MODEL_DIR).config  # its classes and normalisation
    torch.manual_seed(0)
    model = build_model(ModelConfig(**TINY, class_names=shipped.class_names, mean=shipped.mean, std=shipped.std))
    return save_model(model.eval(), root / "tiny-model")


class ExportOnce:
    """A stand-in for ``edge_mimo.export.export_width`` that exports each width of the tiny model once and copies
    the graph afterwards (the real exporter takes seconds per width on a loaded machine)."""

    def __init__(self, real, root: Path) -> None:
        self.real, self.root, self.done = real, root, {}

    def __call__(self, model, n, path):
        if n not in self.done:
            self.done[n] = self.root / f"width{n}.onnx"
            self.real(model, n, self.done[n])
        shutil.copyfile(self.done[n], path)
        return Path(path)
