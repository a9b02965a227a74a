"""Camera frames -> model input: validation, colour, region of interest, resize, normalisation.

Each frame is checked on its own (a bad frame raises :class:`FrameError` naming the problem and the fix, and
only its stream is affected). Colour conversion and the integral image behind the resize are one OpenCV pass
each over the frame; normalisation runs once, vectorised, over the whole batch. No per-pixel Python.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol, runtime_checkable

import cv2
import numpy as np

from ..bundle.manifest import InputSpec
from ..errors import ConfigError, FrameError

ROI = tuple[int, int, int, int]  # x, y, width, height in frame pixels


def check_frame(frame) -> np.ndarray:
    """A frame as OpenCV gives it -> uint8 HxW or HxWxC (C in 1, 3, 4: gray, BGR, BGRA).

    Accepted: uint8; uint16 (scaled by 1/257); float in 0..1 (scaled by 255). Anything else raises FrameError.
    """
    if frame is None:
        raise FrameError("frame is None (the camera returned nothing): skip it or check the source")
    if not isinstance(frame, np.ndarray):
        raise FrameError(f"frame is a {type(frame).__name__}, not a numpy array: pass images as OpenCV gives them")
    if isinstance(frame, np.ma.MaskedArray):
        raise FrameError("frame is a masked array, whose hidden values would be classified: "
                         "pass frame.filled(0) (or another fill value) as a plain array")
    if frame.ndim == 3 and frame.shape[2] == 1:
        frame = frame[:, :, 0]
    if frame.ndim not in (2, 3) or (frame.ndim == 3 and frame.shape[2] not in (3, 4)):
        raise FrameError(
            f"frame has shape {frame.shape}: expected HxW (gray), HxWx3 (BGR) or HxWx4 (BGRA); "
            "convert planar CxHxW images with frame.transpose(1, 2, 0)"
        )
    if frame.shape[0] == 0 or frame.shape[1] == 0:
        raise FrameError(f"frame is empty (shape {frame.shape}): the camera delivered no pixels, skip it")
    if not frame.dtype.isnative:  # big-endian data (from a file or the network): the same values, native order
        frame = frame.astype(frame.dtype.newbyteorder("="))
    if frame.dtype == np.uint8:
        return frame
    if frame.dtype == np.uint16:
        return (frame // 257).astype(np.uint8)
    if frame.dtype in (np.float16, np.float32, np.float64):
        if not np.isfinite(frame).all():
            raise FrameError("frame has NaN or infinite values: fix the producer, or pass uint8 images")
        lo, hi = float(frame.min()), float(frame.max())
        if lo < 0.0 or hi > 1.0:
            raise FrameError(
                f"float frame has values in [{lo:.3g}, {hi:.3g}]: float frames must be in 0..1; "
                "divide by 255 or pass uint8 images"
            )
        return np.rint(frame.astype(np.float32) * 255.0).astype(np.uint8)
    raise FrameError(f"frame dtype {frame.dtype} is not supported: pass uint8 (OpenCV's default), uint16 or float 0..1")


def check_roi(roi) -> ROI:
    """Validate an ``(x, y, width, height)`` region of interest given by the caller: four integers (a tuple,
    list or array), never a string, fractions or infinities."""
    values = list(roi) if isinstance(roi, (tuple, list, np.ndarray)) else None
    if values is None or len(values) != 4 or not all(
            isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)) for v in values):
        raise ConfigError(f"region of interest {roi!r} must be four integers (x, y, width, height), "
                          "e.g. (100, 50, 320, 240)")
    x, y, w, h = (int(v) for v in values)
    if x < 0 or y < 0 or w <= 0 or h <= 0:
        raise ConfigError(f"region of interest {roi!r} needs x, y >= 0 and width, height > 0")
    return x, y, w, h


def _convert_color(img: np.ndarray, color: str) -> np.ndarray:
    if color == "gray":
        if img.ndim == 2:
            return img
        return cv2.cvtColor(img, cv2.COLOR_BGR2GRAY if img.shape[2] == 3 else cv2.COLOR_BGRA2GRAY)
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB if img.shape[2] == 3 else cv2.COLOR_BGRA2RGB)


@lru_cache(maxsize=64)
def _area_taps(src: int, dst: int) -> tuple[np.ndarray, np.ndarray]:
    """For one axis: the integral-image lines to read, and the [dst, 2 * (dst + 1)] matrix that turns them
    into per-pixel means (interpolate the integral at each output edge, difference neighbouring edges)."""
    pos = np.arange(dst + 1) * (src / dst)
    whole = np.minimum(pos.astype(np.int64), src - 1)
    frac = pos - whole
    k = np.arange(dst + 1)
    interp = np.zeros((dst + 1, 2 * (dst + 1)))
    interp[k, 2 * k], interp[k, 2 * k + 1] = 1.0 - frac, frac
    return np.stack([whole, whole + 1], 1).ravel(), np.diff(interp, axis=0) * (dst / src)


def _area_shrink(img: np.ndarray, width_px: int, height: int) -> np.ndarray:
    """Exact area averaging for any reduction factor, from the integral image.

    The integral of a pixel grid is bilinear between pixel corners, so an output pixel's mean needs the
    integral at its four corners only: one pass over the frame (``cv2.integral``), then a few thousand reads.
    OpenCV's INTER_AREA gives the same pixels but is several times slower for fractional factors (480 -> 28).
    """
    h, w = img.shape[:2]
    table = cv2.integral(img, sdepth=cv2.CV_32S if h * w * 255 < 2**31 else cv2.CV_64F)  # (h+1) x (w+1) [x C]
    rows, along_y = _area_taps(h, height)
    cols, along_x = _area_taps(w, width_px)
    corners = table.take(rows, 0).take(cols, 1)
    if corners.ndim == 2:
        means = along_y @ corners @ along_x.T
    else:
        means = np.einsum("ia,abc,jb->ijc", along_y, corners, along_x)
    return np.rint(means).clip(0, 255).astype(np.uint8)


def _resize(img: np.ndarray, width_px: int, height: int) -> np.ndarray:
    """Exact area averaging when shrinking (anti-aliased), bilinear when enlarging."""
    h, w = img.shape[:2]
    if (w, h) == (width_px, height):
        return img
    if w >= width_px and h >= height:
        return _area_shrink(img, width_px, height)
    return cv2.resize(img, (width_px, height), interpolation=cv2.INTER_LINEAR)


def center_window(img: np.ndarray, spec: InputSpec) -> np.ndarray:
    """The largest centred window of ``img`` with the model's aspect ratio (a view, no copy)."""
    h, w = img.shape[:2]
    th, tw = spec.height, spec.width_px
    if w * th > h * tw:  # too wide
        cw = max(1, round(h * tw / th))
        x0 = (w - cw) // 2
        return img[:, x0 : x0 + cw]
    ch = max(1, round(w * th / tw))
    y0 = (h - ch) // 2
    return img[y0 : y0 + ch]


