"""TensorRT execution of per-width plan files (TensorRT 10/11 name-based API, cuda-python for buffers).

Written against NVIDIA's documented Python API; it runs only where ``tensorrt``, ``cuda-python`` and an NVIDIA
GPU are present (``pip install 'edge-mimo[tensorrt]'`` on the device). Which plan fits this GPU and TensorRT
version is decided by the caller; a plan TensorRT refuses to deserialize raises EngineMismatchError.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import BackendUnavailableError, EngineMismatchError


def _cudart():
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError:
        try:
            from cuda import cudart  # older cuda-python
        except ImportError:
            raise BackendUnavailableError(
                "the TensorRT backend needs cuda-python: `pip install 'edge-mimo[tensorrt]'`, or use backend='onnxruntime'"
            ) from None
    return cudart


def _check(result):
    """cuda-python calls return (error, *values): raise on error, return the values."""
    err, *values = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise BackendUnavailableError(f"CUDA call failed ({err}): check the GPU and driver (`nvidia-smi`)")
    return values[0] if len(values) == 1 else values


def gpu_available() -> bool:
    """True when tensorrt and cuda-python import and a CUDA device is visible."""
    try:
        import tensorrt  # noqa: F401

        return _check(_cudart().cudaGetDeviceCount()) > 0
    except (ImportError, BackendUnavailableError):
        return False


def compute_capability(device: int = 0) -> str:
    """The GPU's compute capability as 'major.minor' (e.g. '8.7' on Jetson Orin)."""
    cudart = _cudart()
    major = _check(cudart.cudaDeviceGetAttribute(cudart.cudaDeviceAttr.cudaDevAttrComputeCapabilityMajor, device))
    minor = _check(cudart.cudaDeviceGetAttribute(cudart.cudaDeviceAttr.cudaDevAttrComputeCapabilityMinor, device))
    return f"{major}.{minor}"


class _Engine:
    def __init__(self, trt, runtime, path: Path, cudart) -> None:
        engine = runtime.deserialize_cuda_engine(path.read_bytes())
        if engine is None:
            raise EngineMismatchError(
                f"TensorRT {trt.__version__} cannot load {path.name} (built for another GPU or TensorRT version): "
                "rebuild the engines on this device with `edge-mimo build-engines BUNDLE`"
            )
        self.engine, self.context = engine, engine.create_execution_context()
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        self.input = next(n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT)
        self.output = next(n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT)
        self.max_batch = int(engine.get_tensor_profile_shape(self.input, 0)[2][0])
        in_shape = list(engine.get_tensor_shape(self.input))
        out_shape = list(engine.get_tensor_shape(self.output))
        in_shape[0] = out_shape[0] = self.max_batch
        self.out_tail = tuple(out_shape[1:])
        self.d_in = _check(cudart.cudaMalloc(int(np.prod(in_shape)) * 4))
        self.d_out = _check(cudart.cudaMalloc(int(np.prod(out_shape)) * 4))
        self.context.set_tensor_address(self.input, int(self.d_in))
        self.context.set_tensor_address(self.output, int(self.d_out))


class TensorRTBackend:
    """One engine and execution context per width. Not re-entrant: the Runtime serialises its passes."""

    name = "tensorrt"

    def __init__(self, plans: dict[int, Path]) -> None:
        try:
            import tensorrt as trt
        except ImportError:
            raise BackendUnavailableError(
                "TensorRT is not installed: `pip install 'edge-mimo[tensorrt]'` on the device, or use backend='onnxruntime'"
            ) from None
        self._cudart = _cudart()
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self._stream = _check(self._cudart.cudaStreamCreate())
        self.engines = {n: _Engine(trt, self._runtime, Path(p), self._cudart) for n, p in plans.items()}

    def run(self, width: int, groups: np.ndarray) -> np.ndarray:
        """groups float32 [G, n, C, H, W] -> per-replica logits [G, N/n, n, K]."""
        e, cudart = self.engines[width], self._cudart
        outs = []
        for i in range(0, len(groups), e.max_batch):
            x = np.ascontiguousarray(groups[i : i + e.max_batch], dtype=np.float32)
            e.context.set_input_shape(e.input, x.shape)
            out = np.empty((len(x),) + e.out_tail, np.float32)
            _check(cudart.cudaMemcpyAsync(e.d_in, x.ctypes.data, x.nbytes,
                                          cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, self._stream))
            if not e.context.execute_async_v3(self._stream):
                raise BackendUnavailableError(f"TensorRT failed to run width {width}: see the TensorRT log above")
            _check(cudart.cudaMemcpyAsync(out.ctypes.data, e.d_out, out.nbytes,
                                          cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost, self._stream))
            _check(cudart.cudaStreamSynchronize(self._stream))
            outs.append(out)
        return np.concatenate(outs)

    def close(self) -> None:
        for e in self.engines.values():
            self._cudart.cudaFree(e.d_in)
            self._cudart.cudaFree(e.d_out)
        self.engines = {}
