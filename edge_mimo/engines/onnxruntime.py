"""ONNX Runtime backend: one session per width over the bundle's FP32 or INT8 ONNX graphs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from ..bundle.manifest import Manifest, artifact_path
from ..errors import BackendUnavailableError, BundleIntegrityError
from .base import LoadOptions


def session_options(threads: int | None = None) -> ort.SessionOptions:
    """ONNX Runtime options for superposed passes: ``threads`` intra-op threads (None: ORT's choice), one pass at
    a time; the threads spin while a pass runs (no wake-up per operator) and stop as soon as it returns, so
    preprocessing and the caller have the cores between passes."""
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.add_session_config_entry("session.intra_op.allow_spinning", "1")
    options.add_session_config_entry("session.force_spinning_stop", "1")
    return options


def bundle_graphs(bundle: Path, manifest: Manifest, precision: str) -> dict[int, Path]:
    """The bundle's ``precision`` graph per width (the files are checked by :func:`~.factory.load_backend`)."""
    return {n: artifact_path(bundle, manifest.artifacts[n].graph(precision).file) for n in manifest.widths}


class OnnxRuntimeBackend:
    """ONNX Runtime sessions, one per width, loaded once. ``run`` is thread-safe (ORT sessions are)."""

    name = "onnxruntime"

    def __init__(self, graphs: dict[int, Path], threads: int | None = None, providers: list[str] | None = None,
                 input_chw: tuple[int, int, int] | None = None, capacity: int | None = None,
                 num_classes: int | None = None, precision: str = "int8", input_type: str = "tensor(float)") -> None:
        """``input_chw``, ``capacity``, ``num_classes``: what the manifest promises; a graph that disagrees is refused."""
        self.precision = precision
        options = session_options(threads)
        available = ort.get_available_providers()
        providers = providers or ["CPUExecutionProvider"]
        missing = [p for p in providers if p not in available]
        if missing:
            raise BackendUnavailableError(
                f"ONNX Runtime here lacks {missing} (available: {available}): "
                "pass providers it has, or install the matching onnxruntime build"
            )
        self.sessions = {}
        self.fixed_batch: dict[int, int | None] = {}
        for n, path in graphs.items():
            try:
                session = ort.InferenceSession(str(path), options, providers=providers)
            except Exception as e:  # ORT raises its own exception types for malformed graphs
                raise BundleIntegrityError(
                    f"ONNX Runtime cannot load {path.name} ({type(e).__name__}: {e}): recompile the bundle"
                ) from e
            inputs, outputs = session.get_inputs(), session.get_outputs()
            kinds = [(v.name, v.type) for v in inputs + outputs]
            if (len(inputs) != 1 or len(outputs) < 1 or inputs[0].type != input_type
                    or any(v.type != "tensor(float)" for v in outputs)):
                want = "uint8" if input_type == "tensor(uint8)" else "float32"
                raise BundleIntegrityError(
                    f"{path.name} has inputs/outputs {kinds}, expected one {want} input (the manifest's input "
                    "contract) and float32 logits: graph and manifest disagree, recompile the bundle")
            inp, outp = inputs[0], outputs[0]
            want_in = ["B", n, *(input_chw or ("C", "H", "W"))]
            want_out = ["B", capacity // n if capacity else "R", n, num_classes or "K"]
            for what, got, want in (("input", inp.shape, want_in), ("output", outp.shape, want_out)):
                if len(got) != len(want) or any(isinstance(g, int) and isinstance(w, int) and g != w
                                                 for g, w in zip(got, want)):
                    raise BundleIntegrityError(
                        f"{path.name} takes {what} {got}, expected {want} from the manifest: "
                        "graph and manifest disagree, recompile the bundle"
                    )
            self.sessions[n] = (session, inp.name, outp.name)
            self.fixed_batch[n] = inp.shape[0] if isinstance(inp.shape[0], int) else None

    @classmethod
    def load(cls, bundle: Path, manifest: Manifest, options: LoadOptions) -> OnnxRuntimeBackend:
        """Sessions over the bundle's ``options.precision`` graphs, checked against the manifest's shapes."""
        spec = manifest.input
        shape = (*spec.crop, 3) if spec.in_graph else (spec.channels, spec.height, spec.width_px)
        return cls(bundle_graphs(bundle, manifest, options.precision), threads=options.threads,
                   input_chw=shape, capacity=manifest.model.capacity, num_classes=manifest.model.num_classes,
                   precision=options.precision, input_type="tensor(uint8)" if spec.in_graph else "tensor(float)")

    def run(self, width: int, groups: np.ndarray) -> np.ndarray:
        """groups float32 [G, n, C, H, W] (uint8 [G, n, S_h, S_w, 3] for an in-graph bundle) -> per-replica
        logits [G, N/n, n, K]."""
        session, inp, out = self.sessions[width]
        fixed = self.fixed_batch[width]
        if fixed is None or fixed == len(groups):
            return session.run([out], {inp: groups})[0]
        pad = (-len(groups)) % fixed  # a fixed-batch graph: pad the last chunk, drop its outputs
        padded = np.concatenate([groups, np.repeat(groups[-1:], pad, axis=0)]) if pad else groups
        outs = [session.run([out], {inp: padded[i : i + fixed]})[0] for i in range(0, len(padded), fixed)]
        return np.concatenate(outs)[: len(groups)]

    def close(self) -> None:
        """Drop the sessions."""
        self.sessions = {}
