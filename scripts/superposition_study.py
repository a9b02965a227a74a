"""The equal-cost study of issue 20: does superposition beat a plain network of the same cost per frame?

Every arm is a MIMOConv recipe variant (or MixMo's binding on the same trunk); every arm is compared with a plain
WideResNet whose MACs per frame equal the arm's at its widest width (``edge_mimo.twin.plain_twin_config``), trained
on the same data passes with the same augmentation, schedule and INT8 pipeline, and (for the distillation arms) the
same teacher. Proxy scale, so that a 2-core CPU trains a run in about 15 minutes: a WRN-10 trunk of stages
32/64/128 at N=4 (10 MMAC per frame at width 4). Figures and findings: BENCHMARKS.md, "Superposition at equal
cost".

    python scripts/superposition_study.py train      # trains every arm not yet trained (resumable)
    python scripts/superposition_study.py evaluate   # INT8 bundles, 10k test accuracy, camera suite, AUROC
    python scripts/superposition_study.py bench      # frames/s at 8 streams (run on a quiet machine)
    python scripts/superposition_study.py report     # the table, docs/study/superposition.md

Runs, checkpoints and bundles live under ``--root`` (default ``~/.cache/edge-mimo/study``), outside the work
tree; a killed run resumes from its checkpoint when the same command runs again.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np

from edge_mimo.datasets import load_fashion_mnist
from edge_mimo.models import ModelConfig, default_fashion_mnist_config
from edge_mimo.twin import plain_twin_config

BASE = dict(arch="mimoconv", capacity=4, depth=10, widen=1, base_width=32, stem_channels=32)
IMAGES_PER_STEP = 256  # every run: N=4 arms take 64 groups per step, N=2 arms 128, plain twins 256 images
TEACHER = "default"  # the shipped MIMOConv at width 1 (four replicas, 310 MMAC/frame): the teacher of the KD arms

# name -> (model config overrides, recipe overrides, epochs multiplier). Plain twins are named "<arm>/twin".
ARMS: dict[str, tuple[dict, dict, int]] = {
    "ours": ({}, {}, 1),  # the landed recipe: 80/20 widths, key regulariser, one-cycle SGD, camera augmentation
    "kd": ({}, {"distill": 0.7}, 1),  # the teacher's soft targets in every slot (and for the twin)
    "stem64": ({"stem_channels": 64, "base_width": 23}, {}, 1),  # binding in 64 channels, trunk narrowed to match
    "n2": ({"capacity": 2, "base_width": 21}, {}, 1),  # N=2 on a trunk of the same cost per frame
    "warmup": ({}, {"width_warmup": 0.3}, 1),  # width 1 first, superposition phased in over 30 % of the steps
    "kd-warmup": ({}, {"distill": 0.7, "width_warmup": 0.3}, 1),  # both
    "fixed-keys": ({}, {"learn_keys": False}, 1),  # random unitary keys, not learned
    "authors": ({}, {"mixup": 1.0, "isometry": 1e-4}, 1),  # MIMONets' mixup and isometry regulariser
    "authors-4x": ({}, {"mixup": 1.0, "isometry": 1e-4}, 4),  # ... and their N data loops per epoch (twin: the same)
    "self-kd": ({}, {"self_distill": 0.5}, 1),  # width-1 replicas as the targets of the width-4 slots
    # Scale: the landed recipe with every channel count halved (MACs / 4) or x1.4 (MACs x 2), twins matched again.
    "ours-half": ({"base_width": 16, "stem_channels": 16}, {}, 1),
    "n2-half": ({"capacity": 2, "base_width": 10, "stem_channels": 16}, {}, 1),
    "ours-wide": ({"base_width": 45, "stem_channels": 45}, {}, 1),
    "n2-wide": ({"capacity": 2, "base_width": 30, "stem_channels": 45}, {}, 1),
    # MixMo's binding (Rame et al.): a first conv per slot, features CutMix-mixed in training and summed at test.
    "mixmo": ({"arch": "mixmo"}, {}, 1),
    "mixmo-n2": ({"arch": "mixmo", "capacity": 2, "base_width": 21}, {}, 1),
}
SHARED_TWINS = {"n2": "ours", "stem64": "ours", "fixed-keys": "ours", "self-kd": "ours", "warmup": "ours",
                "kd-warmup": "kd", "n2-half": "ours-half", "n2-wide": "ours-wide",
                "mixmo-n2": "mixmo"}  # same cost, same recipe


def arm_config(name: str) -> ModelConfig:
    """The model config of an arm."""
    return default_fashion_mnist_config(**dict(BASE, **ARMS[name][0]))


def twin_name(name: str) -> str:
    """The run that holds an arm's plain twin (arms of equal cost and recipe share one)."""
    return f"{SHARED_TWINS.get(name, name)}/twin"


