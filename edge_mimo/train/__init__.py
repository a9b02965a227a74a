"""Training and evaluation of superposed classifiers (needs the ``compile`` extra: torch)."""

from .evaluate import evaluate, predict_logits
from .recipe import TrainConfig, train

__all__ = ["TrainConfig", "train", "evaluate", "predict_logits"]
