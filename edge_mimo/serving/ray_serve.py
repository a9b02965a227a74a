"""Ray Serve: one bundle served over HTTP and Ray handles, calls from any callers packed into superposed passes.

Each replica loads the bundle once (a :class:`~edge_mimo.runtime.Runtime`). Calls are gathered by
``@serve.batch`` (up to ``max_batch_size`` calls, waiting at most ``batch_wait_ms`` for more) and classified
together by :func:`~edge_mimo.serving.packing.infer_requests`, so calls that share a policy share passes.

- HTTP: ``POST <route>`` with an encoded image (JPEG, PNG or BMP) as the body, optional query parameters
  ``policy`` and ``budget_ms``. 200 with the result as JSON (:meth:`StreamResult.to_dict` without ``stream``,
  plus ``passes`` = {width: passes} of the call it shared); ``{"ok": false, "error": ...}`` with 400 for a
  frame or option the caller got wrong (an image whose header claims more than ``max_pixels`` is refused
  before decoding), 413 for a body over ``max_body_mb``, 408 for one not sent within ``body_timeout_s``.
  An ingress deployment (:class:`MimoHttp`) reads and decodes bodies, so stalled uploads hold only its cheap
  slots, never the classifier's batch slots.
- Python, inside the cluster: ``handle.classify.remote(frame, policy=..., budget_ms=...).result()`` with an
  image array (HxWx3 BGR uint8) returns a :class:`StreamResult` (``stream`` None, ``error`` set for a bad frame).

The bundle path must exist on every node that runs a replica.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ray import serve
from ray.serve.handle import DeploymentHandle
from starlette.requests import ClientDisconnect, Request as HTTPRequest
from starlette.responses import JSONResponse

from ..bundle.manifest import Manifest
from ..engines import BACKENDS
from ..errors import ConfigError, EdgeMimoError, FrameError
from ..runtime import Runtime, StreamResult
from ..runtime.runtime import MAX_THREADS, check_threads
from ..runtime.scheduler import InferOptions
from .packing import DEFAULT_MAX_PIXELS, Request, decode_image, infer_requests, parse_budget

APP_NAME = "edge-mimo"
ROUTE = "/classify"
HTTP_MAX_ONGOING = 1000  # HTTP calls one ingress replica holds at once (reading, decoding or waiting)


@dataclass(frozen=True)
class ServeOptions:
    """How a bundle is deployed. ``replicas`` fixes the replica count; ``min_replicas``/``max_replicas``
    (both set) autoscale instead. ``threads``: ONNX Runtime threads per replica (default: ``num_cpus``).
    ``max_batch_size``: calls classified together (default: 4 x the capacity; a multiple of it, so full
    batches fill whole passes). ``batch_wait_ms``: how long the first call of a batch waits for more.
    HTTP limits per call: ``max_body_mb`` (413 above), ``max_pixels`` per image (400 above, from the header,
    before decoding), ``body_timeout_s`` to receive the body (408 after)."""

    replicas: int = 1
    min_replicas: int | None = None
    max_replicas: int | None = None
    num_cpus: float = 1.0
    threads: int | None = None
    max_batch_size: int | None = None
    batch_wait_ms: float = 5.0
    policy: str = "throughput"
    backend: str = "auto"
    max_body_mb: float = 16.0
    max_pixels: int = DEFAULT_MAX_PIXELS
    body_timeout_s: float = 10.0

    def check(self, capacity: int) -> ServeOptions:
        """These options with defaults resolved for a model of ``capacity``; ConfigError naming the fix."""
        InferOptions(self.policy)
        if self.backend not in BACKENDS:
            raise ConfigError(f"backend {self.backend!r} is unknown: choose one of {', '.join(BACKENDS)}")
        if (self.min_replicas is None) != (self.max_replicas is None):
            raise ConfigError("give both min_replicas and max_replicas to autoscale, or neither (fixed replicas)")
        if self.max_replicas is not None and not 0 <= self.min_replicas <= self.max_replicas >= 1:
            raise ConfigError(f"autoscaling needs 0 <= min_replicas <= max_replicas and max_replicas >= 1 "
                              f"(got {self.min_replicas}, {self.max_replicas})")
        if self.replicas < 1:
            raise ConfigError(f"replicas must be >= 1 (got {self.replicas})")
        if not (math.isfinite(self.num_cpus) and 0 < self.num_cpus <= MAX_THREADS):
            raise ConfigError(f"num_cpus must be a finite number in (0, {MAX_THREADS}] (got {self.num_cpus}): CPUs "
                              "reserved per replica")
        check_threads(self.threads)
        batch = self.max_batch_size or 4 * capacity
        if batch < 1 or batch % capacity:
            raise ConfigError(f"max_batch_size {batch} is not a positive multiple of the model's capacity "
                              f"{capacity}: pass a multiple such as {capacity}, {2 * capacity} or {4 * capacity}")
        if not 0 <= self.batch_wait_ms <= 1000:
            raise ConfigError(f"batch_wait_ms must be within 0..1000 (got {self.batch_wait_ms}): a few ms suit")
        self._check_http_limits()
        threads = self.threads if self.threads is not None else max(1, round(self.num_cpus))
        return dataclasses.replace(self, max_batch_size=batch, threads=threads)

    def _check_http_limits(self) -> None:
        """ConfigError for HTTP limits outside sane ranges."""
        if not (math.isfinite(self.max_body_mb) and 0 < self.max_body_mb <= 1024):
            raise ConfigError(f"max_body_mb must be in (0, 1024] (got {self.max_body_mb}): the largest body accepted")
        if not 1 <= self.max_pixels <= 2**30:  # 2**30: OpenCV's own limit
            raise ConfigError(f"max_pixels must be in 1..{2**30} (got {self.max_pixels}): pixels of the largest "
                              f"image decoded, e.g. {DEFAULT_MAX_PIXELS} (4096x4096)")
        if not (math.isfinite(self.body_timeout_s) and 0 < self.body_timeout_s <= 3600):
            raise ConfigError(f"body_timeout_s must be in (0, 3600] (got {self.body_timeout_s}): seconds a client "
                              "may take to send its body")

    def deployment_options(self) -> dict[str, Any]:
        """Keyword arguments of ``Deployment.options`` (replicas or autoscaling, CPUs, queue depth)."""
        batch = self.max_batch_size
        scale: dict[str, Any] = {"num_replicas": self.replicas}
        if self.min_replicas is not None:
            scale = {"autoscaling_config": {"min_replicas": self.min_replicas, "max_replicas": self.max_replicas,
                                            "target_ongoing_requests": batch}}
        # A replica must accept a full batch plus the next one filling up, or batches never fill.
        return {**scale, "max_ongoing_requests": 2 * batch, "ray_actor_options": {"num_cpus": self.num_cpus}}


def _http_status(result: StreamResult) -> int:
    """400 for what the caller can fix (FrameError, ConfigError: both ValueErrors), 500 for the server's faults."""
    if result.ok:
        return 200
    return 400 if isinstance(result.error, ValueError) else 500


