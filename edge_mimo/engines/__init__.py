"""Inference backends behind one interface (:class:`Backend`: load, run, close).

ONNX Runtime runs a bundle's ONNX graphs directly; TensorRT runs plans built on the device from its INT8
Q/DQ graphs (:mod:`.plans`). :func:`load_backend` picks one for a bundle and this machine.
"""

from .base import Backend, LoadOptions
from .device import gpu_available
from .factory import BACKENDS, PRECISIONS, choose_backend, choose_precision, load_backend
from .onnxruntime import OnnxRuntimeBackend, session_options
from .plans import PlanCache, build_bundle_engines
from .tensorrt import TensorRTBackend

__all__ = ["BACKENDS", "PRECISIONS", "Backend", "LoadOptions", "OnnxRuntimeBackend", "PlanCache", "TensorRTBackend",
           "build_bundle_engines", "choose_backend", "choose_precision", "gpu_available", "load_backend",
           "session_options"]
