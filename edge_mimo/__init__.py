"""edge-mimo: superposed (MIMO) image classifiers on edge devices."""

__version__ = "0.1.0"


def __getattr__(name: str):
    # Lazy, so that `import edge_mimo` stays light (no onnxruntime/OpenCV until the runtime is used).
    if name == "Runtime":
        from .runtime import Runtime

        return Runtime
    raise AttributeError(f"module 'edge_mimo' has no attribute {name!r}")
