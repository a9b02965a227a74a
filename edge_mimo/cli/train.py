"""``edge-mimo train``: train a superposed classifier and save it as a model directory."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

from ..atomic import check_replaceable
from ..datasets import (AUGMENT_PRESETS, FOLDER_HOLDOUT_SHARE, NAMED_DATASETS, holds_out_test_images,
                        image_folder_input, load_dataset, load_fashion_mnist)
from ..errors import ConfigError, DataError, NotFoundError
from ..models.config import ARCHITECTURES, OPTIMIZERS, TRAINING_FILE, ModelConfig
from ..models.default import resolve_model


def add_parser(sub) -> None:
    """Register ``edge-mimo train``."""
    p = sub.add_parser("train", help="train a MIMOConv / MIMOFormer / MIMO / MixMo classifier",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--dataset", default="fashion-mnist",
                   help="fashion-mnist[:ROOT], cifar10:ROOT, or an image folder ROOT/<class>/<image> "
                        "(with train/ and test/ subfolders if it has them)")
    p.add_argument("--arch", default="mimoconv", choices=ARCHITECTURES,
                   help="plain: a non-superposed network of the same stem and trunk (the baseline)")
    p.add_argument("--capacity", type=int, help="N: slots per superposed pass (default 4; 1 for plain)")
    p.add_argument("--depth", type=int, default=16, help="WideResNet depth (6k+4)")
    p.add_argument("--widen", type=int, default=4, help="WideResNet widening factor")
    p.add_argument("--stem-channels", type=int, default=32)
    t = p.add_argument_group("MIMOFormer (--arch mimoformer)")
    t.add_argument("--patch-size", type=int, default=4, help="square patches, one token each")
    t.add_argument("--embedding", default="conv", choices=["linear", "conv"],
                   help="linear patches, or a small conv stem down to the same token grid")
    t.add_argument("--embed-dim", type=int, default=128, help="token width")
    t.add_argument("--heads", type=int, default=4, help="attention heads")
    t.add_argument("--layers", type=int, default=4, help="transformer blocks")
    t.add_argument("--random-features", type=int, default=64, help="FAVOR+ random features per head")
    t.add_argument("--mlp-ratio", type=int, default=2, help="MLP hidden width / token width")
    p.add_argument("--image-size", type=int,
                   help="for image folders: resize to this size (default: the images' median side, at most 64)")
    p.add_argument("--channels", type=int, choices=[1, 3],
                   help="for image folders: 1 (grey) or 3 (colour); default: 3 if the images have colour")
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--steps", type=int,
                   help="train for about this many steps instead of --epochs (small datasets: an epoch is few steps)")
    p.add_argument("--batch", type=int,
                   help="superposed groups per step (default 64; 32 when that would make fewer than 8 steps an epoch)")
    p.add_argument("--optimizer", choices=OPTIMIZERS,
                   help="default: adamw for mimoformer, sgd (Nesterov) for the convolutional models")
    p.add_argument("--lr", type=float, help="one-cycle peak learning rate (default: 0.1 sgd, 0.002 adamw)")
    p.add_argument("--weight-decay", type=float, help="default: 5e-4 sgd, 0.05 adamw")
    p.add_argument("--single-prob", type=float, default=0.2, help="share of steps at width 1")
    p.add_argument("--mixup", type=float, default=0.0, help="mixup Beta alpha (0: off)")
    p.add_argument("--augment", default="camera", choices=AUGMENT_PRESETS,
                   help="camera: background, scale, placement, rotation, gain, gamma, low light, blur, noise, "
                        "JPEG (edge_mimo/train/camera_augment.py); shift: 2-pixel shifts and flips; none")
    p.add_argument("--limit", type=int, default=0, help="train on the first LIMIT images only (smoke runs)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="auto: CUDA when available")
    p.add_argument("--checkpoint", type=Path,
                   help="resumable checkpoint file, written every --checkpoint-every steps, each epoch and on "
                        "Ctrl-C (the run resumes from it if it exists); keep it outside the work tree, "
                        "e.g. ~/.cache/edge-mimo/runs/NAME.ckpt")
    p.add_argument("--init", type=Path, help="start from this model directory's weights (same architecture): "
                                            "a warm start; record it with the model's lineage")
    p.add_argument("--new-head", action="store_true",
                   help="with --init: keep that model's body and input, train a new classifier head for this "
                        "dataset's classes (fine-tuning, e.g. --init default on a small image folder)")
    p.add_argument("--checkpoint-every", type=int, default=200, help="steps between checkpoints")
    p.add_argument("--eval-every", type=int, default=1, help="epochs between validation evaluations")
    p.add_argument("-o", "--output", type=Path, required=True, help="model directory to write")
    p.set_defaults(run=run)


def _check_args(args) -> None:
    """Refuse options that cannot train (before loading anything); the recipe's own are TrainConfig's checks."""
    from ..train import TrainConfig

    recipe = dict(epochs=args.epochs, batch=args.batch, lr=args.lr, weight_decay=args.weight_decay,
                  single_prob=args.single_prob, mixup=args.mixup, augment=args.augment)
    TrainConfig(**{k: v for k, v in recipe.items() if v is not None})
    if args.steps is not None and args.steps < 1:
        raise ConfigError(f"--steps must be at least 1, got {args.steps}")
    if args.image_size is not None and not 8 <= args.image_size <= 512:
        raise ConfigError(f"--image-size must be between 8 and 512 pixels, got {args.image_size}")
    if args.limit < 0:
        raise ConfigError(f"--limit must be >= 0 (0: all images), got {args.limit}")
    if args.new_head and not args.init:
        raise ConfigError("--new-head fine-tunes the model given with --init: add --init MODEL (e.g. --init default)")


def _input_shape(args, start) -> tuple[int, int]:
    """(channels, side) of the model's input: as told, else the ``--init`` model's, else from an image folder's
    images, else 1 x 28."""
    if args.channels is not None and args.image_size is not None:
        return args.channels, args.image_size
    if start is not None:  # a warm start keeps the model's input
        return args.channels or start.config.in_channels, args.image_size or start.config.image_size
    if args.dataset.partition(":")[0] in NAMED_DATASETS:
        return args.channels or 1, args.image_size or 28
    channels, side = image_folder_input(args.dataset)
    return args.channels or channels, args.image_size or side


def _absolute(spec: str) -> str:
    """A dataset spec that still names the same data from another working directory (compile reads it)."""
    kind, sep, root = spec.partition(":")
    if kind in NAMED_DATASETS:
        return f"{kind}:{Path(root).resolve()}" if sep and root else spec
    return str(Path(spec).resolve())


def _load(args):
    train = load_dataset(args.dataset, "train", args.image_size, args.channels)
    if args.dataset.startswith("fashion-mnist"):
        root = args.dataset.partition(":")[2] or None
        val = load_fashion_mnist("val", root) if root else load_fashion_mnist("val")
    else:
        val = None
    test = load_dataset(args.dataset, "test", args.image_size, args.channels)
    note = "the dataset's test split"
    if holds_out_test_images(args.dataset):
        note = (f"{len(test)} images held out of the training folder ({FOLDER_HOLDOUT_SHARE:.0%} of each class, "
                "never trained on): it has no test/ folder")
        print(f"note: testing on {note}")
    return train, val, test, note


def _load_init(path: Path):
    """The ``--init`` model, or a one-line error naming the file."""
    from ..models.weights import load_model

    try:
        return load_model(resolve_model(path))
    except NotFoundError:
        raise
    except Exception as e:  # a truncated or foreign safetensors / config file
        raise DataError(f"--init {path} cannot be loaded ({type(e).__name__}: {str(e)[:200]}): pass a model "
                        "directory written by `edge-mimo train`, complete") from None


def _check_checkpoint(path: Path | None, model, cfg, images: int) -> None:
    """Refuse a ``--checkpoint`` that exists but is unreadable or belongs to another run (model, data, options)."""
    if path is None or not path.exists():
        return
    import torch

    fix = f"delete {path} to start afresh, or pass the --checkpoint of this run"
    try:
        state = torch.load(path, weights_only=True, map_location="cpu")
        weights, saved = state["model"], json.loads(state["history"])["config"]
        perm = len(state["perm"])
    except Exception as e:
        raise DataError(f"--checkpoint {path} is not a readable edge-mimo checkpoint ({type(e).__name__}): {fix}") \
            from None
    own = model.state_dict()
    if set(weights) != set(own) or any(tuple(weights[k].shape) != tuple(own[k].shape) for k in own):
        raise DataError(f"--checkpoint {path} holds another model's weights: {fix}")
    changed = [k for k, v in dataclasses.asdict(cfg).items()
               if k not in ("threads", "device", "checkpoint_every", "eval_every") and saved.get(k) != v]
    if changed or perm != images:
        what = f"options {', '.join(changed)} differ" if changed else f"{perm} training images, not {images}"
        raise DataError(f"--checkpoint {path} is of another run ({what}): {fix}")


def run(args) -> int:
    """Train, evaluate and save a model directory with training.json; returns the exit status."""
    import torch  # the compile extra

    from ..models import build_model
    from ..models.weights import CONFIG_FILE, save_model
    from ..train import TrainConfig, evaluate, train

    _check_args(args)
    check_replaceable(args.output, CONFIG_FILE)  # before hours of training, not after
    capacity = args.capacity if args.capacity is not None else (1 if args.arch == "plain" else 4)
    start = _load_init(args.init) if args.init else None
    args.channels, args.image_size = _input_shape(args, start)
    data, val, test, test_note = _load(args)
    if args.limit:
        data = data.subset(slice(0, args.limit))
    classes = len(data.class_names) or len(np.unique(data.labels))
    if classes < 2:
        raise DataError(f"{args.dataset} has {classes} class: a classifier needs at least two class folders "
                        "(ROOT/<class>/<image>)")
    x = data.images.astype(np.float32) / 255.0
    channels = data.images.shape[1]
    config = ModelConfig(
        arch=args.arch, capacity=capacity, in_channels=channels, image_size=data.images.shape[-1],
        num_classes=len(data.class_names) or int(data.labels.max()) + 1, class_names=data.class_names,
        mean=tuple(round(float(v), 4) for v in x.mean((0, 2, 3))),
        std=tuple(round(float(v), 4) for v in x.std((0, 2, 3))),
        stem_channels=args.stem_channels, depth=args.depth, widen=args.widen,
        patch_size=args.patch_size, embedding=args.embedding, embed_dim=args.embed_dim, heads=args.heads,
        layers=args.layers, random_features=args.random_features, mlp_ratio=args.mlp_ratio,
    )
    del x
    print(f"input: {channels}x{config.image_size}x{config.image_size} "
          f"({'colour' if channels == 3 else 'grey'}; --channels / --image-size to change), "
          f"{config.num_classes} classes: {', '.join(config.class_names) or '(unnamed)'}")
    torch.manual_seed(args.seed)  # the initial weights are part of the seeded run
    model = build_model(config)
    if start is not None and args.new_head:
        # fine-tuning: the starting model's body (and its input normalisation), a fresh head for these classes
        config = dataclasses.replace(start.config, num_classes=config.num_classes, class_names=config.class_names)
        model = build_model(config)
        own = model.state_dict()
        kept = {k: v for k, v in start.state_dict().items() if k in own and v.shape == own[k].shape}
        model.load_state_dict(kept, strict=False)
        print(f"fine-tuning {args.init}: {len(kept)} of {len(own)} tensors kept, "
              f"new: {', '.join(sorted(set(own) - set(kept)))}")
    elif start is not None:
        if dataclasses.replace(start.config, mean=config.mean, std=config.std) != config:
            raise ConfigError(f"--init {args.init} is a different model ({start.config}) from the one these "
                              f"arguments describe ({config}): pass the same architecture options, or --new-head "
                              "to keep its body and train a new head for these classes")
        model, config = start, start.config
    optimizer = args.optimizer or ("adamw" if config.arch == "mimoformer" else "sgd")
    lr, decay = OPTIMIZERS[optimizer]
    batch = args.batch or (64 if len(data) >= 64 * config.capacity * 8 else 32)  # 32 on small data (measured)
    per_epoch = math.ceil(len(data) / (batch * config.capacity))
    epochs = math.ceil(args.steps / per_epoch) if args.steps else args.epochs
    print(f"{len(data)} images, {batch} groups of {config.capacity} a step: {per_epoch} step(s) an epoch, "
          f"{epochs} epochs = {epochs * per_epoch} steps"
          + (" (few: on small data pass --steps 600 or more, see the README)" if epochs * per_epoch < 300 else ""))
    cfg = TrainConfig(epochs=epochs, batch=batch, optimizer=optimizer,
                      lr=lr if args.lr is None else args.lr,
                      weight_decay=decay if args.weight_decay is None else args.weight_decay,
                      single_prob=args.single_prob, mixup=args.mixup, augment=args.augment,
                      seed=args.seed, threads=args.threads, device=args.device,
                      checkpoint_every=args.checkpoint_every, eval_every=args.eval_every)
    print(f"training {config.arch} N={config.capacity} {config.body} on {len(data)} images "
          f"(augment: {cfg.augment}, {cfg.optimizer} lr {cfg.lr:g})")
    if args.checkpoint:
        args.checkpoint.parent.mkdir(parents=True, exist_ok=True)
    _check_checkpoint(args.checkpoint, model, cfg, len(data))
    try:
        history = train(model, data, cfg, checkpoint=args.checkpoint, val=val)
    except KeyboardInterrupt:
        return 130
    except FloatingPointError as e:
        raise ConfigError(str(e)) from None
    results = evaluate(model.eval(), test.images, test.labels)  # on the training device
    for n, r in results.items():
        print(f"test n={n}: accuracy {r['accuracy']:.4f}  NLL {r['nll']:.4f}  ECE {r['ece']:.4f}")
    save_model(model, args.output)
    record = {
        "dataset": _absolute(args.dataset), "test_images": len(test), "train_images": len(data), "test_split": test_note,
        "test": {str(k): v for k, v in results.items()}, "history": history,
        "command": "edge-mimo train " + " ".join(sys.argv[2:]) if sys.argv[1:2] == ["train"] else None,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if val is not None:
        record["validation"] = {str(k): v for k, v in evaluate(model, val.images, val.labels).items()}
    if args.init:
        record["init"] = str(args.init)
    (args.output / TRAINING_FILE).write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.output}")
    return 0
