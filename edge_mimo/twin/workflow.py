"""``edge-mimo twin``'s steps: train the equal-cost plain twin with the model's own recipe and data, compile both for
the user's target, assess both the same way, time both, and write the verdict per width."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

from ..datasets import ImageSet, holds_out_test_images, load_dataset, shipped_sample
from ..errors import ConfigError, NotFoundError
from ..models.config import CONFIG_FILE, TRAINING_FILE, ModelConfig
from ..models.default import resolve_model
from .assess import assess_bundle, frames_per_second
from .equal_cost import CHANNEL_MULTIPLE, plain_twin_config
from .verdict import compare, markdown

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class TwinOptions:
    """What ``edge-mimo twin`` does; the fields mirror its options."""
    model: str
    output: Path
    target: str = "cpu"
    epochs: int | None = None  # None: the model's own
    camera_images: int = 1000
    test_limit: int = 0  # 0: the whole test split
    streams: int = 8
    bench: bool = True
    threads: int = 0
    dataset: str | None = None  # None: the one the model's training.json names

    def __post_init__(self) -> None:
        from ..compile.targets import load_target

        load_target(self.target)  # an unknown target fails here, before any data is read or any twin trained
        if self.output.exists() and not self.output.is_dir():
            raise ConfigError(f"-o {self.output} is a file: give a folder for the twin, its bundles and the verdict")
        for name in ("camera_images", "test_limit", "streams", "threads"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < (1 if name == "streams" else 0):
                raise ConfigError(f"--{name.replace('_', '-')} must be a whole number >= "
                                  f"{1 if name == 'streams' else 0}, got {value!r}")
        if self.epochs is not None and (not isinstance(self.epochs, int) or self.epochs < 1):
            raise ConfigError(f"--epochs must be a whole number >= 1, got {self.epochs!r}")


def training_record(model_dir: Path) -> dict:
    """The model's training.json, with what the twin needs (dataset, recipe) checked."""
    path = model_dir / TRAINING_FILE
    if not path.is_file():
        raise ConfigError(f"{model_dir} has no {TRAINING_FILE}: the twin repeats the model's training recipe, so "
                          "it needs a model trained by `edge-mimo train`")
    try:
        record = json.loads(path.read_text())
        recipe, dataset = record["history"]["config"], record["dataset"]
    except (ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"{path} does not hold a training record (dataset, history.config): {e}") from None
    if not isinstance(recipe, dict) or not isinstance(dataset, str):
        raise ConfigError(f"{path}: history.config must be an object and dataset a string")
    return record


def recipe_of(record: dict, opts: TwinOptions, capacity: int):
    """The model's TrainConfig for its twin: as many images per step as the model took (``batch`` groups of
    ``capacity`` images), so the twin gets the same steps, images, schedule and compute; trained on this machine
    (its GPU when it has one, not the device or threads the model used); ``--epochs`` and ``--threads`` applied."""
    from ..train import TrainConfig

    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    recipe = {k: v for k, v in record["history"]["config"].items() if k in fields}
    if recipe.get("distill"):
        raise ConfigError("the model was trained on a teacher's soft targets: a fair twin needs the same teacher "
                          "(scripts/superposition_study.py does that); `edge-mimo twin` repeats label-only recipes")
    recipe.pop("self_distill", None)  # the model's own width-1 replicas: nothing to distil in a plain network
    recipe.pop("learn_keys", None)
    recipe["device"] = "auto"  # where the model trained is not part of its recipe: this machine's GPU, else the CPU
    recipe.pop("threads", None)
    recipe["batch"] = int(recipe.get("batch", fields["batch"].default)) * capacity
    if opts.epochs:
        recipe["epochs"] = opts.epochs
    if opts.threads:
        recipe["threads"] = opts.threads
    return TrainConfig(**recipe)


def load_splits(record: dict, config: ModelConfig, dataset: str | None = None) -> tuple[ImageSet, ImageSet]:
    """The model's training images (as many as it was trained on) and its test split, from ``dataset`` or, by
    default, the dataset its training record names."""
    spec = dataset or record["dataset"]
    try:
        train = load_dataset(spec, "train", config.image_size, config.in_channels)
    except NotFoundError as e:
        if dataset:
            raise
        raise NotFoundError(f"the model was trained on {spec!r}, which this machine lacks ({e}). Give the same "
                            "images with --dataset (e.g. --dataset fashion-mnist for Debian's copy)") from None
    count = record.get("train_images")
    if isinstance(count, int) and 0 < count < len(train):
        train = train.subset(slice(0, count))
    test = load_dataset(spec, "test", config.image_size, config.in_channels)
    if holds_out_test_images(spec):
        logger.info("testing on %d images held out of %s (never trained on)", len(test), spec)
    return train, test


