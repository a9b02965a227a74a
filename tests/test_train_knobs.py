"""The training recipe's knobs do what they say, checked from outside the recipe: the widths the model is actually
fed, the BatchNorm statistics against an average computed here, the camera augmentation against the clean images,
and the CLI's options against the recipe's configuration."""

import cv2
import numpy as np
import pytest
import torch

import edge_mimo.train as train_pkg
from edge_mimo.cli.main import main
from edge_mimo.datasets import shipped_sample
from edge_mimo.models import ModelConfig, build_model
from edge_mimo.train import TrainConfig, train
from edge_mimo.train.recipe import augment_images, next_width

torch.set_num_threads(2)
TINY = dict(capacity=4, depth=10, widen=1, stem_channels=8, base_width=8)


@pytest.fixture(scope="module")
def data():
    return shipped_sample("validation").subset(slice(0, 640))


def fresh():
    torch.manual_seed(0)
    return build_model(ModelConfig(**TINY))


@pytest.mark.parametrize("prob", [0.0, 0.2, 0.5, 1.0])
def test_width_one_is_drawn_with_the_configured_share(prob):
    gen = torch.Generator().manual_seed(1)
    cfg = TrainConfig(single_prob=prob)
    widths = np.array([next_width(cfg, 4, gen) for _ in range(20000)])
    assert set(widths) <= {1, 4}
    assert (widths == 1).mean() == pytest.approx(prob, abs=0.012)


def test_training_feeds_width_one_and_full_width_steps_then_re_estimates_batchnorm(data):
    """Forward passes seen by a hook: 40 steps (about 20 % at width 1, the rest at width 4), then exactly
    ``bn_batches`` re-estimation passes; every BatchNorm's running mean is then the plain average of the batch
    means of those passes (recomputed here from the first BatchNorm's inputs) and counts exactly those batches."""
    model = fresh()
    bn = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    calls, bn_inputs = [], []
    model.register_forward_pre_hook(lambda m, args: calls.append((args[0].shape[1], m.training)))
    bn.register_forward_pre_hook(lambda m, args: bn_inputs.append(args[0].detach().clone()))
    cfg = TrainConfig(epochs=1, batch=4, lr=0.05, seed=2, bn_batches=5, augment="shift")
    train(model, data, cfg)
    steps = len(data) // (cfg.batch * 4)
    assert len(calls) == steps + cfg.bn_batches and all(training for _, training in calls)
    widths = [n for n, _ in calls[:steps]]
    assert set(widths) == {1, 4} and 3 <= widths.count(1) <= 16, widths
    assert bn.num_batches_tracked.item() == cfg.bn_batches
    recomputed = torch.stack([x.mean((0, 2, 3)) for x in bn_inputs[-cfg.bn_batches:]]).mean(0)
    torch.testing.assert_close(bn.running_mean, recomputed, rtol=1e-4, atol=1e-5)
    assert bn.momentum == 0.1 and not model.training


def test_bn_batches_zero_keeps_the_training_running_averages(data):
    model = fresh()
    train(model, data, TrainConfig(epochs=1, batch=4, lr=0.05, seed=2, bn_batches=0, augment="shift"))
    bn = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert bn.num_batches_tracked.item() == len(data) // 16


def test_camera_augmentation_changes_most_images_and_puts_a_scene_behind_them():
    x = torch.from_numpy(shipped_sample("validation").images[:400])
    out = augment_images(x, "camera", torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == torch.uint8
    changed = (out.int() - x.int()).abs().flatten(1).amax(1) > 8
    assert changed.float().mean() > 0.7  # 80 % of images get effects (20 % stay clean)
    corners = torch.cat([out[:, 0, :3, :3].flatten(1), out[:, 0, -3:, -3:].flatten(1)], 1).float().mean(1)
    black = torch.cat([x[:, 0, :3, :3].flatten(1), x[:, 0, -3:, -3:].flatten(1)], 1).float().mean(1)
    dark = black < 2  # garments whose corners are black (most of Fashion-MNIST)
    assert dark.sum() > 300 and (corners[dark] > 15).float().mean() > 0.3  # scenes behind the object, not black
    again = augment_images(x, "camera", torch.Generator().manual_seed(0))
    assert torch.equal(out, again)  # a seed gives the same images
    assert not torch.equal(out, augment_images(x, "camera", torch.Generator().manual_seed(1)))


def test_shift_augmentation_moves_or_flips_and_none_keeps_the_images():
    x = torch.from_numpy(shipped_sample("validation").images[:200])
    assert torch.equal(augment_images(x, "none", torch.Generator().manual_seed(0)), x)
    out = augment_images(x, "shift", torch.Generator().manual_seed(0))
    assert (out != x).flatten(1).any(1).float().mean() > 0.5
    assert out.float().sum((1, 2, 3)).sub(x.float().sum((1, 2, 3))).abs().div(x.float().sum((1, 2, 3))).median() < 0.2


class Captured(Exception):
    pass


@pytest.mark.parametrize("seed", ["0", "7", "123"])
def test_cli_passes_its_options_to_the_recipe(tmp_path, monkeypatch, seed):
    """`edge-mimo train --seed S --single-prob P --augment A ...` reaches the recipe as TrainConfig(seed=S, ...):
    the recipe's own batches, augmentation and width draws depend on it, not only the initial weights."""
    seen = {}

    def fake_train(model, data, cfg, **kw):
        seen["cfg"] = cfg
        raise KeyboardInterrupt  # stop before any training: `edge-mimo train` then exits 130

    monkeypatch.setattr(train_pkg, "train", fake_train)
    folder = tmp_path / "data"
    sample = shipped_sample("validation")
    for split, part in (("train", slice(0, 40)), ("test", slice(40, 60))):
        for i, (img, label) in enumerate(zip(sample.images[part], sample.labels[part])):
            (folder / split / str(label)).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(folder / split / str(label) / f"{i}.png"), img[0])
    rc = main(["train", "--dataset", str(folder), "--epochs", "3", "--seed", seed, "--single-prob", "0.35",
               "--augment", "shift", "--batch", "8", "--mixup", "0.2", "--depth", "10", "--widen", "1",
               "--stem-channels", "8", "-o", str(tmp_path / "m")])
    assert rc == 130
    cfg = seen["cfg"]
    assert (cfg.seed, cfg.single_prob, cfg.augment, cfg.batch, cfg.epochs, cfg.mixup) == (
        int(seed), 0.35, "shift", 8, 3, 0.2)


def test_the_recipe_seed_alone_changes_the_run(data):
    """Same initial weights, recipe seeds 0 and 1: different batches, so different weights; seed 0 twice: equal."""
    runs = []
    for seed in (0, 0, 1):
        model = fresh()
        train(model, data.subset(slice(0, 128)), TrainConfig(epochs=1, batch=4, lr=0.05, seed=seed, bn_batches=1,
                                                               augment="shift"))
        runs.append(model.state_dict())
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])
    assert not all(torch.equal(runs[0][k], runs[2][k]) for k in runs[0])
