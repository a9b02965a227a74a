"""``edge-mimo twin``: does superposition pay for this model? Its equal-cost plain twin, trained and benched alike."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parser(sub) -> None:
    """Register ``edge-mimo twin``."""
    p = sub.add_parser(
        "twin", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        help="train, compile and bench the equal-cost plain twin of a model; a verdict per width",
        description="Trains the plain network whose MACs per frame equal the model's at its widest width, with the "
                    "model's own recipe, data and number of epochs (training.json), compiles both for the target, "
                    "runs both through the same accuracy, camera-frame, OOD and speed checks, and says per width "
                    "whether superposition pays here. Rerun the same command to resume an interrupted run.")
    p.add_argument("model", help="a model directory written by `edge-mimo train`")
    p.add_argument("-o", "--output", type=Path, required=True, help="folder for the twin, bundles and verdict")
    p.add_argument("--target", default="cpu", help="deployment target profile (`edge-mimo targets`)")
    p.add_argument("--epochs", type=int, help="train the twin this long instead of the model's epochs (the "
                                             "comparison is then not at equal training budget)")
    p.add_argument("--dataset", help="train and test on this dataset spec instead of the one training.json names "
                                      "(the same images, where they lie elsewhere on this machine: fashion-mnist, "
                                      "fashion-mnist:FOLDER, cifar10:FOLDER, an image folder)")
    p.add_argument("--camera-images", type=int, default=1000, help="test images rendered as camera frames")
    p.add_argument("--test-limit", type=int, default=0, help="first LIMIT test images only (0: all)")
    p.add_argument("--streams", type=int, default=8, help="frames per infer_many call when timing")
    p.add_argument("--no-bench", action="store_true", help="skip timing (speed then judged by MACs per frame)")
    p.add_argument("--threads", type=int, default=0, help="torch / ONNX Runtime threads (0: their defaults)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(run=run)


def run(args) -> int:
    """Run the workflow, print the verdict table; returns the exit status."""
    from ..twin.verdict import markdown
    from ..twin.workflow import TwinOptions, run_twin

    opts = TwinOptions(model=args.model, output=args.output, target=args.target, epochs=args.epochs,
                       camera_images=args.camera_images, test_limit=args.test_limit, streams=args.streams,
                       bench=not args.no_bench, threads=args.threads, dataset=args.dataset)
    if args.epochs:
        print(f"note: the twin trains {args.epochs} epochs, not the model's: not an equal-budget comparison")
    result = run_twin(opts)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(markdown(result["verdict"], f"{args.model} against its equal-cost plain twin, target {args.target}"))
    if not result["frames_per_second"]:
        print("speed: not measured (--no-bench): judged by MACs per frame")
    print(f"wrote {args.output}/twin.json and twin.md")
    return 0
