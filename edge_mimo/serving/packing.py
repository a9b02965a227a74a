"""What every server shares: requests from many clients -> superposed passes -> one result per request.

A server hands over whatever requests arrived together (Triton's ``execute(requests)``, Ray Serve's
``@serve.batch`` list). :func:`infer_requests` runs them with the runtime's own scheduler, in as few passes
as the requests' policies allow (requests that share a policy and budget share passes), and returns the
results in request order. A bad frame gets a result with ``error`` set; the other requests are unaffected.
"""

from __future__ import annotations

import struct
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


DEFAULT_MAX_PIXELS = 4096 * 4096  # an image a server decodes: 16.8 MP, 48 MiB as BGR
_SOF = {*range(0xC0, 0xC4), *range(0xC5, 0xC8), *range(0xC9, 0xCC), *range(0xCD, 0xD0)}  # JPEG frame headers


def _jpeg_size(b: bytes) -> tuple[int, int] | None:
    """(width, height) from a JPEG's frame header, following the segments from the start; None if not found."""
    i = 2
    while i + 4 <= len(b) and b[i] == 0xFF:
        marker = b[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
        elif marker == 0x01 or 0xD0 <= marker <= 0xD7:  # segments without a length
            i += 2
        elif marker in _SOF:
            return (int.from_bytes(b[i + 7:i + 9], "big"), int.from_bytes(b[i + 5:i + 7], "big")) \
                if i + 9 <= len(b) else None
        elif marker in (0xD9, 0xDA):  # end of image, or scan data before any frame header
            return None
        else:
            i += 2 + int.from_bytes(b[i + 2:i + 4], "big")
    return None


def image_size(data: bytes) -> tuple[int, int]:
    """(width, height) of a JPEG, PNG or BMP image from its header, without decoding it; FrameError for
    anything else (OpenCV picks its decoder by these same signatures, so no other decoder ever runs)."""
    size = None
    if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR" and len(data) >= 24:
        size = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    elif data[:3] == b"\xff\xd8\xff":
        size = _jpeg_size(data)
    elif data[:2] == b"BM" and len(data) >= 26:
        fmt = "<HH" if int.from_bytes(data[14:18], "little") == 12 else "<ii"  # OS/2 core header: 16-bit sizes
        size = tuple(abs(v) for v in struct.unpack_from(fmt, data, 18))
    if size is None:
        raise FrameError(f"{len(data)} bytes that are not a JPEG, PNG or BMP image (or whose header is cut short): "
                         "send JPEG, PNG or BMP bytes")
    return size


def decode_image(data: bytes | bytearray | memoryview | np.ndarray, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """An encoded JPEG, PNG or BMP image -> HxWx3 BGR uint8; FrameError if it does not decode, or if its header
    claims more than ``max_pixels`` pixels (refused before decoding: no decompression bombs)."""
    import cv2

    data = bytes(data) if not isinstance(data, np.ndarray) else data.tobytes()
    if not data:
        raise FrameError("the request carried no image bytes: send an encoded image (JPEG or PNG)")
    width, height = image_size(data)
    if not 0 < width * height <= max_pixels:
        raise FrameError(f"the image header says {width}x{height} pixels, outside the server's limit of 1 to "
                         f"{max_pixels} pixels: send a smaller image (e.g. the camera frame resized)")
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise FrameError(f"{len(data)} bytes that OpenCV cannot decode as an image: send JPEG, PNG or BMP bytes")
    return image
