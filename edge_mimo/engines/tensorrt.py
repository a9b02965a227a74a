"""TensorRT backend: runs one plan per width (TensorRT 10/11 name-based tensor API, cuda-python buffers).

Written against NVIDIA's documented Python API; it runs only where ``tensorrt``, ``cuda-python`` and an NVIDIA
GPU are present (``pip install 'edge-mimo[tensorrt]'`` on the device). Which plans it loads is decided by
:func:`edge_mimo.engines.plans.plans_for_device`; a plan TensorRT refuses to deserialize raises
EngineMismatchError.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import numpy as np

from ..bundle.manifest import Manifest
from ..errors import BackendUnavailableError, EngineMismatchError
from .base import LoadOptions
from .device import check, cudart, tensorrt
from .plans import PlanCache, plans_for_device


class _Engine:
    """One deserialized plan, its execution context and device buffers sized for its largest batch."""

    def __init__(self, trt: ModuleType, runtime, path: Path, rt: ModuleType) -> None:
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
        # a float32 input, or the uint8 crop of an in-graph bundle (TensorRT 10: a uint8 input feeds a Cast)
        self.in_dtype = np.uint8 if engine.get_tensor_dtype(self.input) == trt.DataType.UINT8 else np.float32
        self.d_in = check(rt.cudaMalloc(int(np.prod(in_shape)) * np.dtype(self.in_dtype).itemsize))
        self.d_out = check(rt.cudaMalloc(int(np.prod(out_shape)) * 4))
        self.context.set_tensor_address(self.input, int(self.d_in))
        self.context.set_tensor_address(self.output, int(self.d_out))


class TensorRTBackend:
    """One engine and execution context per width. Not re-entrant: the Runtime serialises its passes."""

    name = "tensorrt"
    precision = "int8"  # plans are built from the bundle's Q/DQ graphs

    def __init__(self, plans: dict[int, Path]) -> None:
        """``plans``: width -> plan file for this GPU and TensorRT version."""
        trt = tensorrt()
        self._rt = cudart()
        self._runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self._stream = check(self._rt.cudaStreamCreate())
        self.engines = {}
        try:
            for n, path in plans.items():
                self.engines[n] = _Engine(trt, self._runtime, Path(path), self._rt)
        except BaseException:
            self.close()
            raise

    @classmethod
    def load(cls, bundle: Path, manifest: Manifest, options: LoadOptions) -> TensorRTBackend:
        """This device's plans for the bundle: its own, else cached ones, else built into the cache."""
        if options.precision != "int8":
            raise BackendUnavailableError("TensorRT runs the bundle's INT8 graphs only: use precision='int8'")
        cache = PlanCache(options.plan_cache) if options.plan_cache is not None else None
        return cls(plans_for_device(bundle, manifest, cache))

    def run(self, width: int, groups: np.ndarray) -> np.ndarray:
        """groups float32 [G, n, C, H, W] (uint8 [G, n, S_h, S_w, 3] for an in-graph bundle) -> per-replica
        logits [G, N/n, n, K]."""
        e, rt = self.engines[width], self._rt
        outs = []
        for i in range(0, len(groups), e.max_batch):
            x = np.ascontiguousarray(groups[i : i + e.max_batch], dtype=e.in_dtype)
            e.context.set_input_shape(e.input, x.shape)
            out = np.empty((len(x),) + e.out_tail, np.float32)
            check(rt.cudaMemcpyAsync(e.d_in, x.ctypes.data, x.nbytes, rt.cudaMemcpyKind.cudaMemcpyHostToDevice,
                                     self._stream))
            if not e.context.execute_async_v3(int(self._stream)):
                raise BackendUnavailableError(f"TensorRT failed to run width {width}: see the TensorRT log above")
            check(rt.cudaMemcpyAsync(out.ctypes.data, e.d_out, out.nbytes, rt.cudaMemcpyKind.cudaMemcpyDeviceToHost,
                                     self._stream))
            check(rt.cudaStreamSynchronize(self._stream))
            outs.append(out)
        return np.concatenate(outs)

    def close(self) -> None:
        """Free the device buffers and the CUDA stream (idempotent)."""
        for e in self.engines.values():
            self._rt.cudaFree(e.d_in)
            self._rt.cudaFree(e.d_out)
        self.engines = {}
        if self._stream is not None:
            self._rt.cudaStreamDestroy(self._stream)
            self._stream = None
