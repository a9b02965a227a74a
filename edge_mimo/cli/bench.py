"""``edge-mimo bench``: frames/s and latency per number of streams and policy, with baselines, in one run."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..bench.plots import operating_points_plot, scaling_plot
from ..bench.run import run_bench
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
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    r = result["ratios"]
    print(f"\nratios at {r['streams']} streams (measured in this run):")
    for key, value in r.items():
        if key != "streams":
            print(f"  {key:<50} {'n/a' if value is None else f'{value:.2f}'}")
    macs = result["macs_per_image"]
    print("MMAC per frame by width: " + ", ".join(f"n={n}: {v / 1e6:.1f}" for n, v in macs.items()))
    print(f"wrote {args.output}/bench.json, scaling.png, operating_points.png")
    return 0