def result_json(result: StreamResult) -> dict:
    """A result as the HTTP route returns it: ``to_dict`` without ``stream``, plus ``passes`` {width: passes}."""
    d = result.to_dict()
    del d["stream"]
    if result.timing is not None:
        d["passes"] = {str(n): p for n, p in result.timing.passes.items()}
    return d


@serve.deployment(name="MimoClassifier")
class MimoClassifier:
    """One replica: the bundle loaded once, calls batched into superposed passes (see the module doc)."""

    def __init__(self, bundle: str, options: ServeOptions) -> None:
        self.runtime = Runtime(bundle, backend=options.backend, threads=options.threads)
        self.policy = options.policy
        self._batch.set_max_batch_size(options.max_batch_size)
        self._batch.set_batch_wait_timeout_s(options.batch_wait_ms / 1e3)

    @serve.batch
    async def _batch(self, requests: list[Request]) -> list[StreamResult]:
        # Off the event loop, so the replica keeps taking calls (the next batch) while this one runs.
        return await asyncio.to_thread(infer_requests, self.runtime, requests)

    async def classify(self, frame: Any, policy: str | None = None, budget_ms: float | None = None) -> StreamResult:
        """Classify one image array (HxWx3 BGR uint8); the result's ``error`` is set for a bad frame or policy."""
        result = await self._batch(Request(frame, policy or self.policy, budget_ms))
        return dataclasses.replace(result, stream=None)


