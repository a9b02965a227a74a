"""Pick and load the backend for a bundle on this machine."""

from __future__ import annotations

from pathlib import Path

from ..bundle.manifest import Manifest, verify_artifacts
from ..errors import BundleError, ConfigError
from .base import DEFAULT_PLAN_CACHE, Backend, LoadOptions
from .device import gpu_available
from .onnxruntime import OnnxRuntimeBackend
from .tensorrt import TensorRTBackend

BACKENDS = ("auto", "onnxruntime", "tensorrt")
PRECISIONS = ("auto", "int8", "fp32")
_CLASSES: dict[str, type[Backend]] = {"onnxruntime": OnnxRuntimeBackend, "tensorrt": TensorRTBackend}


def choose_backend(manifest: Manifest, backend: str = "auto", precision: str = "auto") -> str:
    """'auto' takes TensorRT for a bundle compiled for a TensorRT target on a machine with TensorRT and a GPU."""
    if backend not in BACKENDS:
        raise ConfigError(f"backend {backend!r} is unknown: choose one of {', '.join(BACKENDS)}")
    if backend == "onnxruntime":
        return "onnxruntime"
    if backend == "auto" and not (manifest.backend == "tensorrt" and precision != "fp32" and gpu_available()):
        return "onnxruntime"
    if precision == "fp32":
        raise ConfigError("TensorRT engines are built from the bundle's INT8 graphs: "
                          "use precision='int8' (or 'auto'), or backend='onnxruntime' for FP32")
    return "tensorrt"


def choose_precision(manifest: Manifest, precision: str = "auto", bundle: str | Path = "the bundle") -> str:
    """'auto' is INT8 when the bundle has an INT8 graph for every width, else FP32."""
    if precision not in PRECISIONS:
        raise ConfigError(f"precision {precision!r} is unknown: choose one of {', '.join(PRECISIONS)}")
    arts, widths = manifest.artifacts, sorted(manifest.widths)
    if precision == "auto":
        return "int8" if all(arts[n].int8 for n in widths) else "fp32"
    if not all(arts[n].graph(precision) for n in widths):
        raise BundleError(f"{bundle} has no {precision} graph for every width {widths}: "
                          f"pass precision='auto' or recompile the bundle with {precision}")
    return precision


def load_backend(bundle: str | Path, manifest: Manifest, backend: str = "auto", precision: str = "auto",
                 threads: int | None = None, plan_cache: str | Path | None = DEFAULT_PLAN_CACHE) -> Backend:
    """The backend that runs ``bundle`` here (see :func:`choose_backend`), every width loaded.

    Every file the manifest lists is sha256-checked first, used now or not: a copied bundle is whole or refused.
    ``plan_cache``: where TensorRT plans this device lacks are built (None: refuse instead of building).
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"precision {precision!r} is unknown: choose one of {', '.join(PRECISIONS)}")
    name = choose_backend(manifest, backend, precision)
    chosen = "int8" if name == "tensorrt" else choose_precision(manifest, precision, bundle)
    options = LoadOptions(chosen, threads, Path(plan_cache) if plan_cache is not None else None)
    verify_artifacts(bundle, manifest)
    return _CLASSES[name].load(Path(bundle), manifest, options)
