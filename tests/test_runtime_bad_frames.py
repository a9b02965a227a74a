"""Bad frames through ``Runtime.infer_many``: each is refused on its own with a FrameError naming the problem and
the fix, while every other stream of the same call gets exactly the prediction it would get without it."""

import json

import numpy as np
import pytest

from edge_mimo.errors import ConfigError, FrameError
from edge_mimo.streams import Frame

from .test_runtime_preprocess import camera_frame


class NotAnImage:
    shape = (480, 640, 3)
    dtype = np.uint8


def bad_frames() -> dict[str, object]:
    """Everything a camera driver, a decoder or a caller's bug can hand over instead of an image."""
    cam = np.zeros((480, 640, 3), np.uint8)
    nan = cam.astype(np.float32) / 255
    nan[100, 100, 1] = np.nan
    return {
        "none": None,
        "empty array": np.array([]),
        "zero rows": np.zeros((0, 640, 3), np.uint8),
        "zero columns": np.zeros((480, 0, 3), np.uint8),
        "zero size 0x0": np.zeros((0, 0), np.uint8),
        "scalar": np.array(7, np.uint8),
        "one row of pixels (1-D)": np.zeros(640 * 3, np.uint8),
        "batch of frames (4-D)": np.zeros((2, 48, 64, 3), np.uint8),
        "planar CxHxW": np.zeros((3, 48, 64), np.uint8),
        "two channels": np.zeros((48, 64, 2), np.uint8),
        "five channels": np.zeros((48, 64, 5), np.uint8),
        "int32": cam.astype(np.int32),
        "int64": cam.astype(np.int64),
        "int8": cam.astype(np.int8),
        "uint32": cam.astype(np.uint32),
        "bool": cam.astype(bool),
        "complex": cam.astype(np.complex64),
        "object array": np.full((48, 64, 3), None, dtype=object),
        "float with one NaN": nan,
        "float all NaN": np.full((48, 64, 3), np.nan, np.float32),
        "float +inf": np.full((48, 64), np.inf, np.float64),
        "float in 0..255": cam.astype(np.float32) + 128,
        "float negative": np.full((48, 64, 3), -0.5, np.float16),
        "JPEG bytes not decoded": b"\xff\xd8\xff\xe0" + bytes(100),
        "file path string": "/tmp/frame.jpg",
        "nested list": [[0, 1], [2, 3]],
        "dict": {"image": cam},
        "array-like object": NotAnImage(),
        "stream Frame with no image": Frame("cam", None, 3, 0.0, 0.0),
    }


def odd_but_valid_frames() -> dict[str, np.ndarray]:
    """Unusual images that must be classified, not refused."""
    rng = np.random.default_rng(1)
    cam = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    readonly = cam.copy()
    readonly.flags.writeable = False
    return {
        "1x1 pixel": np.full((1, 1, 3), 200, np.uint8),
        "1 pixel tall, very wide": rng.integers(0, 256, (1, 2000, 3), dtype=np.uint8),
        "4K frame": rng.integers(0, 256, (2160, 3840, 3), dtype=np.uint8),
        "gray HxW": cam[:, :, 0].copy(),
        "gray HxWx1": cam[:, :, :1].copy(),
        "BGRA": np.dstack([cam, np.full((480, 640), 255, np.uint8)]),
        "uint16 (16-bit camera)": cam.astype(np.uint16) * 257,
        "float32 in 0..1": cam.astype(np.float32) / 255,
        "float64 in 0..1": cam.astype(np.float64) / 255,
        "non-contiguous view": cam[::-1, ::2],
        "Fortran order": np.asfortranarray(cam),
        "read-only buffer": readonly,
        "all black": np.zeros((480, 640, 3), np.uint8),
        "all white": np.full((480, 640, 3), 255, np.uint8),
        "pure noise": rng.integers(0, 256, (480, 640, 3), dtype=np.uint8),
    }


@pytest.fixture(scope="module")
def garments():
    from edge_mimo.datasets import shipped_sample

    return [camera_frame(img[0]) for img in shipped_sample("validation").images[:8]]


def check_error(result, key) -> None:
    assert not result.ok and isinstance(result.error, FrameError), (key, result.error)
    message = str(result.error)
    assert ":" in message and len(message.split(":", 1)[1].strip()) > 5, f"{key}: no fix in {message!r}"
    assert result.class_index == -1 and result.probabilities.size == 0  # no made-up prediction
    json.dumps(result.to_dict())


def check_prediction(result, rt) -> None:
    assert result.ok, result.error
    p = result.probabilities
    assert p.shape == (rt.num_classes,) and np.isfinite(p).all() and abs(p.sum() - 1) < 1e-4
    assert 0 <= result.entropy <= 1 + 1e-6 and 0 <= result.disagreement <= 1 + 1e-6 and result.replicas >= 1


@pytest.mark.parametrize("policy", ["throughput", "balanced", "robust"])
def test_each_bad_frame_is_refused_alone_and_the_other_streams_are_unaffected(cpu_runtime, garments, policy):
    rt = cpu_runtime
    bad = bad_frames()
    good = {f"cam{i}": g for i, g in enumerate(garments[:5])}
    reference = rt.infer_many(good, policy=policy)
    for k, (name, frame) in enumerate(bad.items()):
        frames = dict(good)
        items = list(frames.items())
        items.insert(k % (len(items) + 1), (name, frame))  # the bad stream at every position in turn
        results = rt.infer_many(dict(items), policy=policy)
        assert list(results) == [key for key, _ in items]
        check_error(results[name], name)
        for key, ref in reference.items():
            got = results[key]
            assert got.ok and got.width == ref.width and got.replicas == ref.replicas, (name, key)
            np.testing.assert_allclose(got.probabilities, ref.probabilities, atol=1e-6, err_msg=f"{name} -> {key}")