class BodyTooLargeError(FrameError):
    """An HTTP body over the server's limit."""


async def read_body(request: HTTPRequest, limit: int) -> bytes:
    """The request body; BodyTooLargeError once it passes ``limit`` bytes (a declared Content-Length at once)."""
    declared = request.headers.get("content-length", "")
    too_large = BodyTooLargeError(f"the body is over the server's limit of {limit} bytes: send a smaller image "
                                  "(or start the server with a larger --max-body-mb)")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def _error(status: int, message: str) -> JSONResponse:
    """An HTTP error answer: ``{"ok": false, "error": message}``."""
    return JSONResponse({"ok": False, "error": message}, status_code=status)


@serve.deployment(name="MimoHttp", max_ongoing_requests=HTTP_MAX_ONGOING, ray_actor_options={"num_cpus": 0})
class MimoHttp:
    """The ingress: reads and decodes HTTP bodies under the limits, then calls the classifier (see the module doc).
    ``classify`` forwards handle calls, so the application's handle works as the classifier's."""

    def __init__(self, classifier: DeploymentHandle, options: ServeOptions) -> None:
        self.classifier, self.options = classifier, options

    async def classify(self, frame: Any, policy: str | None = None, budget_ms: float | None = None) -> StreamResult:
        """:meth:`MimoClassifier.classify` of ``frame``."""
        return await self.classifier.classify.remote(frame, policy, budget_ms)

    async def __call__(self, http_request: HTTPRequest) -> JSONResponse:
        """The HTTP route: POST an encoded image; query parameters ``policy``, ``budget_ms``."""
        if http_request.method != "POST":
            return _error(405, f"{http_request.method} is not supported: POST an encoded image (JPEG or PNG) as "
                          "the request body")
        limits = self.options
        try:
            budget_ms = parse_budget(http_request.query_params.get("budget_ms"), "the query")
            body = await asyncio.wait_for(read_body(http_request, int(limits.max_body_mb * 2**20)),
                                          limits.body_timeout_s)
            frame = await asyncio.to_thread(decode_image, body, limits.max_pixels)
        except ClientDisconnect:  # nobody is left to read the answer
            return _error(400, "the client closed the connection before sending the whole body")
        except asyncio.TimeoutError:
            return _error(408, f"the body did not arrive within {limits.body_timeout_s} s: send it at once (or "
                          "start the server with a larger --body-timeout-s)")
        except BodyTooLargeError as e:
            return _error(413, f"{type(e).__name__}: {e}")
        except EdgeMimoError as e:
            return _error(400, f"{type(e).__name__}: {e}")
        result = await self.classify(frame, http_request.query_params.get("policy"), budget_ms)
        return JSONResponse(result_json(result), status_code=_http_status(result))


def build_app(bundle: str | Path, options: ServeOptions = ServeOptions()) -> serve.Application:
    """The Serve application of ``bundle`` (checked here: a missing or damaged bundle fails before deploying)."""
    bundle = Path(bundle).resolve()
    capacity = Manifest.load(bundle).model.capacity
    options = options.check(capacity)
    classifier = MimoClassifier.options(**options.deployment_options()).bind(str(bundle), options)
    return MimoHttp.options(num_replicas=options.max_replicas or options.replicas).bind(classifier, options)


def deploy(bundle: str | Path, options: ServeOptions = ServeOptions(), route_prefix: str | None = ROUTE,
           name: str = APP_NAME) -> DeploymentHandle:
    """Deploy ``bundle`` on the connected Ray cluster (``ray.init`` first; ``serve.start`` to choose the HTTP
    host and port) and return the handle once every replica is up. ``route_prefix`` None: handle only."""
    return serve.run(build_app(bundle, options), name=name, route_prefix=route_prefix)
