"""The training recipe on a real Fashion-MNIST subset, and the IDX reader."""

import dataclasses
import gzip
import signal

import numpy as np
import pytest
import torch

from edge_mimo.datasets import load_fashion_mnist, read_idx
from edge_mimo.models import ModelConfig, build_model
from edge_mimo.train import TrainConfig, evaluate, train
from edge_mimo.train.recipe import augment

from .conftest import needs_fashion_mnist

torch.set_num_threads(2)
TINY = dict(capacity=4, depth=10, widen=1, stem_channels=8, base_width=8)


@needs_fashion_mnist
def test_fashion_mnist_splits():
    train_set, val, test = (load_fashion_mnist(s) for s in ("train", "val", "test"))
    assert (len(train_set), len(val), len(test)) == (57000, 3000, 10000)
    assert train_set.images.shape[1:] == (1, 28, 28) and train_set.images.dtype == np.uint8
    assert set(np.unique(test.labels)) == set(range(10))
    full = load_fashion_mnist("full-train")
    assert np.array_equal(full.images[-3000:], val.images)  # the held-out tail is the validation split


@needs_fashion_mnist
def test_tiny_training_run_reduces_loss_and_beats_chance():
    data = load_fashion_mnist("train").subset(slice(0, 4096))
    val = load_fashion_mnist("val").subset(slice(0, 400))
    torch.manual_seed(0)
    model = build_model(ModelConfig(**dict(TINY, stem_channels=16, base_width=16)))
    # the recipe learns (camera augmentation makes 3 epochs on 4k images too few to tell)
    cfg = TrainConfig(epochs=3, batch=32, lr=0.1, seed=0, bn_batches=10, augment="shift")
    before = evaluate(model, val.images, val.labels, widths=[1, 4])
    history = train(model, data, cfg)
    assert len(history["epochs"]) == 3
    results = evaluate(model, val.images, val.labels, widths=[1, 4])
    # Held-out loss falls at both widths; four images in one pass learn more slowly than one.
    assert results[1]["nll"] < before[1]["nll"] - 0.5
    assert results[4]["nll"] < before[4]["nll"] - 0.2
    assert results[1]["accuracy"] > 0.3 and results[4]["accuracy"] > 0.2  # chance is 0.1


def fresh_tiny_model():
    torch.manual_seed(0)
    return build_model(ModelConfig(**TINY))


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.fixture(scope="module")
def tiny_data():
    return load_fashion_mnist("train").subset(slice(0, 1024))


# 1024 images in groups of 4, 16 groups a step: 16 steps an epoch, 32 in all; checkpoints every 5 steps
RESUMABLE = TrainConfig(epochs=2, batch=16, lr=0.05, seed=3, bn_batches=4, checkpoint_every=5)


@pytest.fixture(scope="module")
def uninterrupted(tiny_data):
    model = fresh_tiny_model()
    history = train(model, tiny_data, RESUMABLE)
    return model, history


@needs_fashion_mnist
def test_training_is_deterministic(tiny_data, uninterrupted, tmp_path):
    again = fresh_tiny_model()
    train(again, tiny_data, RESUMABLE, checkpoint=tmp_path / "a.ckpt")  # writing checkpoints changes nothing
    assert same_weights(again, uninterrupted[0])


@needs_fashion_mnist
@pytest.mark.parametrize("how, saved_at", [("ctrl-c", 23), ("crash", 20)])
def test_a_run_stopped_mid_way_resumes_to_the_uninterrupted_weights(tiny_data, uninterrupted, tmp_path, monkeypatch,
                                                                    how, saved_at):
    """Stopped at step 23 of 32 (mid second epoch): by Ctrl-C, which finishes the step and saves; or by a crash,
    which loses the steps since the checkpoint of step 20. The resumed run ends with the uninterrupted weights."""
    import edge_mimo.train.recipe as recipe

    real, steps = recipe.slot_loss, [0]

    def stop_at_step_23(*args):
        steps[0] += 1
        if steps[0] == 23:
            if how == "ctrl-c":
                signal.raise_signal(signal.SIGINT)
            else:
                raise RuntimeError("killed")
        return real(*args)

    monkeypatch.setattr(recipe, "slot_loss", stop_at_step_23)
    ckpt = tmp_path / "run.ckpt"
    with pytest.raises(KeyboardInterrupt if how == "ctrl-c" else RuntimeError):
        train(fresh_tiny_model(), tiny_data, RESUMABLE, checkpoint=ckpt)
    assert torch.load(ckpt, weights_only=True)["step"] == saved_at
    monkeypatch.setattr(recipe, "slot_loss", real)
    resumed = fresh_tiny_model()
    history = train(resumed, tiny_data, RESUMABLE, checkpoint=ckpt)
    assert same_weights(resumed, uninterrupted[0])
    assert [e["loss"] for e in history["epochs"]] == [e["loss"] for e in uninterrupted[1]["epochs"]]


@needs_fashion_mnist
def test_mixup_changes_the_updates(tiny_data, uninterrupted):
    model = fresh_tiny_model()
    history = train(model, tiny_data, dataclasses.replace(RESUMABLE, mixup=0.4))
    assert history["config"]["mixup"] == 0.4 and np.isfinite([e["loss"] for e in history["epochs"]]).all()
    assert not same_weights(model, uninterrupted[0])  # mixed inputs and targets: other gradients from step 1


def test_augment_keeps_shape_and_content():
    gen = torch.Generator().manual_seed(0)
    x = torch.zeros(8, 1, 28, 28, dtype=torch.uint8)
    x[:, :, 10:18, 10:18] = 200
    out = augment(x, gen)
    assert out.shape == x.shape and out.dtype == torch.uint8
    assert (out.sum((1, 2, 3)) == x.sum((1, 2, 3))).all()  # a 2-pixel shift keeps the centred patch


def test_idx_reader_refuses_truncated_files(tmp_path):
    header = bytes([0, 0, 8, 3]) + (5).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2
    good = tmp_path / "good-idx3-ubyte.gz"
    good.write_bytes(gzip.compress(header + bytes(5 * 28 * 28)))
    assert read_idx(good).shape == (5, 28, 28)
    bad = tmp_path / "bad-idx3-ubyte"
    bad.write_bytes(header + bytes(100))
    with pytest.raises(ValueError, match="truncated"):
        read_idx(bad)
    (tmp_path / "junk").write_bytes(b"\x89PNG....")
    with pytest.raises(ValueError, match="not an unsigned-byte IDX"):
        read_idx(tmp_path / "junk")