def train_twin(model_dir: Path, config: ModelConfig, opts: TwinOptions, record: dict, train_set: ImageSet) -> Path:
    """Train the twin (resumable from ``OUTPUT/twin.ckpt``) unless ``OUTPUT/twin-model`` exists; returns its dir."""
    import torch

    from ..models import build_model
    from ..models.weights import save_model
    from ..train import train

    out = opts.output / "twin-model"
    twin = plain_twin_config(config, multiple=CHANNEL_MULTIPLE)
    if (out / CONFIG_FILE).is_file():
        try:
            trained = ModelConfig.load(out / CONFIG_FILE)
        except ConfigError as e:
            raise ConfigError(f"{out / CONFIG_FILE} is not a twin's config ({e}): delete {out} to train the twin "
                              "again") from None
        if trained != twin:
            raise ConfigError(f"{out} holds a twin of stages {'/'.join(map(str, trained.stage_widths))}, not the "
                              f"{'/'.join(map(str, twin.stage_widths))} this version makes (channels in multiples of "
                              f"{CHANNEL_MULTIPLE}): give another -o (or delete {out})")
        logger.info("twin already trained: %s", out)
        return out
    cfg = recipe_of(record, opts, config.capacity)
    logger.info("training the plain twin (WRN-%d, stages %s, stem %d) on %d images, %d epochs, the model's recipe",
                twin.depth, twin.stage_widths, twin.stem_channels, len(train_set), cfg.epochs)
    torch.manual_seed(cfg.seed)
    model = build_model(twin)
    history = train(model, train_set, cfg, checkpoint=opts.output / "twin.ckpt")
    save_model(model, out)
    (out / TRAINING_FILE).write_text(json.dumps(
        {"dataset": opts.dataset or record["dataset"], "train_images": len(train_set), "history": history,
         "twin_of": str(model_dir)}, indent=2) + "\n")
    return out


def compile_for(model_dir: Path, target: str, out: Path) -> Path:
    """The model's INT8 bundle for ``target`` at ``out``, calibrated and validated on its own data (compile's
    defaults), reused when already compiled; the gate reports, never refuses."""
    from ..bundle.manifest import Manifest, is_bundle
    from ..compile.pipeline import CompileOptions, compile_bundle
    from ..compile.targets import load_target

    if is_bundle(out):
        compiled, wanted = Manifest.load(out).target, load_target(target)
        if compiled is None or compiled.name != wanted.name:
            raise ConfigError(f"{out} was compiled for target {compiled.name if compiled else 'unknown'}, not "
                              f"{wanted.name}: give another -o (or delete {out.parent})")
    else:
        capacity = ModelConfig.load(model_dir / CONFIG_FILE).capacity
        compile_bundle(CompileOptions(model=str(model_dir), target=target, max_width=capacity, allow_drop=True,
                                      output=out))
    return out


def run_twin(opts: TwinOptions) -> dict:
    """All the steps; writes ``OUTPUT/twin.json`` and ``OUTPUT/twin.md`` and returns the result."""
    model_dir = resolve_model(opts.model)
    record = training_record(model_dir)
    config = ModelConfig.load(model_dir / CONFIG_FILE)
    if config.capacity < 2:
        raise ConfigError(f"{model_dir} is a plain network already (capacity {config.capacity}): give a superposed "
                          "model")
    opts.output.mkdir(parents=True, exist_ok=True)
    train_set, test = load_splits(record, config, opts.dataset)
    twin_dir = train_twin(model_dir, config, opts, record, train_set)
    bundles = {name: compile_for(path, opts.target, opts.output / "bundles" / name)
               for name, path in (("model", model_dir), ("twin", twin_dir))}
    if opts.test_limit:
        test = test.subset(slice(0, opts.test_limit))
    ood = shipped_sample("digits-ood").images[:500]
    threads = opts.threads or None
    assessed = {k: assess_bundle(b, test.images, test.labels, ood, opts.camera_images, threads)
                for k, b in bundles.items()}
    fps = None
    if opts.bench:
        timed = {p: (bundles["model"], p) for p in assessed["model"]["camera"]}
        fps = frames_per_second(dict(timed, twin=(bundles["twin"], "throughput")), opts.streams,
                                threads=opts.threads or 2)
    rows = compare(assessed["model"], assessed["twin"], fps)
    result = {"model": str(model_dir), "twin": str(twin_dir), "target": opts.target, "streams": opts.streams,
              "assessed": assessed, "frames_per_second": fps, "verdict": rows}
    twin = ModelConfig.load(twin_dir / CONFIG_FILE)
    title = (f"{config.arch} N={config.capacity} {config.body} against its plain twin (WRN-{twin.depth}, stages "
             f"{'/'.join(map(str, twin.stage_widths))}), target {opts.target}")
    (opts.output / "twin.json").write_text(json.dumps(result, indent=2) + "\n")
    (opts.output / "twin.md").write_text(markdown(rows, title) + "\n")
    return result