def runs(arms: list[str]) -> list[tuple[str, ModelConfig, dict]]:
    """(run name, model config, recipe overrides) of each run the arms need, twins first, in order."""
    out, seen = [], set()
    for name in arms:
        overrides, recipe, mult = ARMS[name]
        twin = twin_name(name)
        recipe = dict(recipe, epochs_multiplier=mult)
        # Twins take as many images per step as the arm: the same steps, images, learning-rate schedule and compute.
        twin_recipe = {k: v for k, v in recipe.items() if k not in ("self_distill", "learn_keys", "width_warmup")}
        for run, config, rec in ((twin, plain_twin_config(arm_config(name)), twin_recipe),
                                 (name, arm_config(name), recipe)):
            if run not in seen:
                seen.add(run)
                out.append((run, config, rec))
    return out


def teacher_logits(root: Path, train) -> np.ndarray:
    """The teacher's logits of the clean training images (computed once, cached under ``root``)."""
    path = root / "teacher_logits.npy"
    if path.exists():
        return np.load(path)
    from edge_mimo.models.default import resolve_model
    from edge_mimo.models.weights import load_model
    from edge_mimo.train import predict_logits

    print(f"teacher: the shipped '{TEACHER}' model at width 1 on {len(train)} training images")
    logits = predict_logits(load_model(resolve_model(TEACHER)), train.images, 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, logits.astype(np.float32))
    return logits


