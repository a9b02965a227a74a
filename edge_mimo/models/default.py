"""The models shipped inside the package (torch-free): the default MIMOConv and a MIMOFormer."""

from __future__ import annotations

from pathlib import Path

from ..errors import NotFoundError

from .config import CONFIG_FILE

_PACKAGE = Path(__file__).resolve().parent.parent
DEFAULT_MODEL_DIR = _PACKAGE / "default_model"
MIMOFORMER_MODEL_DIR = _PACKAGE / "mimoformer_model"
SHIPPED_MODELS = {"default": DEFAULT_MODEL_DIR, "mimoformer": MIMOFORMER_MODEL_DIR}


def resolve_model(spec: str | Path) -> Path:
    """'default' or 'mimoformer' -> that shipped model's directory; anything else is a model directory path."""
    path = SHIPPED_MODELS.get(str(spec), Path(spec))
    if not (path / CONFIG_FILE).is_file():
        raise NotFoundError(f"{path} is not a model directory (no {CONFIG_FILE}): pass one written by "
                            f"`edge-mimo train`, or one of the shipped models: {', '.join(SHIPPED_MODELS)}")
    return path
