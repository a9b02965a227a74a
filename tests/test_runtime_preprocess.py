"""Preprocessing: frame validation, colour, ROI, resize modes, normalisation (OpenCV/numpy only)."""

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_mimo.bundle import InputSpec
from edge_mimo.datasets import shipped_sample
from edge_mimo.errors import ConfigError, FrameError
from edge_mimo.runtime.preprocess import (Normalizer, check_frame, fit_frame, prepare_batch,
                                          prepare_frame)

GRAY = InputSpec(1, 28, 28, "gray", (0.286,), (0.353,))
RGB = InputSpec(3, 32, 32, "rgb", (0.5, 0.4, 0.3), (0.2, 0.2, 0.2))


def camera_frame(image28: np.ndarray, size=(640, 480)) -> np.ndarray:
    """A 28x28 garment rendered as a BGR camera frame: noisy coloured background, garment filling the centre."""
    w, h = size
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    side = min(w, h)
    garment = cv2.resize(image28, (side, side), interpolation=cv2.INTER_NEAREST)
    x0, y0 = (w - side) // 2, (h - side) // 2
    frame[y0 : y0 + side, x0 : x0 + side] = garment[:, :, None]
    return frame


def test_center_crop_recovers_the_garment_from_a_camera_frame():
    images = shipped_sample("validation").images[:20, 0]
    for img in images:
        out = prepare_frame(camera_frame(img), GRAY)
        assert out.shape == (1, 28, 28) and out.dtype == np.uint8
        diff = np.abs(out[0].astype(int) - img)  # 480/28 is no integer: the nearest-neighbour render's edges blur
        assert diff.mean() < 2.0 and diff.max() < 30  # the noisy background outside the crop is gone


@pytest.mark.parametrize("shape, size", [((480, 640, 3), (37, 23)), ((480, 480), (28, 28)), ((101, 90), (45, 30)),
                                         ((57, 57, 3), (56, 56)), ((240, 320, 3), (50, 37))])
def test_shrinking_is_exact_area_averaging(shape, size):
    img = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
    spec = InputSpec(shape[2] if len(shape) == 3 else 1, size[1], size[0], "rgb" if len(shape) == 3 else "gray",
                     (0.5,) * (3 if len(shape) == 3 else 1), (0.5,) * (3 if len(shape) == 3 else 1), "stretch")
    ours = fit_frame(img, spec).astype(int)
    want = cv2.resize(img.astype(np.float64), size, interpolation=cv2.INTER_AREA)  # OpenCV's exact (slow) path
    assert ours.shape == want.shape
    assert np.abs(ours - want).max() < 0.501  # rounding only (OpenCV weighs in float32)


def test_stretch_and_letterbox_geometry():
    frame = np.full((100, 200, 3), 255, np.uint8)
    stretched = fit_frame(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY), InputSpec(1, 28, 28, "gray", (0.5,), (0.5,), "stretch"))
    assert stretched.shape == (28, 28) and (stretched == 255).all()
    boxed = fit_frame(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY), InputSpec(1, 28, 28, "gray", (0.5,), (0.5,), "letterbox"))
    assert boxed.shape == (28, 28)
    assert (boxed[:7] == 0).all() and (boxed[-7:] == 0).all() and (boxed[7:21] == 255).all()  # 2:1 -> 14 rows


def test_colour_order_bgr_to_rgb_and_gray_to_rgb():
    bgr = np.zeros((40, 40, 3), np.uint8)
    bgr[..., 0] = 200  # blue in OpenCV order
    out = prepare_frame(bgr, RGB)
    assert out.shape == (3, 32, 32)
    assert (out[2] == 200).all() and (out[0] == 0).all()  # blue lands in the last RGB channel
    gray = np.full((40, 40), 90, np.uint8)
    assert (prepare_frame(gray, RGB) == 90).all()
    bgra = np.dstack([bgr, np.full((40, 40), 7, np.uint8)])
    assert np.array_equal(prepare_frame(bgra, RGB), out)


def test_region_of_interest():
    frame = np.zeros((100, 100), np.uint8)
    frame[10:38, 50:78] = 255
    out = prepare_frame(frame, GRAY, roi=(50, 10, 28, 28))
    assert (out == 255).all()
    with pytest.raises(FrameError, match="outside"):
        prepare_frame(frame, GRAY, roi=(200, 200, 10, 10))


def test_dtypes_are_scaled():
    base = np.linspace(0, 255, 28 * 28).reshape(28, 28).astype(np.uint8)
    ref = prepare_frame(base, GRAY)
    assert np.abs(prepare_frame(base.astype(np.uint16) * 257, GRAY).astype(int) - ref).max() == 0
    assert np.abs(prepare_frame(base.astype(np.float32) / 255, GRAY).astype(int) - ref).max() <= 1


