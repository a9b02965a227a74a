"""The camera augmentation preset, the scene renderer and the camera-condition suite."""

import dataclasses

import numpy as np
import pytest
import torch

from edge_mimo.camera.scenes import CONDITIONS, render_frames
from edge_mimo.datasets import shipped_sample
from edge_mimo.runtime.preprocess import prepare_frame
from edge_mimo.train.camera_augment import CameraAugment, camera_augment, jpeg, object_alpha

torch.set_num_threads(2)
NEUTRAL = CameraAugment(clean_prob=0.0, scale=(1.0, 1.0), max_rotation=0.0, flip=False, dark_prob=0.0, texture=0.0,
                        gradient=0.0, contrast=(1.0, 1.0), brightness=0.0, gamma=(1.0, 1.0), low_light_prob=0.0,
                        blur_prob=0.0, noise=0.0, jpeg_prob=0.0)


@pytest.fixture(scope="module")
def garments() -> torch.Tensor:
    return torch.from_numpy(shipped_sample("validation").images[:256])


def augment(images, seed=0, **knobs):
    return camera_augment(images, dataclasses.replace(NEUTRAL, **knobs), torch.Generator().manual_seed(seed))


def test_preset_is_deterministic_per_seed_and_keeps_shape(garments):
    a, b = (camera_augment(garments, CameraAugment(), torch.Generator().manual_seed(7)) for _ in range(2))
    c = camera_augment(garments, CameraAugment(), torch.Generator().manual_seed(8))
    assert a.shape == garments.shape and a.dtype == torch.uint8
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_background_goes_behind_the_object_only(garments):
    """Only the scene changes: the object's opaque pixels keep their values, the empty ones get the scene."""
    x = garments.float()
    out = augment(garments, scale=(1.0, 1.0)).float()
    # ``room`` allows a 2-pixel shift even at full scale: compare with the best of the shifted originals
    opaque = object_alpha(x / 255) >= 1
    empty = (x.amax(1, keepdim=True) == 0) & (-torch.nn.functional.max_pool2d(-(x == 0).float(), 9, 1, 4) > 0)
    background = out[empty].mean()
    assert background > 40, "the scene level (uniform 0..255) shows behind the object"
    assert out[empty].std() < 80
    assert opaque.float().mean() > 0.3  # garments cover a good part of the square


def test_each_knob_does_what_it_says(garments):
    x = garments[:64]
    plain = augment(x).float()
    # scale 0.6: the object's extent shrinks to about 60 % of the square
    small = augment(x, scale=(0.6, 0.6), dark_prob=1.0).float()
    extent = lambda im: ((im > 60).any(-1).sum(-1).float().mean() / im.shape[-1]).item()  # noqa: E731
    assert 0.45 < extent(small) / extent(plain) < 0.72
    # noise: the difference to the noise-free image has about the drawn std (uniform 0..0.04 -> mean 0.02)
    noisy = augment(x, noise=0.04).float()
    assert 2.5 < (noisy - plain).std().item() < 8
    # low light: every image darker
    dark = augment(x, low_light_prob=1.0).float()
    assert (dark.mean((1, 2, 3)) < 0.55 * plain.mean((1, 2, 3)) + 1).all()
    # blur: less high-frequency energy
    blurred = augment(x, blur_prob=1.0, blur_sigma=(1.0, 1.0)).float()
    tv = lambda im: (im[..., 1:] - im[..., :-1]).abs().mean().item()  # noqa: E731
    assert tv(blurred) < 0.8 * tv(plain)
    # clean_prob 1: the dataset's images, at most shifted by 2 px and mirrored
    clean = augment(x, clean_prob=1.0, flip=True, texture=0.25, noise=0.04, jpeg_prob=1.0).float()
    kept = clean.sum((1, 2, 3)) / x.float().sum((1, 2, 3))  # a sub-pixel shift moves mass, never adds a scene
    assert kept.min() > 0.85 and kept.max() < 1.01 and kept.mean() > 0.93


def test_augmentation_keeps_each_image_in_its_place():
    """Labels stay valid: image i of the output is made from image i of the input (16 bright squares at 16
    places, on dark scenes; each output is brightest where its own input's square was, under every other
    camera effect)."""
    x = torch.zeros(16, 1, 28, 28, dtype=torch.uint8)
    for i in range(16):
        r, c = divmod(i, 4)
        x[i, 0, 7 * r : 7 * r + 6, 7 * c : 7 * c + 6] = 230
    aug = dataclasses.replace(CameraAugment(), scale=(1.0, 1.0), max_rotation=0.0, flip=False, clean_prob=0.0,
                              dark_prob=1.0, texture=0.0, gradient=0.0)
    out = camera_augment(x, aug, torch.Generator().manual_seed(0)).float()
    brightness = out.view(16, 1, 28 * 28) @ (x.float().view(16, 28 * 28).T / 230)  # [16, 1, 16]: per square
    assert (brightness[:, 0].argmax(1) == torch.arange(16)).all()


