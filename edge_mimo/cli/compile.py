"""``edge-mimo compile``: build INT8 artifacts for every superposition width, with an accuracy gate."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path


def add_parser(sub) -> None:
    """Register ``edge-mimo compile``."""
    p = sub.add_parser("compile", help="quantize a model to INT8 and write a bundle for a target",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", default="default", help="model directory, or a shipped model: 'default' (MIMOConv) or 'mimoformer'")
    p.add_argument("--target", default="cpu", help="target name (see `edge-mimo targets`) or a profile .toml")
    p.add_argument("--m", type=int, default=4, help="largest superposition width to build")
    p.add_argument("--widths", type=int, nargs="+", help="exact widths to build (default: the target's, <= --m)")
    p.add_argument("--calib", default="auto",
                   help="calibration images: 'auto' (the model's own training data, from its training.json; the "
                        "shipped sample for Fashion-MNIST models), 'shipped', 'fashion-mnist[:ROOT]', "
                        "'cifar10:ROOT' or an image folder ROOT/<class>/<img>")
    p.add_argument("--calib-size", type=int, default=512, help="number of calibration images")
    p.add_argument("--calib-method", choices=["minmax", "entropy", "percentile"],
                   help="default: minmax, percentile for MIMOFormer (measured: compile.pipeline.calibration_method)")
    p.add_argument("--val", default="auto",
                   help="validation images, never trained on: 'auto' (the held-out test split of the model's own "
                        "data), 'shipped', 'fashion-mnist' (the test set) or an image folder (its val/ or test/ "
                        "split, else the 10%% it holds out)")
    p.add_argument("--val-size", type=int, default=0, help="use this many validation images (0: all)")
    p.add_argument("--max-drop", type=float, default=1.0, help="largest INT8 accuracy drop allowed (points)")
    p.add_argument("--allow-drop", action="store_true", help="write the bundle even if the gate fails")
    p.add_argument("--in-graph", action=argparse.BooleanOptionalAction, default=None,
                   help="resize, colour conversion and normalisation as graph operators on a uint8 crop "
                        "(default: the target's [preprocess] in_graph)")
    p.add_argument("--crop-factor", type=int, help="in-graph crop = this many times the model's size "
                                                   "(default: the target's [preprocess] crop_factor, 17)")
    p.add_argument("--no-cache", action="store_true", help="do not read or write the calibration cache")
    p.add_argument("-o", "--output", type=Path, help="bundle directory (default bundles/<model>-<target>-m<M>)")
    p.add_argument("--json", action="store_true", help="print the manifest as JSON instead of the table")
    p.set_defaults(run=run)


def run(args) -> int:
    """Compile and print the per-width table (or the manifest); returns the exit status."""
    from ..compile.pipeline import CompileOptions, compile_bundle  # the compile extra

    opts = CompileOptions(
        model=args.model, target=args.target, max_width=args.m, widths=args.widths, calibration_set=args.calib,
        calibration_size=args.calib_size, calibration_method=args.calib_method, validation_set=args.val,
        validation_size=args.val_size, max_drop_points=args.max_drop, allow_drop=args.allow_drop, output=args.output,
        in_graph=args.in_graph, crop_factor=args.crop_factor, **({"cache_dir": None} if args.no_cache else {}),
    )
    with contextlib.redirect_stdout(sys.stderr) if args.json else contextlib.nullcontext():
        bundle, manifest = compile_bundle(opts)  # with --json, stdout holds the JSON only (ORT's calibrators print)
    if args.json:
        print(json.dumps(dict(manifest.to_dict(), bundle=str(bundle)), indent=2))
        return 0
    q, val = manifest.quantization, manifest.validation
    print(f"\nbundle {bundle}  (target {manifest.target.name}, INT8 {q.flavour} by {q.tool}, {q.method} calibration)")
    print(f"validation: {val.source}, {val.images} images")
    print("width  MMAC/img  FP32 acc  INT8 acc   drop  INT8 NLL  ECE(T)  temp")
    for n in manifest.widths:
        a = manifest.accuracy[n]
        print(f"{n:>5}  {manifest.macs_per_image[n] / 1e6:>8.1f}  {100 * a.fp32.accuracy:>7.2f}%"
              f"  {100 * a.int8.accuracy:>7.2f}%  {a.drop_points:>+5.2f}  {a.int8.nll:>8.3f}"
              f"  {a.int8_calibrated.ece:>6.4f}  {a.temperature:.3f}")
    print(f"engines: {manifest.engines_note}")
    return 0
