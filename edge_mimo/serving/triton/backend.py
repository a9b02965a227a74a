"""The packing model's logic inside Triton's Python backend: a batch of requests -> superposed passes -> responses.

``REPO/<name>/1/model.py`` (written by :func:`~edge_mimo.serving.triton.repo.export_repository`) only imports
:class:`TritonPythonModel` from here. Each request carries one frame or more (``image``: uint8 [k, H, W, 3], BGR);
all frames of the requests Triton hands over together go through :func:`~edge_mimo.serving.packing.infer_requests`,
so frames of different clients share superposed passes. A request whose frame, policy or budget is bad gets an
error response of its own; the others are answered normally.

``policy`` and ``budget_ms`` come from the model's config ``parameters`` and can be overridden per request
(request parameters ``{"policy": "robust", "budget_ms": 5}``). With ``engine_models`` set, the graphs run as
other Triton models called through BLS (:class:`~edge_mimo.serving.triton.bls.TritonModelsBackend`).
"""

from __future__ import annotations

import json
import re
import reprlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...errors import ConfigError, EdgeMimoError, FrameError
from ...runtime.runtime import MAX_THREADS
from ...runtime.scheduler import POLICIES, InferOptions
from ..packing import Request, infer_requests, parse_budget

INPUT = "image"
MODEL_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")  # a file in the model's 1/: no path, not . or ..
PARAMETER_FIX = "correct it in the model's config.pbtxt, or export the model again (edge-mimo export-triton --force)"
# (output name, Triton data type, numpy dtype, StreamResult field); probabilities are [K], the others [1].
OUTPUTS = (
    ("class_index", "TYPE_INT64", np.int64, "class_index"),
    ("class_name", "TYPE_STRING", np.object_, "class_name"),
    ("probabilities", "TYPE_FP32", np.float32, "probabilities"),
    ("confidence", "TYPE_FP32", np.float32, "confidence"),
    ("entropy", "TYPE_FP32", np.float32, "entropy"),
    ("disagreement", "TYPE_FP32", np.float32, "disagreement"),
    ("replicas", "TYPE_INT32", np.int32, "replicas"),
    ("width", "TYPE_INT32", np.int32, "width"),
    ("uncertain", "TYPE_BOOL", np.bool_, "uncertain"),
)


@dataclass(frozen=True)
class Settings:
    """The packing model's config ``parameters``, parsed (every value is a string in Triton's config)."""

    bundle: Path
    repository: Path
    policy: str = "throughput"
    budget_ms: float | None = None
    threads: int | None = None
    engine_models: dict[int, dict] | None = None  # width -> {"model", "files", "max_batch"}, for BLS

    @classmethod
    def from_config(cls, config: dict, version_dir: Path) -> "Settings":
        """Read ``config["parameters"]``; ``bundle`` is relative to the model's version folder unless absolute.

        A value that is not what ``export-triton`` writes (hand-edited) raises one ConfigError naming it.
        """
        params = {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}
        return cls(version_dir / (_parameter(params, "bundle", _bundle) or "bundle"), version_dir.parent.parent,
                   _parameter(params, "policy", _policy) or "throughput", _parameter(params, "budget_ms", _budget),
                   _parameter(params, "threads", _threads), _parameter(params, "engine_models", _engine_models))


def _parameter(params: dict[str, str], key: str, parse):
    """``parse(params[key])``, None when absent or empty; its ValueError becomes one ConfigError naming the key."""
    value = params.get(key) or ""
    try:
        return parse(value) if value else None
    except ValueError as e:
        raise ConfigError(f"config parameter {key}={reprlib.repr(value)} {e}: {PARAMETER_FIX}") from None


def _bundle(value: str) -> str:
    if "\0" in value:
        raise ValueError("is not a path")
    return value


def _policy(value: str) -> str:
    try:
        InferOptions(policy=value)  # the one check of a policy
    except ConfigError:
        raise ValueError(f"is not a policy (one of {', '.join(POLICIES)})") from None
    return value


def _budget(value: str) -> float:
    try:
        budget = float(value)
        InferOptions(budget_ms=budget)  # the one check of a budget: finite and > 0
    except (ValueError, ConfigError):
        raise ValueError("is not a number of milliseconds > 0") from None
    return budget


def _threads(value: str) -> int:
    if not (value.isascii() and value.isdigit() and int(value) <= MAX_THREADS):
        raise ValueError(f"is not a whole number in 0..{MAX_THREADS} (0: ONNX Runtime's choice)")
    return int(value)


def _engine_models(value: str) -> dict[int, dict]:
    """width -> {"model": name, "files": {file name: bundle artifact}, "max_batch": int}, as export-triton writes."""
    try:
        engines = json.loads(value)
    except ValueError:
        engines = None
    if not (isinstance(engines, dict) and engines and all(
            n.isascii() and n.isdigit() and _is_engine_entry(e) for n, e in engines.items())):
        raise ValueError('is not the JSON export-triton writes ({"<width>": {"model": ..., "files": {...}, '
                         '"max_batch": ...}, ...})')
    return {int(n): entry for n, entry in engines.items()}


