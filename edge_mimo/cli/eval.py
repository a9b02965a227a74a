"""``edge-mimo eval``: accuracy and uncertainty of a bundle under named camera conditions."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..camera.scenes import CONDITIONS
from ..camera.suite import markdown_table, run_suite, suite_plot
from ..datasets import load_fashion_mnist, shipped_sample
from ..errors import ConfigError
from ..runtime import Runtime
from ..runtime.scheduler import POLICIES

SUITES = ("camera",)


def add_parser(sub) -> None:
    """Register ``edge-mimo eval``."""
    p = sub.add_parser("eval", help="run a bundle through the camera-condition suite (accuracy, flags, OOD AUROC)",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("bundle", type=Path)
    p.add_argument("--suite", default="camera", choices=SUITES)
    p.add_argument("--data", default="fashion-mnist", choices=("fashion-mnist", "shipped"),
                   help="fashion-mnist (the 10,000 test images, Debian's dataset-fashion-mnist) or shipped "
                        "(the 3,000-image validation sample inside the package)")
    p.add_argument("--limit", type=int, default=0, help="first LIMIT images only (0: all)")
    p.add_argument("--conditions", default="all", help=f"comma-separated subset of: {', '.join(CONDITIONS)}")
    p.add_argument("--policies", default="auto", help=f"comma-separated subset of {', '.join(POLICIES)} "
                                                       "(auto: those that differ on this model)")
    p.add_argument("--streams", type=int, default=4, help="frames per infer_many call (cameras)")
    p.add_argument("--ood-limit", type=int, default=1000,
                   help="out-of-distribution digits per condition (of the 1,797 shipped; 0: none, no AUROC)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="ONNX Runtime threads")
    p.add_argument("-o", "--output", type=Path, help="folder for camera_suite.json / .md / .png")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(run=run)


def _names(text: str, known, what: str) -> list[str] | None:
    if text in ("all", "auto"):
        return None
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise ConfigError(f"unknown {what} {', '.join(unknown) or repr(text)}: choose from {', '.join(known)}")
    return names


def run(args) -> int:
    """Run the suite on the bundle, print the table and the goals, write the files; returns the exit status."""
    conditions = _names(args.conditions, CONDITIONS, "condition")
    policies = _names(args.policies, POLICIES, "policy")
    if args.streams < 1 or args.limit < 0 or args.ood_limit < 0:
        raise ConfigError("--streams must be >= 1, --limit and --ood-limit >= 0")
    if args.output and args.output.exists() and not args.output.is_dir():
        raise ConfigError(f"-o {args.output} is a file: -o names a folder for camera_suite.json / .md / .png")
    data = load_fashion_mnist("test") if args.data == "fashion-mnist" else shipped_sample("validation")
    if args.limit:
        data = data.subset(slice(0, args.limit))
    ood = shipped_sample("digits-ood").images[: args.ood_limit] if args.ood_limit else None
    runtime = Runtime(args.bundle, threads=args.threads)
    say = (lambda *_: None) if args.json else print  # --json: stdout holds the JSON alone
    say(f"camera suite: {len(data)} images x {len(conditions or CONDITIONS)} conditions, "
        f"{args.streams} streams per call, {runtime.precision} on {runtime.backend_name}")
    result = run_suite(runtime, data.images, data.labels, ood,
                       conditions=[CONDITIONS[n] for n in conditions] if conditions else None,
                       policies=policies, streams=args.streams, seed=args.seed)
    result.update(bundle=str(args.bundle), data=args.data, precision=runtime.precision)
    table = markdown_table(result)
    if args.json:
        print(json.dumps(result, indent=2))
    misses = result["goals"]["misses"]
    sample = (f" (on {len(data)} images: the goals are set for the 10,000 test images, and a sample this small "
              "misses some by chance; run without --limit to check them)" if args.limit and len(data) < 10_000
              else "")
    say(table + f"\ngoals: {len(misses)} missed{sample}" + "".join(f"\n  - {m}" for m in misses))
    if args.output:
        args.output.mkdir(parents=True, exist_ok=True)
        (args.output / "camera_suite.json").write_text(json.dumps(result, indent=2) + "\n")
        (args.output / "camera_suite.md").write_text(table + "\n")
        try:
            suite_plot(result, args.output / "camera_suite.png")
        except ModuleNotFoundError:
            say("plot skipped: install matplotlib (the compile extra) for camera_suite.png")
        say(f"wrote {args.output}/camera_suite.json, .md, .png")
    return 0