def fit_frame(img: np.ndarray, spec: InputSpec) -> np.ndarray:
    """A frame (any channels) -> ``spec.height x spec.width_px`` following ``spec.resize``.

    center-crop: the largest centred window with the model's aspect, then resize (as torchvision classifiers);
    stretch: resize the whole frame; letterbox: fit the whole frame, pad with black (the models' background).
    """
    h, w = img.shape[:2]
    th, tw = spec.height, spec.width_px
    if spec.resize == "stretch":
        return _resize(img, tw, th)
    if spec.resize == "center-crop":
        return _resize(center_window(img, spec), tw, th)
    scale = min(tw / w, th / h)
    nw, nh = max(1, min(tw, round(w * scale))), max(1, min(th, round(h * scale)))
    inner = _resize(img, nw, nh)
    out = np.zeros((th, tw) + img.shape[2:], dtype=np.uint8)
    y0, x0 = (th - nh) // 2, (tw - nw) // 2
    out[y0 : y0 + nh, x0 : x0 + nw] = inner
    return out


def crop_roi(img: np.ndarray, roi: ROI) -> np.ndarray:
    """The region ``roi`` of a frame; FrameError when it reaches outside the frame."""
    x, y, w, h = roi
    if x + w > img.shape[1] or y + h > img.shape[0]:
        raise FrameError(
            f"region of interest {roi} reaches outside the {img.shape[1]}x{img.shape[0]} frame: "
            "give a region inside the frame (x, y, width, height in pixels)"
        )
    return img[y : y + h, x : x + w]


def prepare_frame(frame, spec: InputSpec, roi: ROI | None = None) -> np.ndarray:
    """One frame -> uint8 [C, H, W] in the model's colour order and size (raises FrameError); for the crop-uint8
    contract, the uint8 BGR crop the graphs take (:func:`edge_mimo.runtime.ingraph.prepare_crop`)."""
    if spec.in_graph:
        from .ingraph import prepare_crop  # built on this module's frame checks

        return prepare_crop(frame, spec, roi)
    img = check_frame(frame)
    if roi is not None:
        img = crop_roi(img, roi)
    if spec.color == "gray":  # fewer channels to resample: convert first (only the centre window when cropping)
        if spec.resize == "center-crop":
            img = center_window(img, spec)
        img = fit_frame(_convert_color(img, "gray"), spec)
    else:  # convert the small image
        img = _convert_color(fit_frame(img, spec), spec.color)
    return img[None] if img.ndim == 2 else img.transpose(2, 0, 1)


