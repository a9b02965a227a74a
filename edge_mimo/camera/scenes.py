"""Named camera conditions and a renderer that places a dataset object in a camera frame.

A frame is rendered at camera resolution (640x480 BGR by default): a scene (background level, smooth texture),
the object composited onto it where it is opaque (its opacity comes from its own pixels, see
:func:`object_alpha`), scaled to a share of the centre square and placed, tilted, then the camera's effects
on the whole frame: gain and gamma, optical blur, sensor noise, JPEG. The runtime's preprocessing (centre
crop, exact area resize) then sees what it would see from a real camera: the object never lands pixel-aligned
on the model's 28x28 grid, and the background is whatever the scene is.

Every condition draws its parameters per frame from its ranges with a seeded generator, so a suite run is the
same frames every time for a seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

OPAQUE_FROM = 8  # object pixels at or above this intensity are fully opaque (the training preset's rule)


@dataclass(frozen=True)
class Condition:
    """Ranges of one camera condition (levels in 0..255, sizes in frame pixels unless noted)."""

    name: str
    description: str
    background: tuple[float, float] = (0.0, 0.0)  # scene level
    texture: float = 0.0  # amplitude of smooth scene texture
    scale: tuple[float, float] = (1.0, 1.0)  # object side / centre-square side
    offset: float = 0.0  # object centre moves up to this share of the free room towards the crop's edges
    rotation: float = 0.0  # max tilt, degrees
    gain: tuple[float, float] = (1.0, 1.0)  # exposure: every pixel times this
    gamma: tuple[float, float] = (1.0, 1.0)
    blur: float = 0.0  # Gaussian sigma
    noise: float = 0.0  # sensor (luma) noise standard deviation, per pixel
    jpeg: int = 0  # JPEG quality (0: not compressed)
    trained: bool = True  # inside the ranges of the ``camera`` training preset


CONDITIONS: dict[str, Condition] = {c.name: c for c in (
    Condition("clean", "object filling the centre square on black: the dataset as a camera sees it"),
    Condition("dark-background", "dark scene behind the object", background=(20, 45)),
    Condition("mid-background", "mid-grey scene", background=(90, 150)),
    Condition("bright-background", "bright scene (object darker than parts of it)", background=(180, 235)),
    Condition("textured-background", "scene with smooth texture and shading", background=(40, 170), texture=60),
    Condition("sensor-noise", "strong per-pixel sensor noise", background=(30, 110), noise=25),
    Condition("blur", "defocus (sigma 10 px at 480 px, 0.6 model pixels)", background=(30, 110), blur=10),
    Condition("low-light", "underexposed: gain 0.25-0.4, noise, gamma", background=(10, 40), gain=(0.25, 0.4),
              gamma=(0.9, 1.3), noise=6),
    Condition("jpeg", "JPEG quality 15 on a textured scene", background=(40, 170), texture=30, jpeg=15),
    Condition("small-off-centre", "object 60-75 % of the square, anywhere in it", background=(20, 120),
              scale=(0.6, 0.75), offset=1.0),
    Condition("rotated", "tilted up to 15 degrees, 80-95 % of the square", background=(20, 120),
              scale=(0.8, 0.95), rotation=15),
    Condition("tiny-object", "object only 40-50 % of the square (below the trained 60 %)", background=(20, 120),
              scale=(0.4, 0.5), offset=0.5, trained=False),
)}


def object_alpha(image: np.ndarray) -> np.ndarray:
    """Opacity (float 0..1, HxW) of an object on black: a 3x3 closing of its pixels, opaque from 8 up."""
    closed = cv2.morphologyEx(image, cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8), borderType=cv2.BORDER_REPLICATE)
    return np.clip(closed.astype(np.float32) / OPAQUE_FROM, 0.0, 1.0)


def _scene(h: int, w: int, cond: Condition, rng: np.random.Generator) -> np.ndarray:
    level = rng.uniform(*cond.background)
    scene = np.full((h, w), level, np.float32)
    if cond.texture:
        coarse = rng.standard_normal((6, 8)).astype(np.float32)
        scene += cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC) * (cond.texture / 2)
    return scene


def render_frame(image: np.ndarray, cond: Condition, rng: np.random.Generator,
                 size: tuple[int, int] = (640, 480)) -> np.ndarray:
    """A grey object ``image`` (HxW uint8, on black) -> a BGR uint8 camera frame of ``size`` (width_px, height)."""
    w, h = size
    side = min(w, h)
    scene = _scene(h, w, cond, rng)
    obj_side = max(2, round(side * rng.uniform(*cond.scale)))
    obj = cv2.resize(image.astype(np.float32), (obj_side, obj_side), interpolation=cv2.INTER_LINEAR)
    alpha = cv2.resize(object_alpha(image), (obj_side, obj_side), interpolation=cv2.INTER_LINEAR)
    room = (side - obj_side) / 2
    cx = w / 2 + cond.offset * room * rng.uniform(-1, 1)
    cy = h / 2 + cond.offset * room * rng.uniform(-1, 1)
    angle = cond.rotation * rng.uniform(-1, 1)
    # One affine map puts the (rotated) object at its place in the frame; outside it the object is empty.
    m = cv2.getRotationMatrix2D((obj_side / 2, obj_side / 2), angle, 1.0)
    m[:, 2] += (cx - obj_side / 2, cy - obj_side / 2)
    obj = cv2.warpAffine(obj, m, (w, h), flags=cv2.INTER_LINEAR, borderValue=0)
    alpha = cv2.warpAffine(alpha, m, (w, h), flags=cv2.INTER_LINEAR, borderValue=0)
    frame = alpha * obj + (1.0 - alpha) * scene
    frame = 255.0 * (np.clip(frame * rng.uniform(*cond.gain), 0, 255) / 255.0) ** rng.uniform(*cond.gamma)
    if cond.blur:
        frame = cv2.GaussianBlur(frame, (0, 0), cond.blur)
    if cond.noise:
        frame += rng.standard_normal(frame.shape, dtype=np.float32) * cond.noise
    frame = cv2.cvtColor(np.clip(np.rint(frame), 0, 255).astype(np.uint8), cv2.COLOR_GRAY2BGR)
    if cond.jpeg:
        ok, data = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, cond.jpeg])
        frame = cv2.imdecode(data, cv2.IMREAD_COLOR)
    return frame


def render_frames(images: np.ndarray, cond: Condition, seed: int = 0, size: tuple[int, int] = (640, 480),
                  start: int = 0) -> list[np.ndarray]:
    """Frames of uint8 objects [M, 1, H, W] (or [M, H, W]) under ``cond``; image i's draws depend only on
    (seed, condition, start + i), so any slice renders the same frames as the whole."""
    images = images[:, 0] if images.ndim == 4 else images
    key = sum(map(ord, cond.name))
    return [render_frame(img, cond, np.random.default_rng((seed, key, start + i)), size)
            for i, img in enumerate(images)]
