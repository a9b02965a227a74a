"""``edge-mimo train``: train a superposed classifier and save it as a model directory."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

from ..atomic import check_replaceable
from ..datasets import (AUGMENT_PRESETS, FOLDER_HOLDOUT_SHARE, holds_out_test_images, load_dataset,
                        load_fashion_mnist)
from ..models import build_model
from ..models.config import ARCHITECTURES, OPTIMIZERS, TRAINING_FILE, ModelConfig


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
    p.add_argument("--image-size", type=int, default=28, help="for image folders: resize to this size")
    p.add_argument("--channels", type=int, default=1, choices=[1, 3], help="for image folders")
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--batch", type=int, default=64, help="superposed groups per step")
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
    p.add_argument("--checkpoint-every", type=int, default=200, help="steps between checkpoints")
    p.add_argument("--eval-every", type=int, default=1, help="epochs between validation evaluations")
    p.add_argument("-o", "--output", type=Path, required=True, help="model directory to write")
    p.set_defaults(run=run)


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


def run(args) -> int:
    """Train, evaluate and save a model directory with training.json; returns the exit status."""
    import torch  # the compile extra

    from ..models.weights import CONFIG_FILE, load_model, save_model
    from ..train import TrainConfig, evaluate, train

    check_replaceable(args.output, CONFIG_FILE)  # before hours of training, not after
    capacity = args.capacity if args.capacity is not None else (1 if args.arch == "plain" else 4)
    data, val, test, test_note = _load(args)
    if args.limit:
        data = data.subset(slice(0, args.limit))
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
    torch.manual_seed(args.seed)  # the initial weights are part of the seeded run
    model = build_model(config)
    if args.init:
        start = load_model(args.init)  # its normalisation stays: the weights were trained with it
        if dataclasses.replace(start.config, mean=config.mean, std=config.std) != config:
            raise ValueError(f"--init {args.init} is a different model ({start.config}) from the one these "
                             f"arguments describe ({config}): pass the same architecture options")
        model, config = start, start.config
    optimizer = args.optimizer or ("adamw" if config.arch == "mimoformer" else "sgd")
    lr, decay = OPTIMIZERS[optimizer]
    cfg = TrainConfig(epochs=args.epochs, batch=args.batch, optimizer=optimizer,
                      lr=lr if args.lr is None else args.lr,
                      weight_decay=decay if args.weight_decay is None else args.weight_decay,
                      single_prob=args.single_prob, mixup=args.mixup, augment=args.augment,
                      seed=args.seed, threads=args.threads, device=args.device,
                      checkpoint_every=args.checkpoint_every, eval_every=args.eval_every)
    print(f"training {config.arch} N={config.capacity} {config.body} on {len(data)} images "
          f"(augment: {cfg.augment}, {cfg.optimizer} lr {cfg.lr:g})")
    if args.checkpoint:
        args.checkpoint.parent.mkdir(parents=True, exist_ok=True)
    try:
        history = train(model, data, cfg, checkpoint=args.checkpoint, val=val)
    except KeyboardInterrupt:
        return 130
    results = evaluate(model.eval(), test.images, test.labels)  # on the training device
    for n, r in results.items():
        print(f"test n={n}: accuracy {r['accuracy']:.4f}  NLL {r['nll']:.4f}  ECE {r['ece']:.4f}")
    save_model(model, args.output)
    record = {
        "dataset": args.dataset, "test_images": len(test), "train_images": len(data), "test_split": test_note,
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
