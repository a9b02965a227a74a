"""``edge-mimo bench``: frames/s and latency per number of streams and policy, with baselines, in one run."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TextIO

from ..bench.plots import operating_points_plot, scaling_plot
from ..bench.run import direction_checks, run_bench
from ..bundle import load_manifest
from ..errors import ConfigError


QUICK_STREAMS, QUICK_REPEATS = "1,8", 20


def add_parser(sub) -> None:
    """Register ``edge-mimo bench``."""
    p = sub.add_parser("bench", help="measure the superposition speed-up of a bundle against baselines",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("bundle", type=Path)
    p.add_argument("--streams", default="1,2,4,8,16,32", help="comma-separated numbers of streams")
    p.add_argument("--repeats", type=int, default=20, help="timed calls per measurement (after warm-up)")
    p.add_argument("--threads", type=int, default=2, help="ONNX Runtime / torch intra-op threads")
    p.add_argument("--quick", action="store_true",
                   help=f"a short run that checks the harness and the ratios' direction (CI): streams "
                        f"{QUICK_STREAMS}, {QUICK_REPEATS} repeats; figures to quote come from a full run")
    p.add_argument("--no-baselines", action="store_true", help="skip the plain-network and PyTorch baselines")
    p.add_argument("--compare", type=Path, nargs="*", default=[],
                   help="other bundles (e.g. trained plain networks) timed in the same rounds and put on the "
                        "operating-point plot")
    p.add_argument("--in-graph", type=Path, metavar="BUNDLE",
                   help="the same model compiled with `compile --in-graph`: timed in the same rounds (INT8, "
                        "throughput and width 1), the two preprocessing paths reported side by side")
    p.add_argument("-o", "--output", type=Path, default=Path("bench-results"), help="folder for JSON and plots")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(run=run)


def run(args) -> int:
    """Run the benchmark and write bench.json and the plots; returns the exit status."""

    if args.quick:
        args.streams, args.repeats = QUICK_STREAMS, QUICK_REPEATS
    try:
        streams = sorted({int(s) for s in args.streams.split(",")})
    except ValueError:
        raise ConfigError(f"--streams {args.streams!r} must be comma-separated integers, e.g. 1,2,4,8") from None
    if min(streams) < 1:
        raise ConfigError("--streams must be >= 1")
    result = run_bench(args.bundle, streams, args.repeats, args.threads, not args.no_baselines,
                       compare=args.compare, in_graph=args.in_graph)
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "bench.json").write_text(json.dumps(result, indent=2) + "\n")
    scaling_plot(result, args.output / "scaling.png")
    operating_points_plot(result, load_manifest(args.bundle), args.output / "operating_points.png")
    r = result["ratios"]
    if args.json:
        print(json.dumps(result, indent=2))
        return _verdict(r, sys.stderr) if args.quick else 0
    print(f"\nratios at {r['streams']} streams (measured in this run):")
    for key, value in r.items():
        if key != "streams":
            print(f"  {key:<50} {'n/a' if value is None else f'{value:.2f}'}")
    macs = result["macs_per_image"]
    print("MMAC per frame by width: " + ", ".join(f"n={n}: {v / 1e6:.1f}" for n, v in macs.items()))
    print(f"wrote {args.output}/bench.json, scaling.png, operating_points.png")
    return _verdict(r, sys.stdout) if args.quick else 0


def _verdict(ratios: dict, out: TextIO) -> int:
    """The --quick check: does every ratio point the way the design says? 0 if so, 1 (naming each miss) if not."""
    checks = direction_checks(ratios)
    misses = [(claim, value) for claim, value, ok in checks if not ok]
    for claim, value in misses:
        print(f"check FAILED: {claim}: x{value:.2f} measured, more than x1 expected", file=out)
    if misses:
        print("a loaded machine can invert a close ratio: rerun on a quiet one before filing it", file=out)
        return 1
    print(f"check passed: all {len(checks)} ratios point the way the design says (how far: run without --quick)",
          file=out)
    return 0
