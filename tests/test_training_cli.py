"""`edge-mimo train` as users run it: seeds, tiny runs, interruption and resume, image folders."""

import json
import logging
import signal

import cv2
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from edge_mimo.cli.main import main
from edge_mimo.datasets import load_dataset, load_fashion_mnist, shipped_sample
from edge_mimo.models import ModelConfig, build_model
from edge_mimo.train import TrainConfig, train

from .conftest import needs_fashion_mnist

torch.set_num_threads(2)
TINY_ARGS = ["--depth", "10", "--widen", "1", "--stem-channels", "8", "--batch", "16", "--threads", "2"]


def weights(folder):
    return load_file(str(folder / "model.safetensors"))


@pytest.fixture(scope="module")
def garment_folder(tmp_path_factory):
    """A small image-folder dataset (train/ and test/) of shipped Fashion-MNIST garments: quick CLI runs."""
    root = tmp_path_factory.mktemp("garments")
    sample = shipped_sample("validation")
    for split, part in (("train", slice(0, 512)), ("test", slice(512, 576))):
        for i, (img, label) in enumerate(zip(sample.images[part], sample.labels[part])):
            folder = root / split / f"{label}-{sample.class_names[label].replace('/', '-')}"
            folder.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(folder / f"{i}.png"), img[0])
    return str(root)


def test_cli_seed_gives_identical_weights_and_another_seed_does_not(tmp_path, garment_folder):
    runs = {}
    for name, seed in (("a", "5"), ("b", "5"), ("c", "6")):
        out = tmp_path / name
        assert main(["train", "--dataset", garment_folder, "--limit", "256", "--epochs", "1", "--seed", seed,
                     *TINY_ARGS, "-o", str(out)]) == 0
        runs[name] = weights(out)
    assert all(torch.equal(runs["a"][k], runs["b"][k]) for k in runs["a"])
    assert not all(torch.equal(runs["a"][k], runs["c"][k]) for k in runs["a"])


@pytest.mark.parametrize("limit", ["64", "128"])  # 1 and 2 steps: OneCycleLR used to divide by zero here
def test_runs_of_one_or_two_steps_train(tmp_path, limit, garment_folder):
    out = tmp_path / "m"
    assert main(["train", "--dataset", garment_folder, "--limit", limit, "--epochs", "1", *TINY_ARGS,
                 "-o", str(out)]) == 0
    record = json.loads((out / "training.json").read_text())
    assert record["history"]["epochs"][-1]["step"] == int(limit) // 64
    assert all(torch.isfinite(v.float()).all() for v in weights(out).values())


@needs_fashion_mnist
def test_interrupted_run_resumes_to_the_uninterrupted_weights_and_history(tmp_path):
    """Ctrl-C after epoch 1 of 3 writes the checkpoint; the same command then finishes the run, and weights,
    optimizer path and loss history equal a run that was never interrupted."""
    data = load_fashion_mnist("train").subset(slice(0, 768))
    val = load_fashion_mnist("val").subset(slice(0, 64))
    cfg = TrainConfig(epochs=3, batch=16, lr=0.05, seed=3, bn_batches=2, checkpoint_every=5)
    config = ModelConfig(capacity=4, depth=10, widen=1, stem_channels=8, base_width=8)

    def fresh():
        torch.manual_seed(0)
        return build_model(config)

    whole = fresh()
    whole_history = train(whole, data, cfg, val=val)

    class CtrlCAfterFirstEpoch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.getMessage().startswith("epoch 1:"):
                signal.raise_signal(signal.SIGINT)

    ckpt = tmp_path / "run.ckpt"
    cut = fresh()
    recipe_log, handler = logging.getLogger("edge_mimo.train.recipe"), CtrlCAfterFirstEpoch()
    level = recipe_log.level
    recipe_log.addHandler(handler)
    recipe_log.setLevel(logging.INFO)
    try:
        with pytest.raises(KeyboardInterrupt):
            train(cut, data, cfg, checkpoint=ckpt, val=val)
    finally:
        recipe_log.removeHandler(handler)
        recipe_log.setLevel(level)
    state = torch.load(ckpt, weights_only=True)
    assert 0 < state["step"] < 3 * 12  # stopped mid-way, at a step boundary
    resumed = fresh()
    history = train(resumed, data, cfg, checkpoint=ckpt, val=val)
    for (name, a), b in zip(whole.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
    assert [e["loss"] for e in history["epochs"]] == [e["loss"] for e in whole_history["epochs"]]
    assert len(history["epochs"]) == 3


def test_image_folder_without_test_split_holds_out_images(tmp_path, capsys):
    rng = np.random.default_rng(0)
    for cls in ("cat", "dog"):
        (tmp_path / "pets" / cls).mkdir(parents=True)
        for i in range(20):
            img = rng.integers(0, 255, (12, 12), dtype=np.uint8)
            cv2.imwrite(str(tmp_path / "pets" / cls / f"{i}.png"), img)
    spec = str(tmp_path / "pets")
    train_set = load_dataset(spec, "train", size=8)
    test_set = load_dataset(spec, "test", size=8)
    assert (len(train_set), len(test_set)) == (36, 4)
    assert sorted(np.bincount(test_set.labels)) == [2, 2]  # 10 % of each class
    pixels = {img.tobytes() for img in train_set.images}
    assert not any(img.tobytes() in pixels for img in test_set.images)  # never trained on
    assert np.array_equal(load_dataset(spec, "test", size=8).images, test_set.images)  # the same every time
    out = tmp_path / "m"
    assert main(["train", "--dataset", spec, "--image-size", "8", "--epochs", "1", "--augment", "shift",
                 *TINY_ARGS, "-o", str(out)]) == 0
    assert "held out of the training folder" in capsys.readouterr().out
    record = json.loads((out / "training.json").read_text())
    assert record["test_images"] == 4 and "held out" in record["test_split"]