def test_all_bad_frames_in_one_call_with_the_good_ones_scattered(cpu_runtime, garments):
    rt = cpu_runtime
    bad = list(bad_frames().items())
    frames = [f for _, f in bad]
    slots = sorted(np.random.default_rng(0).choice(len(frames) + len(garments), len(garments), replace=False))
    for slot, garment in zip(slots, garments):
        frames.insert(int(slot), garment)
    results = rt.infer_many(frames)
    assert [r.stream for r in results] == list(range(len(frames)))
    good = [r for i, r in enumerate(results) if i in set(int(s) for s in slots)]
    alone = rt.infer_many(garments)
    for got, ref in zip(good, alone):
        np.testing.assert_allclose(got.probabilities, ref.probabilities, atol=1e-6)
    assert sum(not r.ok for r in results) == len(bad)
    assert results[0].timing.groups == alone[0].timing.groups  # bad frames cost no pass


def test_unusual_but_valid_frames_are_classified(cpu_runtime):
    rt = cpu_runtime
    odd = odd_but_valid_frames()
    results = rt.infer_many(odd)
    for name, result in results.items():
        check_prediction(result, rt)
    base = odd["read-only buffer"]  # the same camera image in other encodings must give the same prediction
    variants = {k: odd[k] for k in ("uint16 (16-bit camera)", "float32 in 0..1", "float64 in 0..1", "BGRA",
                                    "Fortran order")}
    plain = rt.infer(base.copy(), width=1)
    for name, result in rt.infer_many(variants, width=1).items():
        np.testing.assert_allclose(result.probabilities, plain.probabilities, atol=1e-6, err_msg=name)


def test_frames_are_not_modified_and_later_changes_do_not_leak(cpu_runtime, garments):
    rt = cpu_runtime
    frames = [g.copy() for g in garments[:4]]
    before = [f.copy() for f in frames]
    first = rt.infer_many(frames)
    assert all(np.array_equal(a, b) for a, b in zip(frames, before))  # the caller's images are left as they were
    for f in frames:
        f[:] = 0  # the camera reuses its buffer
    again = rt.infer_many(before)
    for a, b in zip(first, again):
        np.testing.assert_allclose(a.probabilities, b.probabilities, atol=1e-6)


def test_regions_of_interest_outside_a_frame_only_affect_that_stream(cpu_runtime, garments):
    rt = cpu_runtime
    frames = {"a": garments[0], "b": garments[1], "c": garments[2]}
    results = rt.infer_many(frames, rois={"b": (5000, 10, 100, 100)})
    check_error(results["b"], "roi outside")
    assert "outside" in str(results["b"].error)
    ref = rt.infer_many({"a": garments[0], "c": garments[2]})
    for key in ("a", "c"):
        np.testing.assert_allclose(results[key].probabilities, ref[key].probabilities, atol=1e-6)
    for bad_roi, match in [((-1, 0, 10, 10), "x, y >= 0"), ((0, 0, 0, 10), "width, height > 0"),
                           (("a", 0, 10, 10), "four integers"), ((1, 2, 3), "four integers"), (None, None)]:
        if match is None:
            assert rt.infer_many(frames, rois={"a": bad_roi})["a"].ok  # None = no region
            continue
        with pytest.raises(ConfigError, match=match):  # a caller's bug, refused before any work
            rt.infer_many(frames, rois={"a": bad_roi})


def test_bad_call_arguments_are_refused_with_a_fix(cpu_runtime, garments):
    rt = cpu_runtime
    for kwargs, match in [({"policy": "fastest"}, "policy"), ({"budget_ms": 0}, "budget_ms"),
                          ({"budget_ms": -5}, "budget_ms"), ({"budget_ms": float("nan")}, "budget_ms"),
                          ({"budget_ms": "10"}, "budget_ms"), ({"width": 3}, "width"), ({"width": "4"}, "width"),
                          ({"rois": [None]}, "rois")]:
        with pytest.raises(ConfigError, match=match) as info:
            rt.infer_many(garments[:2], **kwargs)
        assert ":" in str(info.value)
    for single in (garments[0], garments[0][:, :, 0]):  # one image instead of a list would become 480 "streams"
        with pytest.raises(ConfigError, match=r"not a list of frames.*\[frame\]"):
            rt.infer_many(single)
    assert len(rt.infer_many(np.stack(garments[:3]))) == 3  # an array of frames is a list of frames
    assert rt.infer_many(garments[:2], policy="robust")[0].ok  # the runtime is fine afterwards


def test_more_streams_than_one_backend_call_holds(cpu_runtime, garments):
    """300 streams: the passes are split into several backend calls; every frame still comes back to its stream."""
    rt = cpu_runtime
    frames = [garments[i % len(garments)] for i in range(300)]
    frames[137] = None
    results = rt.infer_many(frames)
    assert len(results) == 300 and [r.stream for r in results] == list(range(300))
    assert not results[137].ok and sum(r.ok for r in results) == 299
    plan = rt.plan(299)
    for group in (plan.groups[0], plan.groups[len(plan.groups) // 2], plan.groups[-1]):
        members = list(dict.fromkeys(group.frames))
        streams = [m if m < 137 else m + 1 for m in members]  # plan indices skip the bad frame
        alone = rt.infer_many([frames[s] for s in streams])
        for s, ref in zip(streams, alone):
            np.testing.assert_allclose(results[s].probabilities, ref.probabilities, atol=1e-5)
