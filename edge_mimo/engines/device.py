"""Which NVIDIA GPU and TensorRT version this machine has (CUDA runtime calls through cuda-python).

Everything here imports ``tensorrt`` and ``cuda-python`` lazily: both are optional (``edge-mimo[tensorrt]``).
"""

from __future__ import annotations

from types import ModuleType

from ..errors import BackendUnavailableError

INSTALL_HINT = ("on a Jetson, JetPack ships TensorRT: add `pip install cuda-python` in the venv; elsewhere "
                "`pip install tensorrt cuda-python`; or use backend='onnxruntime' (`edge-mimo check` lists them)")


def cudart() -> ModuleType:
    """cuda-python's CUDA runtime module (its import path moved in cuda-python 12.6)."""
    try:
        from cuda.bindings import runtime  # cuda-python >= 12.6
    except ImportError:
        try:
            from cuda import cudart as runtime  # older cuda-python
        except ImportError:
            raise BackendUnavailableError(f"the TensorRT backend needs cuda-python: {INSTALL_HINT}") from None
    return runtime


def check(result):
    """cuda-python calls return (error, *values): raise on error, return the value(s)."""
    err, *values = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise BackendUnavailableError(f"CUDA call failed ({err}): check the GPU and driver (`nvidia-smi`)")
    if not values:
        return None
    return values[0] if len(values) == 1 else values


def tensorrt() -> ModuleType:
    """The ``tensorrt`` module, or BackendUnavailableError naming the extra to install."""
    try:
        import tensorrt as trt
    except ImportError as e:
        raise BackendUnavailableError(f"TensorRT is not installed ({e}): {INSTALL_HINT}") from None
    return trt


def gpu_available() -> bool:
    """True when tensorrt and cuda-python import and a CUDA device is visible."""
    try:
        tensorrt()
        return check(cudart().cudaGetDeviceCount()) > 0
    except BackendUnavailableError:
        return False


def compute_capability(device: int = 0) -> str:
    """The GPU's compute capability as 'major.minor' (e.g. '8.7' on Jetson Orin)."""
    rt = cudart()
    attr = rt.cudaDeviceAttr
    major = check(rt.cudaDeviceGetAttribute(attr.cudaDevAttrComputeCapabilityMajor, device))
    minor = check(rt.cudaDeviceGetAttribute(attr.cudaDevAttrComputeCapabilityMinor, device))
    return f"{major}.{minor}"


def device_identity() -> tuple[str, str]:
    """(compute capability, TensorRT version) of this machine; BackendUnavailableError without TensorRT or a GPU."""
    trt = tensorrt()
    if not gpu_available():
        raise BackendUnavailableError("no CUDA GPU is visible: build and run engines on the device that has one")
    return compute_capability(), trt.__version__