def _is_engine_entry(entry) -> bool:
    return (isinstance(entry, dict) and set(entry) == {"model", "files", "max_batch"}
            and isinstance(entry["model"], str) and MODEL_NAME.fullmatch(entry["model"]) is not None
            and isinstance(entry["files"], dict) and len(entry["files"]) > 0
            and all(isinstance(a, str) and FILE_NAME.fullmatch(f) for f, a in entry["files"].items())
            and type(entry["max_batch"]) is int and entry["max_batch"] >= 1)


def parse_request(frames: np.ndarray | None, parameters: str, defaults: Settings) -> list[Request]:
    """One Triton request (its ``image`` tensor [k, H, W, 3] and parameters JSON) -> k packing Requests.

    Raises ConfigError for bad parameters and FrameError for a missing or empty image tensor.
    """
    params = json.loads(parameters or "{}")
    unknown = set(params) - {"policy", "budget_ms"}
    if unknown:
        raise ConfigError(f"unknown request parameter(s) {sorted(unknown)}: this model takes 'policy' and "
                          "'budget_ms'")
    policy = params.get("policy", defaults.policy)
    budget = parse_budget(params.get("budget_ms", defaults.budget_ms), "the request parameters")
    InferOptions(policy, budget)
    if frames is None or frames.ndim != 4 or len(frames) == 0:
        raise FrameError(f"the request's {INPUT!r} tensor must be uint8 [frames, height, width, 3]")
    return [Request(frame, policy, budget) for frame in frames]


def response_arrays(results) -> dict[str, np.ndarray]:
    """The output tensors of one request's frames (their StreamResults, all ok): name -> [k, ...] array."""
    out = {}
    for name, _, dtype, field in OUTPUTS:
        values = [getattr(r, field) for r in results]
        if name == "probabilities":
            out[name] = np.stack(values).astype(np.float32)
        elif name == "class_name":
            out[name] = np.array([[v.encode()] for v in values], dtype=np.object_)
        else:
            out[name] = np.array(values, dtype=dtype).reshape(-1, 1)
    return out


def run_batch(runtime, batch: list[tuple[np.ndarray | None, str]], defaults: Settings) -> list[dict | Exception]:
    """Triton requests as (image tensor, parameters JSON) -> per request its output arrays, or the error to send.

    All good frames of all requests go through one :func:`infer_requests` call (they share superposed passes).
    """
    frames: list[Request] = []
    spans: list[range | Exception] = []
    for tensor, parameters in batch:
        try:
            requests = parse_request(tensor, parameters, defaults)
        except (EdgeMimoError, ValueError) as e:  # ValueError: the parameters are not JSON
            spans.append(e)
            continue
        spans.append(range(len(frames), len(frames) + len(requests)))
        frames.extend(requests)
    results = infer_requests(runtime, frames)
    out: list[dict | Exception] = []
    for span in spans:
        if isinstance(span, Exception):
            out.append(span)
            continue
        mine = [results[i] for i in span]
        failed = next((r.error for r in mine if r.error is not None), None)
        out.append(failed if failed is not None else response_arrays(mine))
    return out


def open_runtime(settings: Settings):
    """The Runtime of the packing model: the bundle's graphs here, or the engine models through BLS."""
    from ...runtime import Runtime

    if settings.engine_models is None:
        return Runtime(settings.bundle, threads=settings.threads)
    from .bls import TritonModelsBackend, verify_engine_models

    manifest = verify_engine_models(settings.bundle, settings.repository, settings.engine_models)
    return Runtime(settings.bundle, engine=TritonModelsBackend(manifest, settings.engine_models), warmup=False)


class TritonPythonModel:
    """Triton's Python-backend interface (``initialize``, ``execute``, ``finalize``) for the packing model."""

    def initialize(self, args: dict) -> None:
        """Load the bundle named by the config (sha256-checked; a damaged bundle fails the model's load)."""
        config = json.loads(args["model_config"])
        version_dir = Path(args["model_repository"]) / args["model_version"]
        try:
            self.settings = Settings.from_config(config, version_dir)
            self.runtime = open_runtime(self.settings)
        except EdgeMimoError as e:
            raise type(e)(f"model {args['model_name']!r}: {e}") from None

    def execute(self, requests: list) -> list:
        """One response per request, in order; a bad request gets an error response, the others results."""
        import triton_python_backend_utils as pb_utils

        batch = []
        for request in requests:
            tensor = pb_utils.get_input_tensor_by_name(request, INPUT)
            batch.append((tensor.as_numpy() if tensor is not None else None, request.parameters()))
        try:
            outcomes = run_batch(self.runtime, batch, self.settings)
        except EdgeMimoError as e:  # the passes themselves failed (an engine model through BLS): every request
            outcomes = [e] * len(batch)
        responses = []
        for outcome in outcomes:
            if isinstance(outcome, Exception):
                message = f"{type(outcome).__name__}: {outcome}"
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(message)))
            else:
                responses.append(pb_utils.InferenceResponse(
                    output_tensors=[pb_utils.Tensor(name, array) for name, array in outcome.items()]))
        return responses

    def finalize(self) -> None:
        """Release the runtime's sessions."""
        self.runtime.close()