def test_jpeg_is_lossy_by_quality():
    rng = torch.Generator().manual_seed(0)
    x = torch.rand(4, 1, 28, 28, generator=rng)
    err = {q: (jpeg(x, torch.full((4,), q)) - x).abs().mean().item() for q in (95, 50, 10)}
    assert err[95] < err[50] < err[10]
    flat = torch.full((2, 1, 16, 16), 0.5)
    assert torch.allclose(jpeg(flat, torch.tensor([20, 20])), flat, atol=1 / 255)


def test_suite_renders_every_condition_deterministically():
    images = shipped_sample("validation").images[:6]
    for cond in CONDITIONS.values():
        a = render_frames(images, cond, seed=3)
        b = render_frames(images, cond, seed=3)
        assert all(np.array_equal(u, v) for u, v in zip(a, b)), cond.name
        assert a[0].shape == (480, 640, 3) and a[0].dtype == np.uint8
        assert all(np.array_equal(u, v) for u, v in zip(a[2:], render_frames(images[2:], cond, seed=3, start=2)))
        if cond.background != (0.0, 0.0) or cond.scale != (1.0, 1.0):
            c = render_frames(images, cond, seed=4)
            assert not all(np.array_equal(u, v) for u, v in zip(a, c)), cond.name


def test_rendered_scenes_reach_the_model_with_their_background():
    """Not a paste over the crop: the model input has the scene's level around the object and is not the
    dataset's image again."""
    from edge_mimo.bundle import InputSpec

    spec = InputSpec(1, 28, 28, "gray", (0.286,), (0.353,))
    images = shipped_sample("validation").images[:20]
    for name in ("mid-background", "small-off-centre"):
        frames = render_frames(images, CONDITIONS[name], seed=0)
        seen = np.stack([prepare_frame(f, spec)[0] for f in frames]).astype(float)
        empty = images[:, 0] == 0
        assert seen[empty].mean() > 40, name  # the dataset's black is now the scene
        assert np.abs(seen - images[:, 0]).mean() > 20, name


@pytest.mark.parametrize("condition,floor", [
    ("clean", 0.88), ("mid-background", 0.85), ("bright-background", 0.85), ("textured-background", 0.85),
    ("small-off-centre", 0.83), ("low-light", 0.83),
])
def test_default_model_holds_up_under_camera_conditions(cpu_runtime, condition, floor):
    """Frames that are not pixel-aligned (scene inside the crop, shifted and smaller objects), through the whole
    runtime at width 4: the model trained with the camera preset stays above a stated floor (the model before
    it scored 13-57 % on such frames; it measures 90-93 % here, BENCHMARKS.md)."""
    from edge_mimo.camera.suite import run_suite

    val = shipped_sample("validation").subset(slice(0, 300))
    result = run_suite(cpu_runtime, val.images, val.labels, None, conditions=[CONDITIONS[condition]],
                       policies=["throughput"], streams=4)
    assert result["conditions"][condition]["throughput"]["accuracy"] >= floor


def test_eval_command_writes_the_suite(cpu_bundle, tmp_path):
    import json

    from edge_mimo.cli.main import main

    out = tmp_path / "suite"
    assert main(["eval", str(cpu_bundle), "--data", "shipped", "--limit", "40", "--ood-limit", "40",
                 "--conditions", "clean,jpeg", "--threads", "2", "-o", str(out)]) == 0
    result = json.loads((out / "camera_suite.json").read_text())
    assert set(result["conditions"]) == {"clean", "jpeg"}
    assert result["policies"] == ["throughput", "balanced", "robust"]
    robust = result["conditions"]["clean"]["robust"]
    assert robust["widths"] == [1] and robust["replicas"] == [4]
    # the documented bar (BENCHMARKS.md: ID vs OOD AUROC >= 0.93 under `robust`; clean measures 0.98 on 10,000
    # frames, 0.993 on these 40 + 40), not merely better than chance
    assert 0.93 <= robust["auroc"] <= 1.0 and 0.0 <= robust["uncertain_rate"] <= 0.5
    assert (out / "camera_suite.png").stat().st_size > 1000
    assert main(["eval", str(cpu_bundle), "--conditions", "foggy"]) == 2
