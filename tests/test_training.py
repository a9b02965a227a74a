"""The training recipe on a real Fashion-MNIST subset, and the IDX reader."""

import gzip

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
    cfg = TrainConfig(epochs=3, batch=32, lr=0.1, seed=0, bn_batches=10)
    before = evaluate(model, val.images, val.labels, widths=[1, 4])
    history = train(model, data, cfg)
    assert len(history["epochs"]) == 3
    results = evaluate(model, val.images, val.labels, widths=[1, 4])
    # Held-out loss falls at both widths; four images in one pass learn more slowly than one.
    assert results[1]["nll"] < before[1]["nll"] - 0.5
    assert results[4]["nll"] < before[4]["nll"] - 0.2
    assert results[1]["accuracy"] > 0.3 and results[4]["accuracy"] > 0.2  # chance is 0.1


@needs_fashion_mnist
def test_training_is_deterministic_and_resumes(tmp_path):
    data = load_fashion_mnist("train").subset(slice(0, 1024))
    cfg = TrainConfig(epochs=2, batch=16, lr=0.05, seed=3, bn_batches=4)

    def fresh():
        torch.manual_seed(0)
        return build_model(ModelConfig(**TINY))

    a, b = fresh(), fresh()
    train(a, data, cfg, checkpoint=tmp_path / "a.ckpt")
    train(b, data, cfg)
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(pa, pb), name
    # A run that finds a finished checkpoint resumes at its last step and changes no weight.
    c = fresh()
    history = train(c, data, cfg, checkpoint=tmp_path / "a.ckpt")
    assert history["epochs"] == []
    trained = {k: v for k, v in a.state_dict().items() if "running" not in k and "num_batches" not in k}
    for name, value in trained.items():
        assert torch.equal(value, c.state_dict()[name]), name


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
