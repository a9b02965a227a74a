"""The superposed classifier family. ``ModelConfig`` is torch-free; the modules need torch."""

from .config import ARCHITECTURES, FASHION_MNIST_CLASSES, ModelConfig, default_fashion_mnist_config

__all__ = ["ARCHITECTURES", "FASHION_MNIST_CLASSES", "ModelConfig", "default_fashion_mnist_config", "build_model"]


def build_model(config: ModelConfig):
    """Instantiate the torch module a config describes."""
    from .mimo import MIMO
    from .mimoconv import MIMOConv
    from .mimoformer import MIMOFormer
    from .mixmo import MixMo
    from .plain import PlainWRN

    return {"mimoconv": MIMOConv, "mimo": MIMO, "mixmo": MixMo, "plain": PlainWRN, "mimoformer": MIMOFormer}[config.arch](config)
