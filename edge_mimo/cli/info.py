"""``edge-mimo info``: what a model or a bundle is and what it costs per width."""

from __future__ import annotations

import json
from pathlib import Path

from ..bundle.manifest import Manifest, is_bundle
from ..errors import ConfigError
from ..models.config import TRAINING_FILE
from ..models.default import resolve_model


def add_parser(sub) -> None:
    """Register ``edge-mimo info``."""
    p = sub.add_parser("info", help="describe a model or a bundle: architecture, widths, MACs, accuracy")
    p.add_argument("model", nargs="?", default="default",
                   help="model directory, a shipped model ('default' (MIMOConv) or 'mimoformer'), or a bundle "
                        "directory written by `edge-mimo compile`")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(run=run)


def describe(model_dir: Path) -> dict:
    """Architecture, widths, parameters, MACs per image per width and recorded accuracy of a model directory."""
    from ..models.weights import count_macs, load_model  # torch: the compile extra

    model = load_model(model_dir)
    cfg = model.config
    training = model_dir / TRAINING_FILE
    try:
        recorded = json.loads(training.read_text()).get("test", {}) if training.exists() else {}
    except ValueError as e:  # not JSON, not UTF-8
        raise ConfigError(f"{training} cannot be read ({e}): remove it or train the model again") from None
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


def describe_bundle(bundle: Path) -> dict:
    """Target, widths, accuracy per width, engines and files of a bundle, from its manifest (torch-free)."""
    m = Manifest.load(bundle)
    return {
        "bundle": str(bundle),
        "arch": m.model.arch, "capacity": m.model.capacity, "trunk": m.model.body,
        "input": [m.input.channels, m.input.height, m.input.width_px],
        "classes": list(m.model.class_names) or m.model.num_classes,
        "target": m.target.name if m.target else None, "backend": m.backend,
        "quantization": m.quantization.to_dict() if m.quantization else None,
        "validation": {"source": m.validation.source, "images": m.validation.images} if m.validation else None,
        "widths": list(m.widths),
        "macs_per_image": {str(n): v for n, v in m.macs_per_image.items()},
        "accuracy": {str(n): {"fp32": a.fp32.accuracy, "int8": a.int8.accuracy, "drop_points": a.drop_points,
                              "temperature": a.temperature, "flag_rate": a.uncertainty.flag_rate,
                              "entropy_threshold": a.uncertainty.entropy_threshold}
                     for n, a in m.accuracy.items()},
        "engines": [{"width": n, "file": e.file, "compute_capability": e.compute_capability, "tensorrt": e.tensorrt}
                    for n, art in m.artifacts.items() for e in art.engines],
        "files": sorted(m.files), "created": m.created, "edge_mimo_version": m.edge_mimo_version,
    }


def _print_bundle(info: dict) -> None:
    print(f"bundle      {info['bundle']}  (edge-mimo {info['edge_mimo_version']}, {info['created']})")
    print(f"model       {info['arch']}  N={info['capacity']}  trunk {info['trunk']}")
    print(f"input       {'x'.join(map(str, info['input']))}   classes {len(info['classes'])}")
    q = info["quantization"] or {}
    print(f"target      {info['target']} ({info['backend']}), INT8 {q.get('flavour')} by {q.get('tool')}")
    if info["validation"]:
        print(f"validation  {info['validation']['source']}, {info['validation']['images']} images")
    print("width  MMAC/image  FP32 acc  INT8 acc   drop   temp  flagged")
    for n in info["widths"]:
        macs = info["macs_per_image"].get(str(n))
        a = info["accuracy"].get(str(n))
        cost = f"{macs / 1e6:>10.1f}" if macs else f"{'?':>10}"
        row = (f"{100 * a['fp32']:>7.2f}%  {100 * a['int8']:>7.2f}%  {a['drop_points']:>+5.2f}  "
               f"{a['temperature']:.3f}  {100 * a['flag_rate']:>5.1f}%") if a else "(not recorded)"
        print(f"{n:>5}  {cost}  {row}")
    engines = info["engines"]
    print("engines     " + (", ".join(f"n={e['width']} sm{e['compute_capability']} TRT {e['tensorrt']}"
                                       for e in engines) or "none (ONNX Runtime runs the INT8 ONNX; "
                                                            "`edge-mimo build-engines` makes TensorRT plans)"))
    print(f"files       {len(info['files'])}: {', '.join(info['files'])}")


def run(args) -> int:
    """Print the description; returns the exit status."""
    if is_bundle(args.model):
        info = describe_bundle(Path(args.model))
        if args.json:
            print(json.dumps(info, indent=2))
        else:
            _print_bundle(info)
        return 0
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
