"""`edge-mimo train`, `info` and `targets` end to end, on tiny datasets written in each documented format
(Fashion-MNIST IDX files, CIFAR-10 python batches, image folders with and without test/), and the loaders; and
`edge-mimo train` as users run it: seeds, tiny runs, interruption and resume, image folders."""

import gzip
import json
import logging
import pickle
import signal

import cv2
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from edge_mimo.cli.main import main
from edge_mimo.datasets import (FOLDER_HOLDOUT_SHARE, holdout_split, load_cifar10, load_dataset, load_fashion_mnist,
                                load_image_folder, shipped_sample)
from edge_mimo.models import ModelConfig, build_model
from edge_mimo.models.weights import load_model
from edge_mimo.train import TrainConfig, train

from .conftest import needs_fashion_mnist

# a tiny network: the point is the command's plumbing, not accuracy
TINY = ["--depth", "10", "--widen", "1", "--stem-channels", "8", "--epochs", "1", "--batch", "8", "--threads", "2",
        "--augment", "shift", "--seed", "1"]


def write_idx(path, array: np.ndarray) -> None:
    """An unsigned-byte IDX file (gzipped when the name ends in .gz), as Debian's dataset-fashion-mnist ships."""
    header = bytes([0, 0, 8, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)


@pytest.fixture(scope="module")
def fake_fashion_mnist(tmp_path_factory):
    """3,200 training images (the last 3,000 held out as validation) and 40 test images; the test files unzipped."""
    root = tmp_path_factory.mktemp("fashion")
    rng = np.random.default_rng(0)
    for prefix, count, suffix in (("train", 3200, ".gz"), ("t10k", 40, "")):
        labels = np.arange(count) % 10
        images = rng.integers(0, 40, (count, 28, 28)) + labels[:, None, None] * 20  # brightness tells the class
        write_idx(root / f"{prefix}-images-idx3-ubyte{suffix}", images)
        write_idx(root / f"{prefix}-labels-idx1-ubyte{suffix}", labels)
    return root


def test_fashion_mnist_loader_reads_gz_and_plain_files_and_splits(fake_fashion_mnist):
    train, val, test, full = (load_fashion_mnist(s, fake_fashion_mnist) for s in ("train", "val", "test", "full-train"))
    assert (len(train), len(val), len(test), len(full)) == (200, 3000, 40, 3200)
    assert np.array_equal(np.concatenate([train.images, val.images]), full.images)
    assert full.images.shape[1:] == (1, 28, 28) and list(test.labels[:12]) == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]
    assert len(full.class_names) == 10
    with pytest.raises(ValueError, match="unknown Fashion-MNIST split"):
        load_fashion_mnist("holdout", fake_fashion_mnist)
    with pytest.raises(FileNotFoundError, match="dataset-fashion-mnist"):
        load_fashion_mnist("test", fake_fashion_mnist / "nowhere")
    assert len(load_dataset(f"fashion-mnist:{fake_fashion_mnist}", "test")) == 40


