"""What every server shares: requests from many clients -> superposed passes -> one result per request.

A server hands over whatever requests arrived together (Triton's ``execute(requests)``, Ray Serve's
``@serve.batch`` list). :func:`infer_requests` runs them with the runtime's own scheduler, in as few passes
as the requests' policies allow (requests that share a policy and budget share passes), and returns the
results in request order. A bad frame gets a result with ``error`` set; the other requests are unaffected.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..errors import ConfigError, FrameError
from ..runtime import Runtime, StreamResult
from ..runtime.scheduler import InferOptions


@dataclass(frozen=True)
class Request:
    """One client's frame and how to classify it. ``frame`` is an image (HxWx3 BGR uint8, as OpenCV gives)
    or whatever :meth:`Runtime.infer_many` accepts; ``budget_ms`` caps the predicted inference time."""

    frame: object
    policy: str = "throughput"
    budget_ms: float | None = None


def parse_budget(value, where: str) -> float | None:
    """``budget_ms`` as servers receive it (a number, a numeric string, or None) -> float or None; ConfigError
    naming ``where`` it came from otherwise. Range checks are :class:`InferOptions`'s."""
    if value is None or isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"budget_ms={value!r} in {where} is not a number: give milliseconds, e.g. 5") from None


def infer_requests(runtime: Runtime, requests: Sequence[Request]) -> list[StreamResult]:
    """Classify one frame per request; results in request order, ``stream`` = the request's index.

    Requests with the same (policy, budget) run in one :meth:`Runtime.infer_many` call, so their frames share
    superposed passes. A request with a bad policy or budget gets an error result of its own.
    """
    results: list[StreamResult | None] = [None] * len(requests)
    groups: dict[tuple, list[int]] = defaultdict(list)
    for i, r in enumerate(requests):
        try:
            InferOptions(r.policy, r.budget_ms)
        except ConfigError as e:
            results[i] = StreamResult(stream=i, error=e)
            continue
        groups[(r.policy, r.budget_ms)].append(i)
    for (policy, budget), idx in groups.items():
        out = runtime.infer_many({i: requests[i].frame for i in idx}, policy=policy, budget_ms=budget)
        for i in idx:
            results[i] = out[i]
    return results


def decode_image(data: bytes | bytearray | memoryview | np.ndarray) -> np.ndarray:
    """An encoded image (JPEG, PNG, BMP, ... bytes) -> HxWx3 BGR uint8; FrameError if it does not decode."""
    import cv2

    buf = np.frombuffer(bytes(data) if not isinstance(data, np.ndarray) else data.tobytes(), np.uint8)
    if buf.size == 0:
        raise FrameError("the request carried no image bytes: send an encoded image (JPEG or PNG)")
    image = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if image is None:
        raise FrameError(f"{buf.size} bytes that OpenCV cannot decode as an image: send JPEG, PNG or BMP bytes")
    return image
