"""``edge-mimo info``: what a model is and what it costs per width."""

from __future__ import annotations

import json
from pathlib import Path

from ..models.config import TRAINING_FILE
from ..models.default import resolve_model


def add_parser(sub) -> None:
    """Register ``edge-mimo info``."""
    p = sub.add_parser("info", help="describe a model: architecture, widths, parameters, MACs, accuracy")
    p.add_argument("model", nargs="?", default="default", help="model directory, or a shipped model: 'default' (MIMOConv) or 'mimoformer'")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(run=run)


def describe(model_dir: Path) -> dict:
    """Architecture, widths, parameters, MACs per image per width and recorded accuracy of a model directory."""
    from ..models.weights import count_macs, load_model  # torch: the compile extra

    model = load_model(model_dir)
    cfg = model.config
    training = model_dir / TRAINING_FILE
    recorded = json.loads(training.read_text()).get("test", {}) if training.exists() else {}
    return {
        "path": str(model_dir),
        "arch": cfg.arch,
        "capacity": cfg.capacity,
        "trunk": cfg.body,
        "stem_channels": cfg.stem_channels if cfg.arch != "mimoformer" else None,
        "input": [cfg.in_channels, cfg.image_size, cfg.image_size],
        "classes": list(cfg.class_names) or cfg.num_classes,
        "widths": list(cfg.widths),
        "parameters": sum(p.numel() for p in model.parameters()),
        "macs_per_image": {str(n): count_macs(model, n) // n for n in cfg.widths},
        "recorded_test": recorded,
    }


def run(args) -> int:
    """Print the description; returns the exit status."""
    info = describe(resolve_model(args.model))
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"model       {info['path']}")
    stem = f"  stem {info['stem_channels']}" if info["stem_channels"] else ""
    print(f"arch        {info['arch']}  N={info['capacity']}  trunk {info['trunk']}{stem}")
    print(f"input       {'x'.join(map(str, info['input']))}   classes {len(info['classes'])}")
    print(f"parameters  {info['parameters']:,}")
    base = info["macs_per_image"][str(min(info["widths"]))]
    print("width  MMAC/image  vs n=1   test acc    NLL     ECE")
    for n in info["widths"]:
        macs = info["macs_per_image"][str(n)]
        r = info["recorded_test"].get(str(n))
        acc = f"{r['accuracy']:.4f}  {r['nll']:.4f}  {r['ece']:.4f}" if r else "(not recorded)"
        print(f"{n:>5}  {macs / 1e6:>10.1f}  {macs / base:>6.3f}   {acc}")
    return 0