def test_train_on_fashion_mnist_files_with_mixup_checkpoint_then_info(fake_fashion_mnist, tmp_path, capsys):
    out, ckpt = tmp_path / "model", tmp_path / "runs" / "m.ckpt"
    rc = main(["train", "--dataset", f"fashion-mnist:{fake_fashion_mnist}", *TINY, "--mixup", "0.4",
               "--checkpoint", str(ckpt), "-o", str(out)])
    assert rc == 0 and ckpt.is_file()
    record = json.loads((out / "training.json").read_text())
    assert record["train_images"] == 200 and record["test_images"] == 40
    assert record["history"]["config"]["mixup"] == 0.4 and set(record["validation"]) == {"1", "2", "4"}
    model = load_model(out)
    assert model.config.capacity == 4 and model.config.depth == 10 and len(model.config.class_names) == 10
    capsys.readouterr()

    assert main(["info", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["recorded_test"] == record["test"] and info["trunk"] == "WRN-10-1" and info["widths"] == [1, 2, 4]
    assert info["parameters"] == sum(p.numel() for p in model.parameters())
    assert main(["info", str(out)]) == 0
    text = capsys.readouterr().out
    for n in ("1", "2", "4"):  # one row per width with the recorded test accuracy
        assert f"{record['test'][n]['accuracy']:.4f}" in text
    assert "WRN-10-1" in text and f"{info['parameters']:,}" in text

    # a warm start from that model: same architecture needed
    assert main(["train", "--dataset", f"fashion-mnist:{fake_fashion_mnist}", *TINY, "--depth", "16",
                 "--init", str(out), "-o", str(tmp_path / "other")]) == 2
    assert "different model" in capsys.readouterr().err and not (tmp_path / "other").exists()
    assert main(["train", "--dataset", f"fashion-mnist:{fake_fashion_mnist}", *TINY, "--init", str(out),
                 "-o", str(tmp_path / "warm")]) == 0
    assert json.loads((tmp_path / "warm" / "training.json").read_text())["init"] == str(out)


def test_info_without_a_training_record(tmp_path, capsys):
    from edge_mimo.models.default import DEFAULT_MODEL_DIR

    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("config.json", "model.safetensors"):
        (bare / name).write_bytes((DEFAULT_MODEL_DIR / name).read_bytes())
    assert main(["info", str(bare)]) == 0
    assert capsys.readouterr().out.count("(not recorded)") == 3


def write_cifar(root, per_batch: int = 4, test: int = 10) -> dict:
    """CIFAR-10 python batches: five training pickles, a test pickle and batches.meta, as the official archive."""
    root.mkdir()
    rng = np.random.default_rng(1)
    written = {}
    for name, count in [(f"data_batch_{i}", per_batch) for i in range(1, 6)] + [("test_batch", test)]:
        data = rng.integers(0, 256, (count, 3 * 32 * 32), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, count)]
        with open(root / name, "wb") as f:
            pickle.dump({b"data": data, b"labels": labels}, f)
        written[name] = (data, labels)
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    with open(root / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": names}, f)
    return written


def test_cifar10_batches_load_and_train(tmp_path):
    root = tmp_path / "cifar-10-batches-py"
    written = write_cifar(root)
    train = load_cifar10(root, "train")
    assert train.images.shape == (20, 3, 32, 32) and train.class_names[0] == "airplane"
    first = written["data_batch_1"][0][0]  # row-major: 1024 red, then green, then blue values
    assert np.array_equal(train.images[0, 1].ravel(), first[1024:2048])
    assert list(train.labels[4:8]) == written["data_batch_2"][1]
    assert len(load_dataset(f"cifar10:{root}", "test")) == 10

    out = tmp_path / "model"
    assert main(["train", "--dataset", f"cifar10:{root}", *TINY, "--capacity", "2", "-o", str(out)]) == 0
    config = load_model(out).config
    assert (config.in_channels, config.image_size, config.capacity) == (3, 32, 2)
    assert config.class_names[-1] == "truck" and len(config.mean) == 3
    record = json.loads((out / "training.json").read_text())
    assert record["test_images"] == 10 and "validation" not in record

    (root / "data_batch_3").unlink()
    with pytest.raises(FileNotFoundError, match="data_batch_3"):
        load_cifar10(root, "train")


def write_folder(root, classes=("cat", "dog"), per_class: int = 10, size=(20, 24)) -> dict:
    """root/<class>/<n>.png colour images, each a flat colour that encodes its class and number."""
    colours = {}
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            colour = (10 * i, 100 * c + 20, 200 - 10 * i)  # BGR
            cv2.imwrite(str(root / name / f"{i}.png"), np.full(size + (3,), colour, np.uint8))
            colours[(name, i)] = colour
    return colours


def test_image_folder_loader_content_and_errors(tmp_path):
    colours = write_folder(tmp_path / "a")
    (tmp_path / "a" / "cat" / "notes.txt").write_text("not an image")  # ignored: not an image suffix
    rgb = load_image_folder(tmp_path / "a", 16, 3)
    assert rgb.images.shape == (20, 3, 16, 16) and rgb.class_names == ("cat", "dog")
    assert list(rgb.labels) == [0] * 10 + [1] * 10
    b, g, r = colours[("dog", 3)]  # files sort as 0.png, 1.png, ...: dog/3.png is the 14th image
    assert (rgb.images[13, :, 0, 0] == (r, g, b)).all() and (rgb.images[13] == rgb.images[13, :, :1, :1]).all()
    gray = load_image_folder(tmp_path / "a", 8, 1)
    assert gray.images.shape == (20, 1, 8, 8)
    assert abs(int(gray.images[13, 0, 0, 0]) - (0.299 * r + 0.587 * g + 0.114 * b)) <= 1

    with pytest.raises(FileNotFoundError, match="no class folders"):
        load_image_folder(tmp_path / "missing", 16, 3)
    (tmp_path / "empty" / "cat").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="no images"):
        load_image_folder(tmp_path / "empty", 16, 3)
    (tmp_path / "a" / "dog" / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(ValueError, match="could not be decoded"):
        load_image_folder(tmp_path / "a", 16, 3)


def test_holdout_split_keeps_a_share_of_every_class_apart():
    labels = np.repeat(np.arange(3), [20, 9, 1])
    kept, held = holdout_split(labels)
    assert sorted(np.concatenate([kept, held]).tolist()) == list(range(30))  # a partition
    assert [int((labels[held] == c).sum()) for c in range(3)] == [round(20 * FOLDER_HOLDOUT_SHARE), 1, 0]
    assert np.array_equal(holdout_split(labels)[1], held)  # the same images every time


def test_train_on_image_folders_with_and_without_a_test_split(tmp_path, capsys):
    write_folder(tmp_path / "split" / "train")
    write_folder(tmp_path / "split" / "test", per_class=3)
    out = tmp_path / "m1"
    assert main(["train", "--dataset", str(tmp_path / "split"), *TINY, "--channels", "3", "--image-size", "16",
                 "-o", str(out)]) == 0
    record = json.loads((out / "training.json").read_text())
    assert (record["train_images"], record["test_images"]) == (20, 6)
    config = load_model(out).config
    assert (config.in_channels, config.image_size, config.class_names) == (3, 16, ("cat", "dog"))

    write_folder(tmp_path / "flat", per_class=10)
    out = tmp_path / "m2"
    capsys.readouterr()
    assert main(["train", "--dataset", str(tmp_path / "flat"), *TINY, "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "held out of the training folder" in printed
    record = json.loads((out / "training.json").read_text())
    assert (record["train_images"], record["test_images"]) == (18, 2) and "held out" in record["test_split"]
    config = load_model(out).config  # the input comes from the colour images themselves, and is said (issue 22.2)
    assert (config.in_channels, config.image_size) == (3, 20) and "input: 3x20x20 (colour" in printed


def test_train_refuses_to_replace_a_foreign_directory(tmp_path, capsys):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("years of work")
    assert main(["train", "--dataset", "shipped", *TINY, "-o", str(tmp_path / "mine")]) == 2
    assert "refusing to replace" in capsys.readouterr().err
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "years of work"


def test_shipped_samples_and_unknown_names():
    assert len(load_dataset("shipped", "train")) == len(shipped_sample("calibration"))
    assert len(load_dataset("shipped", "test")) == len(shipped_sample("validation"))
    with pytest.raises(FileNotFoundError, match="calibration"):
        shipped_sample("training")


def test_targets_command_lists_the_profiles(capsys):
    from edge_mimo.compile.targets import list_targets

    assert main(["targets", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {name: t.to_dict() for name, t in list_targets().items()}
    assert main(["targets"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(list_targets())
    orin = next(line for line in lines if line.startswith("jetson-orin"))
    assert "tensorrt" in orin and "SM 8.7" in orin


# -- `edge-mimo train` as users run it: seeds, tiny runs, interruption and resume ---------------------------

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
