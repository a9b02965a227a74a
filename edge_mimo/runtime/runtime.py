"""``Runtime``: load a bundle once, classify one frame per stream in as few superposed passes as possible."""

from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path
from typing import Hashable, Mapping, Sequence

import numpy as np

from ..bundle.manifest import Manifest
from ..engines import BACKENDS, PRECISIONS, load_backend
from ..engines.base import DEFAULT_PLAN_CACHE, Backend
from ..errors import BackendUnavailableError, BundleError, ConfigError
from .batching import pack
from . import preprocess
from .preprocess import Normalizer, PreparedFrame, check_roi, prepare_batch
from .results import StreamResult, Timing, frame_statistics
from .scheduler import InferOptions, Plan, gather, is_integer, min_replicas, plan

MAX_GROUPS_PER_RUN = 64  # bounds the memory of one backend call on very large frame lists


MAX_THREADS = 1024  # more intra-op threads than any machine has cores: ONNX Runtime fails to create them


def check_threads(threads: object) -> int | None:
    """ONNX Runtime intra-op threads as an int (None or 0: its choice); ConfigError outside 0..MAX_THREADS."""
    if threads is not None and not (is_integer(threads) and 0 <= threads <= MAX_THREADS):
        raise ConfigError(f"threads must be a whole number in 0..{MAX_THREADS} (0 or None: ONNX Runtime's choice), "
                          f"got {threads!r}")
    return None if threads is None else int(threads)


def _streams(frames) -> tuple[list, list]:
    """(stream ids, images) of ``frames``: a list/tuple (ids 0..M-1) or a mapping; anything else is refused."""
    if isinstance(frames, Mapping):
        return list(frames.keys()), list(frames.values())
    if isinstance(frames, np.ndarray) and frames.ndim in (2, 3):
        raise ConfigError(f"infer_many got one {frames.shape} image, not a list of frames: pass [frame] "
                          "(or a dict {stream: frame}), or call infer(frame)")
    if isinstance(frames, (list, tuple)) or (isinstance(frames, np.ndarray) and frames.ndim == 4):
        return list(range(len(frames))), list(frames)
    raise ConfigError(f"infer_many takes a list of frames or a dict {{stream: frame}}, not a "
                      f"{type(frames).__name__}: pass list(...) of your frames, or [frame] for one")


