"""edge-mimo: superposed (MIMO) image classifiers on edge devices.

Run a compiled bundle on several camera streams::

    from edge_mimo import Runtime, StreamMux

    with Runtime("bundles/default-cpu-m4") as runtime, StreamMux({"left": 0, "right": "cam.mp4"}) as cameras:
        results = runtime.infer_many(cameras.read(timeout=0.1))

Compile one (needs the ``compile`` extra: torch, onnx)::

    from edge_mimo import CompileOptions, compile_bundle

    bundle, manifest = compile_bundle(CompileOptions(target="cpu", max_width=4))
"""

from importlib import import_module

from .errors import (
    AccuracyGateError,
    BackendUnavailableError,
    BundleError,
    BundleIntegrityError,
    BundleVersionError,
    CalibrationCacheError,
    ConfigError,
    DataError,
    EdgeMimoError,
    EngineBuildError,
    EngineMismatchError,
    ExportError,
    FrameError,
    StreamError,
)

__version__ = "0.1.0"

# Imported on first use: `import edge_mimo` loads neither torch (compile) nor onnxruntime / OpenCV (runtime).
_LAZY = {
    "Runtime": "edge_mimo.runtime",
    "StreamResult": "edge_mimo.runtime",
    "StreamMux": "edge_mimo.streams",
    "CompileOptions": "edge_mimo.compile.pipeline",
    "compile_bundle": "edge_mimo.compile.pipeline",
}

__all__ = [
    "Runtime", "StreamResult", "StreamMux", "CompileOptions", "compile_bundle",
    "EdgeMimoError", "ConfigError", "DataError", "BundleError", "BundleIntegrityError", "BundleVersionError",
    "EngineMismatchError", "EngineBuildError", "ExportError", "BackendUnavailableError", "CalibrationCacheError",
    "AccuracyGateError", "FrameError", "StreamError",
]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'edge_mimo' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