@pytest.mark.parametrize("frame, match", [
    (None, "None"),
    (np.zeros((0, 10, 3), np.uint8), "empty"),
    (np.zeros((10, 10, 2), np.uint8), "shape"),
    (np.zeros((3, 10, 10, 3), np.uint8), "shape"),
    (np.zeros((10, 10), np.int32), "dtype"),
    (np.full((10, 10), np.nan, np.float32), "NaN"),
    (np.full((10, 10), 3.0, np.float32), "0..1"),
    ([[1, 2], [3, 4]], "numpy"),
])
def test_bad_frames_raise_frame_error_with_a_fix(frame, match):
    with pytest.raises(FrameError, match=match) as info:
        check_frame(frame)
    assert ":" in str(info.value)  # problem: fix


def test_prepare_batch_isolates_bad_frames():
    good = np.zeros((30, 30, 3), np.uint8)
    batch, index, errors = prepare_batch([good, None, good, np.zeros((5, 5), np.int64)], GRAY)
    assert batch.shape == (2, 1, 28, 28) and index == [0, 2] and set(errors) == {1, 3}


def test_normalizer_matches_formula():
    x = np.random.default_rng(1).integers(0, 256, (4, 3, 5, 5), dtype=np.uint8)
    out = Normalizer(RGB)(x)
    ref = (x / 255.0 - np.array(RGB.mean)[:, None, None]) / np.array(RGB.std)[:, None, None]
    assert out.dtype == np.float32 and np.allclose(out, ref, atol=1e-5)


def test_bad_spec_is_refused():
    with pytest.raises(ConfigError, match="resize"):
        InputSpec(1, 28, 28, "gray", (0.5,), (0.5,), "zoom")
    with pytest.raises(ConfigError, match="channels"):
        InputSpec(3, 28, 28, "gray", (0.5,) * 3, (0.5,) * 3)


@settings(max_examples=60, deadline=None)
@given(h=st.integers(1, 300), w=st.integers(1, 300), channels=st.sampled_from([None, 1, 3, 4]),
       dtype=st.sampled_from(["uint8", "uint16", "float32"]),
       spec=st.sampled_from([GRAY, RGB, InputSpec(1, 20, 40, "gray", (0.1,), (0.2,), "letterbox"),
                             InputSpec(3, 40, 20, "rgb", (0.1,) * 3, (0.2,) * 3, "stretch")]))
def test_any_valid_frame_gives_the_model_shape(h, w, channels, dtype, spec):
    shape = (h, w) if channels is None else (h, w, channels)
    rng = np.random.default_rng(h * 1000 + w)
    frame = rng.random(shape).astype(dtype) if dtype == "float32" else rng.integers(
        0, np.iinfo(dtype).max, shape, dtype=dtype)
    out = prepare_frame(frame, spec)
    assert out.shape == (spec.channels, spec.height, spec.width_px) and out.dtype == np.uint8
    assert np.abs(out.astype(int) - reference_input(frame, spec)).max() <= 1  # OpenCV's float path rounds otherwise


def reference_input(frame: np.ndarray, spec: InputSpec) -> np.ndarray:
    """The model input written out with plain OpenCV calls, as the docs describe it: 8 bits, the model's colours,
    the resize mode's window, area averaging in float64 to shrink (bilinear otherwise), channels first."""
    img = frame // 257 if frame.dtype == np.uint16 else np.rint(frame * 255.0) if frame.dtype == np.float32 else frame
    img = img.astype(np.uint8)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if spec.color == "gray":
        img = img if img.ndim == 2 else cv2.cvtColor(img, cv2.COLOR_BGR2GRAY if img.shape[2] == 3 else cv2.COLOR_BGRA2GRAY)
    else:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2RGB if img.ndim == 2 else
                           cv2.COLOR_BGR2RGB if img.shape[2] == 3 else cv2.COLOR_BGRA2RGB)
    h, w = img.shape[:2]

    def resize(x: np.ndarray, width: int, height: int) -> np.ndarray:
        if x.shape[1] >= width and x.shape[0] >= height:
            return np.rint(cv2.resize(x.astype(np.float64), (width, height), interpolation=cv2.INTER_AREA))
        return cv2.resize(x, (width, height), interpolation=cv2.INTER_LINEAR)

    if spec.resize == "stretch":
        out = resize(img, spec.width_px, spec.height)
    elif spec.resize == "center-crop":  # the largest centred window with the model's aspect
        cw, ch = min(w, max(1, round(h * spec.width_px / spec.height))), min(h, max(1, round(w * spec.height / spec.width_px)))
        x0, y0 = (w - cw) // 2, (h - ch) // 2
        out = resize(img[y0 : y0 + ch, x0 : x0 + cw], spec.width_px, spec.height)
    else:  # letterbox: the whole frame, centred on black
        scale = min(spec.width_px / w, spec.height / h)
        nw, nh = max(1, min(spec.width_px, round(w * scale))), max(1, min(spec.height, round(h * scale)))
        out = np.zeros((spec.height, spec.width_px) + img.shape[2:])
        y0, x0 = (spec.height - nh) // 2, (spec.width_px - nw) // 2
        out[y0 : y0 + nh, x0 : x0 + nw] = resize(img, nw, nh)
    out = np.asarray(out).astype(int)
    return out[None] if out.ndim == 2 else out.transpose(2, 0, 1)