class Runtime:
    """A compiled bundle, ready to classify frames from several streams at once.

    ``backend``: "onnxruntime" (CPU), "tensorrt" (NVIDIA GPU) or "auto" (TensorRT for a bundle compiled for a
    TensorRT target on a machine with TensorRT and a GPU, else ONNX Runtime). TensorRT uses the bundle's plans
    for this GPU and TensorRT version (``edge-mimo build-engines`` stores them there); plans it lacks are built
    into ``plan_cache`` on first load, with a warning saying where (``plan_cache=None``: refuse instead). Loading
    never writes into the bundle.
    ``precision``: "int8", "fp32" or "auto" (INT8 when the bundle has it; TensorRT runs INT8).
    ``threads``: ONNX Runtime intra-op threads (default: ORT's choice). ``resize`` overrides the bundle's
    resize mode ("center-crop", "stretch", "letterbox"). Every width is loaded once, so switching width or
    policy between calls costs nothing. A context manager: ``with Runtime(bundle) as rt:`` closes it on exit.
    ``engine``: a :class:`~edge_mimo.engines.base.Backend` already loaded for this bundle (e.g. Triton models
    called through BLS), used instead of loading one; the caller has checked the files it runs.

    Thread safety: any thread may call :meth:`infer_many`; preprocessing runs in the caller's thread, the
    passes of concurrent calls are serialised (one pass uses all the backend's threads), and no state is
    shared between calls except the per-width latency estimates used by ``budget_ms``.
    """

    def __init__(self, bundle: str | Path, backend: str = "auto", precision: str = "auto",
                 threads: int | None = None, resize: str | None = None, warmup: bool = True,
                 plan_cache: str | Path | None = DEFAULT_PLAN_CACHE, engine: Backend | None = None) -> None:
        if backend not in BACKENDS:
            raise ConfigError(f"backend {backend!r} is unknown: choose one of {', '.join(BACKENDS)}")
        if precision not in PRECISIONS:
            raise ConfigError(f"precision {precision!r} is unknown: choose one of {', '.join(PRECISIONS)}")
        threads = check_threads(threads)
        self.manifest = Manifest.load(bundle)  # first: it refuses what is no bundle path (None, NUL, too long)
        self.bundle = Path(bundle)
        m = self.manifest
        self.capacity = m.model.capacity
        self.num_classes = m.model.num_classes
        self.class_names = m.class_names
        self.widths = tuple(sorted(m.widths))
        # the bundle's input contract (InputSpec checks the resize override); for in-graph bundles (crop-uint8)
        # the runtime hands the graphs the uint8 crop only
        self.spec = dataclasses.replace(m.input, resize=resize) if resize is not None else m.input
        self.in_graph = self.spec.in_graph
        self._normalize = Normalizer(self.spec)
        self.temperature = {n: m.temperature.get(n, 1.0) for n in self.widths}
        self.entropy_threshold = {n: u.entropy_threshold if (u := m.uncertainty.get(n)) else np.inf
                                  for n in self.widths}
        self._backend = engine or load_backend(self.bundle, m, backend, precision, threads, plan_cache)
        self.backend_name, self.precision = self._backend.name, self._backend.precision
        self._lock = threading.Lock()
        self._closed = False
        self._ms_per_group = {n: None for n in self.widths}
        if warmup:
            for n in self.widths:  # first runs are slow (allocation); also seeds the latency estimates
                x = np.zeros((1, n, *self.spec.tensor_shape), np.uint8 if self.in_graph else np.float32)
                self._backend.run(n, x)
                self._timed_run(n, x)

    # -- planning ------------------------------------------------------------------------------------------
    def estimate_ms(self, plan_: Plan) -> float:
        """Predicted inference time of a plan from the latencies measured so far (0 when nothing measured)."""
        return sum(len(gs) * (self._ms_per_group[n] or 0.0) for n, gs in plan_.by_width().items())

    def plan(self, count: int, policy: str = "throughput", budget_ms: float | None = None,
             width: int | None = None) -> Plan:
        """The groups :meth:`infer_many` would run for ``count`` frames (see :mod:`edge_mimo.runtime.scheduler`).

        With ``budget_ms``, the policy's replica target is lowered step by step until the predicted inference
        time fits (never below one replica: frames are never dropped to meet a budget).
        """
        InferOptions(policy, budget_ms, width)  # checks them (the same check as the live loop and the servers)
        if width is not None:
            return plan(count, self.capacity, self.widths, width=int(width))
        target = min_replicas(policy, self.capacity)
        levels = sorted({self.capacity // n for n in self.widths if self.capacity // n <= target} | {1}, reverse=True)
        for level in levels:
            candidate = plan(count, self.capacity, self.widths, replicas=level)
            if budget_ms is None or self.estimate_ms(candidate) <= budget_ms:
                return candidate
        return candidate

    # -- inference -----------------------------------------------------------------------------------------
    def _timed_run(self, n: int, x: np.ndarray) -> np.ndarray:
        outs = []
        start = time.perf_counter()
        for i in range(0, len(x), MAX_GROUPS_PER_RUN):
            outs.append(self._backend.run(n, x[i : i + MAX_GROUPS_PER_RUN]))
        per_group = (time.perf_counter() - start) * 1e3 / len(x)
        old = self._ms_per_group[n]
        self._ms_per_group[n] = per_group if old is None else 0.8 * old + 0.2 * per_group
        return np.concatenate(outs)

    def infer_many(self, frames: Sequence | Mapping[Hashable, object], policy: str = "throughput",
                   budget_ms: float | None = None, width: int | None = None,
                   rois: Sequence | Mapping | None = None) -> list[StreamResult] | dict[Hashable, StreamResult]:
        """Classify one frame per stream; results come back in the same order (a dict for a dict).

        ``frames``: images as OpenCV gives them (HxWx3 BGR uint8; gray, BGRA, uint16, float 0..1 accepted),
        :class:`edge_mimo.streams.Frame` objects (used as their reader thread prepared them, if it did) or
        :class:`PreparedFrame` objects from :meth:`prepare`, as a list (stream ids 0..M-1) or a dict {stream id: frame}
        (``StreamMux.read()`` gives one). ``policy``: "throughput" (fewest passes),
        "balanced" (at least 2 replicas per frame) or "robust" (the full ensemble per frame), see
        :mod:`edge_mimo.runtime.scheduler`. ``budget_ms``: cap on predicted inference time (lowers replicas).
        ``width``: force one width (benchmarks, evaluation). ``rois``: per-stream (x, y, width, height) crop,
        aligned with ``frames`` (a list, None entries allowed) or keyed like it.
        A bad frame gets a result with ``error`` set; the other frames are still classified.
        """
        start = time.perf_counter()
        if self._closed:
            raise BackendUnavailableError("this Runtime was closed: create a new Runtime(bundle) to infer again")
        keys, images = _streams(frames)
        roi_list = self._roi_list(rois, keys, isinstance(frames, Mapping))
        batch, good, errors = prepare_batch(images, self.spec, roi_list)
        x = batch if self.in_graph else self._normalize(batch)
        t_pre = time.perf_counter()
        schedule = self.plan(len(good), policy, budget_ms, width)
        outputs = {}
        with self._lock:
            if self._closed:
                raise BackendUnavailableError("this Runtime was closed: create a new Runtime(bundle) to infer again")
            for n, groups in pack(x, schedule).items():
                outputs[n] = self._timed_run(n, groups)
        t_inf = time.perf_counter()
        results = self._results(schedule, outputs, len(good))
        t_end = time.perf_counter()
        timing = Timing((t_pre - start) * 1e3, (t_inf - t_pre) * 1e3, (t_end - t_inf) * 1e3,
                        (t_end - start) * 1e3, schedule.cost,
                        {n: len(gs) for n, gs in schedule.by_width().items()})
        by_index = dict(zip(good, results))
        out = [StreamResult(stream=k, timing=timing, **by_index[i]) if i in by_index
               else StreamResult(stream=k, timing=timing, error=errors[i]) for i, k in enumerate(keys)]
        return dict(zip(keys, out)) if isinstance(frames, Mapping) else out

    def prepare(self, frame, roi: tuple[int, int, int, int] | None = None) -> PreparedFrame:
        """A frame (as :meth:`infer_many` takes it) -> model input for this Runtime, ready to be passed to
        :meth:`infer_many` later without preparing it again (raises FrameError for a bad frame). Thread-safe:
        cameras' reader threads call it (``StreamMux(..., prepare=...)``, :func:`edge_mimo.live.run`)."""
        roi = check_roi(roi) if roi is not None else None
        tensor = preprocess.prepare_frame(frame, self.spec, roi)
        image = preprocess.raw_image(frame)
        if isinstance(image, np.ndarray) and np.may_share_memory(tensor, image):
            tensor = tensor.copy()  # a frame already at model size (or an exact crop): never a view of the caller's buffer
        return PreparedFrame(tensor, self.spec, roi)

    def infer_in_calls(self, frames: Sequence, streams: int, **kwargs) -> list[StreamResult]:
        """Classify a long list of frames ``streams`` at a time, as that many cameras would deliver them (one
        :meth:`infer_many` call each, with ``kwargs``); results in order. For evaluations and studies."""
        if not (is_integer(streams) and streams >= 1):
            raise ConfigError(f"streams must be a whole number >= 1, got {streams!r}")
        results: list[StreamResult] = []
        for i in range(0, len(frames), streams):
            results += self.infer_many(list(frames[i : i + streams]), **kwargs)
        return results

    def infer(self, frame, **kwargs) -> StreamResult:
        """Classify a single frame (its own stream): ``infer_many([frame], ...)[0]``."""
        return self.infer_many([frame], **kwargs)[0]

    @staticmethod
    def _roi_list(rois, keys: list, keyed: bool) -> list | None:
        if rois is None:
            return None
        if not isinstance(rois, (Mapping, list, tuple)):
            raise ConfigError(f"rois must be a dict keyed like the frames or a list aligned with them, not a "
                              f"{type(rois).__name__}: e.g. rois={{'left': (x, y, w, h)}}")
        if isinstance(rois, Mapping):
            unknown = set(rois) - set(keys)
            if unknown:
                raise ConfigError(f"regions of interest for unknown streams {sorted(map(str, unknown))}: "
                                  "key them like the frames")
            return [check_roi(rois[k]) if rois.get(k) is not None else None for k in keys]
        if keyed or len(rois) != len(keys):
            raise ConfigError(f"rois do not match the {len(keys)} frames: pass a dict keyed like the frames, "
                              "or a list as long as the frame list (None where a stream has no region)")
        return [check_roi(r) if r is not None else None for r in rois]

    def _results(self, schedule: Plan, outputs: dict[int, np.ndarray], count: int) -> list[dict]:
        if count == 0:
            return []
        logits, owner = gather(schedule, outputs, count)
        frame_width = np.zeros(count, dtype=np.int64)
        for g in schedule.groups:
            frame_width[list(g.frames)] = g.width
        by_width = np.ones(max(self.widths) + 1)
        by_width[list(self.temperature)] = list(self.temperature.values())
        temps = by_width[frame_width[owner]]
        stats = frame_statistics(logits.astype(np.float64), owner, count, temps)
        probs = stats["probabilities"]
        classes = probs.argmax(1)
        confidence = probs[np.arange(count), classes].tolist()
        entropy, disagreement = stats["entropy"].tolist(), stats["disagreement"].tolist()
        widths, replicas = frame_width.tolist(), stats["replicas"].tolist()
        finite = np.isfinite(probs).all(1) & np.isfinite(stats["entropy"]) & np.isfinite(stats["disagreement"])
        broken = BundleError("the model gave non-finite outputs for this frame: the bundle's graphs or manifest "
                             "values are broken, recompile the bundle")
        return [dict(class_index=c, class_name=self.class_names[c], probabilities=probs[i], confidence=confidence[i],
                     entropy=entropy[i], disagreement=disagreement[i], replicas=replicas[i], width=widths[i],
                     uncertain=not entropy[i] <= self.entropy_threshold[widths[i]])
                if finite[i] else dict(error=broken, replicas=replicas[i], width=widths[i])
                for i, c in enumerate(classes.tolist())]

    def close(self) -> None:
        """Release the backend (sessions, TensorRT device buffers); the Runtime is unusable afterwards."""
        with self._lock:
            self._backend.close()
            self._closed = True

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def describe(self) -> dict:
        """What was loaded: backend, precision, widths, capacity, input spec, measured ms per group."""
        return {
            "bundle": str(self.bundle), "backend": self.backend_name, "precision": self.precision,
            "capacity": self.capacity, "widths": list(self.widths), "input": self.spec.__dict__,
            "in_graph": self.in_graph, "graph_input": list(self.spec.tensor_shape),
            "temperature": self.temperature, "entropy_threshold": self.entropy_threshold,
            "ms_per_group": dict(self._ms_per_group),
        }
