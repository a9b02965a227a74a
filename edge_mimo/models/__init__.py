"""The superposed classifier family. ``ModelConfig`` is torch-free; the modules need torch."""

from .config import ARCHITECTURES, FASHION_MNIST_CLASSES, ModelConfig, default_fashion_mnist_config

__all__ = ["ARCHITECTURES", "FASHION_MNIST_CLASSES", "ModelConfig", "default_fashion_mnist_config", "build_model",
           "plain_equivalent"]


def build_model(config: ModelConfig):
    """Instantiate the torch module a config describes."""
    from .mimo import MIMO
    from .mimoconv import MIMOConv
    from .mimoformer import MIMOFormer
    from .mixmo import MixMo
    from .plain import PlainWRN

    return {"mimoconv": MIMOConv, "mimo": MIMO, "mixmo": MixMo, "plain": PlainWRN, "mimoformer": MIMOFormer}[config.arch](config)


def plain_equivalent(config: ModelConfig):
    """The same network without superposition (one image per pass): the baseline superposition has to beat.

    A plain WideResNet with the model's stem and trunk, or for MIMOFormer the same transformer at capacity 1 (one
    key: binding is a fixed sign flip that the embedding absorbs).
    """
    import dataclasses

    if config.arch == "mimoformer":
        return build_model(dataclasses.replace(config, capacity=1))
    return build_model(dataclasses.replace(config, arch="plain", capacity=1))
