"""The runtime's side of in-graph preprocessing: a frame -> the uint8 BGR crop the graph takes (no resize to the
model's size, no colour conversion, no normalisation: the graph does those; see :mod:`edge_mimo.export.ingraph`).

The crop follows the bundle's resize mode as the numpy path does (centre window of the model's aspect, the whole
frame for ``stretch``, fitted and padded with black for ``letterbox``), then is brought to the graph's fixed crop
size ``S = factor x model size`` by the cheapest op that is exact enough:

* already S x S: used as is (a camera or region of interest sized for the bundle costs one copy);
* larger by fewer than ``factor`` pixels on each axis (480 -> 476 for the default 28-pixel model, factor 17): the
  centred S x S window, a view. It drops less than one model pixel of field of view (a border of at most
  (factor - 1) / 2 frame pixels), and the graph's average pooling is then the exact area resize of that window;
* otherwise: OpenCV's ``INTER_AREA`` to S x S when shrinking (exact area averaging, as the numpy path's; area
  averaging composes, so pooling its output by ``factor`` is the exact area resize of the crop, up to a uint8
  rounding; the numpy path's integral-image resize is built for small outputs), bilinear when enlarging.

Frames are uint8 BGR, grey (replicated to BGR, after the resize) or BGRA (alpha dropped), as the numpy path takes.
"""

from __future__ import annotations

import cv2
import numpy as np

from ..bundle.manifest import InputSpec
from .preprocess import ROI, center_window, check_frame, crop_roi


def prepare_crop(frame, spec: InputSpec, roi: ROI | None = None) -> np.ndarray:
    """One frame -> uint8 BGR [S_h, S_w, 3] for a crop-uint8 ``spec`` (raises FrameError for a bad frame)."""
    img = check_frame(frame)
    if roi is not None:
        img = crop_roi(img, roi)
    if img.ndim == 3 and img.shape[2] == 4:
        img = img[:, :, :3]  # BGRA: drop alpha (a view)
    img = fit_crop(img, spec)
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    return img


def fit_crop(img: np.ndarray, spec: InputSpec) -> np.ndarray:
    """A frame (after its region of interest) -> the ``spec.crop`` size per the module's rules."""
    th, tw = spec.crop
    mode = spec.resize
    if mode == "letterbox":  # as preprocess.fit_frame, at the crop's size
        h, w = img.shape[:2]
        scale = min(tw / w, th / h)
        nw, nh = max(1, min(tw, round(w * scale))), max(1, min(th, round(h * scale)))
        out = np.zeros((th, tw) + img.shape[2:], dtype=np.uint8)
        y0, x0 = (th - nh) // 2, (tw - nw) // 2
        out[y0 : y0 + nh, x0 : x0 + nw] = _resize(img, nw, nh)
        return out
    if mode == "center-crop":
        img = center_window(img, spec)
    h, w = img.shape[:2]
    if (h, w) == (th, tw):
        return img
    if th <= h < th + spec.crop_factor and tw <= w < tw + spec.crop_factor:
        y0, x0 = (h - th) // 2, (w - tw) // 2
        return img[y0 : y0 + th, x0 : x0 + tw]
    return _resize(img, tw, th)


def _resize(img: np.ndarray, width_px: int, height: int) -> np.ndarray:
    """Exact area averaging when shrinking (OpenCV's INTER_AREA), bilinear when enlarging."""
    h, w = img.shape[:2]
    if (w, h) == (width_px, height):
        return img
    shrink = w >= width_px and h >= height
    return cv2.resize(img, (width_px, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