class Normalizer:
    """uint8 [..., C, H, W] -> float32 ``(x / 255 - mean) / std``, as one fused multiply-add."""

    def __init__(self, spec: InputSpec) -> None:
        std = np.asarray(spec.std, dtype=np.float32)
        self.scale = (1.0 / (255.0 * std)).reshape(-1, 1, 1)
        self.offset = (-np.asarray(spec.mean, dtype=np.float32) / std).reshape(-1, 1, 1)

    def __call__(self, images: np.ndarray) -> np.ndarray:
        out = images.astype(np.float32)
        out *= self.scale
        out += self.offset
        return out


@dataclass(frozen=True)
class PreparedFrame:
    """A frame already turned into model input (uint8 [C, H, W]) for ``spec`` and ``roi``, e.g. by a camera's
    reader thread (:meth:`Runtime.prepare`); :meth:`Runtime.infer_many` uses ``tensor`` as is when its own spec
    and the stream's region of interest are the same."""

    tensor: np.ndarray
    spec: InputSpec
    roi: ROI | None = None

    def fits(self, spec: InputSpec, roi: ROI | None) -> bool:
        """True when this preparation is the one ``spec`` and ``roi`` ask for."""
        return self.spec == spec and self.roi == roi


@runtime_checkable
class StreamFrame(Protocol):
    """A camera frame as a stream hands it out (:class:`edge_mimo.streams.Frame`): the captured ``image``, and
    ``prepared``, the :class:`PreparedFrame` its reader thread made of it, or None."""

    image: np.ndarray
    prepared: PreparedFrame | None


def raw_image(frame):
    """A stream frame's ``image``; any other entry (an image) as is. Arrays are told apart first: a protocol
    ``isinstance`` costs microseconds a frame, a share of the preprocessing itself."""
    if isinstance(frame, np.ndarray):
        return frame
    return frame.image if isinstance(frame, StreamFrame) else frame


def _prepared(frame, spec: InputSpec, roi: ROI | None) -> np.ndarray:
    """One entry of a batch -> model input: a fitting :class:`PreparedFrame` (or a :class:`StreamFrame` carrying
    one, as its ``prepared``) as is, else the frame (or a stream frame's ``image``) prepared now."""
    if isinstance(frame, np.ndarray):
        return prepare_frame(frame, spec, roi)
    ready = frame if isinstance(frame, PreparedFrame) else frame.prepared if isinstance(frame, StreamFrame) else None
    if isinstance(ready, PreparedFrame) and ready.fits(spec, roi):
        tensor, shape = ready.tensor, spec.tensor_shape
        if not (isinstance(tensor, np.ndarray) and tensor.dtype == np.uint8 and tensor.shape == shape):
            raise FrameError(f"prepared frame holds {type(tensor).__name__} {getattr(tensor, 'dtype', '')} "
                             f"{getattr(tensor, 'shape', '')}, not uint8 {shape}: make it with Runtime.prepare()")
        return tensor
    if isinstance(frame, PreparedFrame):
        raise FrameError(f"frame was prepared for another input ({frame.spec}, region {frame.roi}): "
                         "pass the raw frame, or prepare it with this Runtime's prepare()")
    return prepare_frame(raw_image(frame), spec, roi)


def prepare_batch(
    frames: list, spec: InputSpec, rois: list[ROI | None] | None = None
) -> tuple[np.ndarray, list[int], dict[int, FrameError]]:
    """Frames -> (uint8 [M_ok, C, H, W] of the good frames, their indices, {index: FrameError} of the bad ones).

    Entries may be raw images, :class:`PreparedFrame` objects, or :class:`StreamFrame` objects (``.image``, and
    ``.prepared`` when their reader thread prepared them): what is prepared already is not prepared again."""
    good, index, errors = [], [], {}
    for i, frame in enumerate(frames):
        try:
            good.append(_prepared(frame, spec, rois[i] if rois else None))
            index.append(i)
        except FrameError as e:
            errors[i] = e
    batch = np.stack(good) if good else np.zeros((0, *spec.tensor_shape), np.uint8)
    return batch, index, errors