def train_runs(args) -> None:
    """Train every run not yet finished (each resumes from its checkpoint)."""
    import torch

    from edge_mimo.models import build_model
    from edge_mimo.models.weights import save_model
    from edge_mimo.train import TrainConfig, evaluate, train

    data, val, test = (load_fashion_mnist(s) for s in ("train", "val", "test"))
    for run, config, recipe in runs(args.arms):
        out = args.root / run
        if (out / "model" / "config.json").exists() or (args.only and run not in args.only):
            continue
        recipe = dict(recipe)
        epochs = args.epochs * recipe.pop("epochs_multiplier")
        teacher = teacher_logits(args.root, data) if recipe.get("distill") else None
        cfg = TrainConfig(epochs=epochs, batch=IMAGES_PER_STEP // config.capacity, seed=args.seed, threads=args.threads,
                          eval_every=0, checkpoint_every=100, bn_batches=50, **recipe)
        print(f"== {run}: {config.arch} N={config.capacity} stages {config.stage_widths} stem {config.stem_channels}, "
              f"{epochs} epochs, {recipe or 'the landed recipe'}", flush=True)
        torch.manual_seed(args.seed)
        model = build_model(config)
        out.mkdir(parents=True, exist_ok=True)
        history = train(model, data, cfg, checkpoint=out / "train.ckpt", val=val, teacher=teacher)
        record = {"run": run, "recipe": dataclasses.asdict(cfg), "history": history,
                  "test_fp32": {str(k): v for k, v in evaluate(model.eval(), test.images, test.labels).items()},
                  "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        save_model(model, out / "model")
        (out / "model" / "training.json").write_text(json.dumps(
            dict(record, dataset="fashion-mnist", train_images=len(data)), indent=2) + "\n")
        print(f"   {run}: test FP32 " + ", ".join(f"n={k} {v['accuracy']:.4f}" for k, v in record["test_fp32"].items())
              + f" in {history['seconds'] / 60:.1f} min", flush=True)


def _runs_of(arms: list[str]) -> list[str]:
    return [run for run, _, _ in runs(arms)]


def evaluate_runs(args) -> None:
    """Compile each trained run for the CPU target and assess its INT8 bundle (test split, camera frames, OOD)."""
    from edge_mimo.datasets import shipped_sample
    from edge_mimo.twin.assess import assess_bundle
    from edge_mimo.twin.workflow import compile_for

    test, ood = load_fashion_mnist("test"), shipped_sample("digits-ood").images[:500]
    for run in _runs_of(args.arms):
        out = args.root / run
        if not (out / "model" / "config.json").exists() or (out / "assessed.json").exists():
            continue
        bundle = compile_for(out / "model", "cpu", out / "bundle-cpu")
        assessed = assess_bundle(bundle, test.images, test.labels, ood, args.camera_images, threads=args.threads)
        (out / "assessed.json").write_text(json.dumps(assessed, indent=2) + "\n")
        print(f"== {run}: clean {assessed['clean']}, camera {assessed['camera']}", flush=True)


def bench_runs(args) -> None:
    """Frames/s of every arm's policies and its twin at ``--streams`` streams, one interleaved measurement per arm.
    Run it on a quiet machine (no training, no tests)."""
    from edge_mimo.twin.assess import frames_per_second

    for name in args.arms:
        out = args.root / name
        twin = args.root / twin_name(name)
        if not (out / "assessed.json").exists() or not (twin / "assessed.json").exists():
            continue
        policies = json.loads((out / "assessed.json").read_text())["camera"]
        calls = {p: (out / "bundle-cpu", p) for p in policies}
        fps = frames_per_second(dict(calls, twin=(twin / "bundle-cpu", "throughput")), args.streams,
                                repeats=40, threads=2)
        (out / "fps.json").write_text(json.dumps({"streams": args.streams, "threads": 2, "fps": fps}, indent=2) + "\n")
        print(f"== {name}: " + ", ".join(f"{k} {v:.0f}" for k, v in fps.items()) + " frames/s", flush=True)


def _assessed(path: Path) -> dict:
    data = json.loads(path.read_text())
    for key in ("macs_per_frame", "int8_bytes"):
        data[key] = {int(k): v for k, v in data[key].items()}
    return data


def report(args) -> None:
    """The per-arm table against each arm's twin, as markdown (``--table``, default docs/study/superposition.md)."""
    from edge_mimo.twin.verdict import compare, markdown

    sections = []
    for name in args.arms:
        out, twin = args.root / name, args.root / twin_name(name)
        if not (out / "assessed.json").exists() or not (twin / "assessed.json").exists():
            sections.append(f"### {name}\n\nnot run")
            continue
        mimo, plain = _assessed(out / "assessed.json"), _assessed(twin / "assessed.json")
        fps = json.loads((out / "fps.json").read_text())["fps"] if (out / "fps.json").exists() else None
        rec = json.loads((out / "model" / "training.json").read_text())
        twin_rec = json.loads((twin / "model" / "training.json").read_text())
        config = ModelConfig.load(out / "model" / "config.json")
        twin_config = ModelConfig.load(twin / "model" / "config.json")
        title = (f"{name}: {config.arch} N={config.capacity}, stages {'/'.join(map(str, config.stage_widths))}, "
                 f"stem {config.stem_channels}; twin: plain, stages {'/'.join(map(str, twin_config.stage_widths))}")
        lines = [markdown(compare(mimo, plain, fps), title), "",
                 "| | MMAC/frame | INT8 clean (10k test) | camera mean | OOD AUROC (entropy) | frames/s | train min |",
                 "|---|---|---|---|---|---|---|"]
        for label, data, r, policy_rows in (("twin", plain, twin_rec, {"throughput": plain["camera"]["throughput"]}),
                                            (name, mimo, rec, mimo["camera"])):
            for policy, cam in policy_rows.items():
                width = cam["width"]
                speed = fps.get("twin" if label == "twin" else policy) if fps else None
                lines.append(f"| {label} {policy if label != 'twin' else ''} | {data['macs_per_frame'][width] / 1e6:.2f} "
                             f"| {100 * data['clean'][policy]:.2f} % | {100 * cam['accuracy']:.2f} % "
                             f"| {cam['auroc']:.3f} | {'%.0f' % speed if speed else 'n/a'} "
                             f"| {r['history']['seconds'] / 60:.1f} |")
        sections.append("\n".join(lines))
    text = "\n\n".join(sections) + "\n"
    args.table.parent.mkdir(parents=True, exist_ok=True)
    args.table.write_text(text)
    print(text)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("stage", choices=["train", "evaluate", "bench", "report"])
    p.add_argument("--arms", default=",".join(ARMS), help="comma-separated subset of: " + ", ".join(ARMS))
    p.add_argument("--root", type=Path, default=Path.home() / ".cache" / "edge-mimo" / "study")
    p.add_argument("--epochs", type=int, default=12, help="epochs of a 1x arm (the authors' arm runs N times more)")
    p.add_argument("--only", default="", help="train only these runs of the arms (comma-separated run names, e.g. "
                   "'ours/twin'), so that runs can train side by side in separate processes")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--camera-images", type=int, default=1000, help="test images rendered under each condition")
    p.add_argument("--streams", type=int, default=8, help="frames per call when timing")
    p.add_argument("--table", type=Path, default=Path(__file__).resolve().parents[1] / "docs" / "study" / "superposition.md")
    args = p.parse_args()
    args.arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    args.only = {r.strip() for r in args.only.split(",") if r.strip()}
    unknown = [a for a in args.arms if a not in ARMS]
    if unknown:
        p.error(f"unknown arm(s) {', '.join(unknown)}: choose from {', '.join(ARMS)}")
    if args.only - set(_runs_of(args.arms)):
        p.error(f"--only names runs the arms do not have: choose from {', '.join(_runs_of(args.arms))}")
    {"train": train_runs, "evaluate": evaluate_runs, "bench": bench_runs, "report": report}[args.stage](args)


if __name__ == "__main__":
    main()
