"""The default model shipped inside the package (torch-free)."""

from __future__ import annotations

from pathlib import Path

from .config import CONFIG_FILE

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent.parent / "default_model"


def resolve_model(spec: str | Path) -> Path:
    """'default' -> the shipped model directory; anything else is a model directory path."""
    path = DEFAULT_MODEL_DIR if str(spec) == "default" else Path(spec)
    if not (path / CONFIG_FILE).is_file():
        raise FileNotFoundError(f"{path} is not a model directory (no {CONFIG_FILE}): pass one written by `edge-mimo train`")
    return path
