"""Accuracy of ``Runtime.infer_many`` on Fashion-MNIST test garments seen by a camera, per width.

    python examples/camera_accuracy.py BUNDLE [--condition textured-background] [--limit 2000] [--streams 8]

Each garment is placed in a 640x480 scene the way a camera sees it (``edge_mimo.camera``: a scene behind the
object, the object not pixel-aligned with the model's grid, the condition's camera effects), and the frames
go through the whole runtime (centre crop, exact area resize, superposed passes, demultiplexing), ``--streams``
per call. For every condition and policy at once, with uncertainty and OOD figures, use
``edge-mimo eval BUNDLE --suite camera``.
"""

import argparse
import time

import numpy as np

from edge_mimo import Runtime
from edge_mimo.camera.scenes import CONDITIONS, render_frames
from edge_mimo.datasets import load_fashion_mnist


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundle")
    parser.add_argument("--condition", default="textured-background", choices=list(CONDITIONS))
    parser.add_argument("--limit", type=int, default=2000)
    parser.add_argument("--streams", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    runtime = Runtime(args.bundle, threads=args.threads)
    test = load_fashion_mnist("test").subset(slice(0, args.limit))
    frames = render_frames(test.images, CONDITIONS[args.condition], seed=0)
    print(f"{len(frames)} Fashion-MNIST test garments as 640x480 frames ({args.condition}), {args.streams} streams "
          f"per call, {runtime.precision} on {runtime.backend_name}")
    print("width  accuracy  flagged  kept accuracy  frames/s")
    for width in runtime.widths:
        start = time.perf_counter()
        results = runtime.infer_in_calls(frames, args.streams, width=width)
        rate = len(frames) / (time.perf_counter() - start)
        correct = np.array([r.class_index for r in results]) == test.labels
        flagged = np.array([r.uncertain for r in results])
        print(f"{width:>5}  {correct.mean():.4f}    {flagged.mean():5.1%}   {correct[~flagged].mean():.4f}"
              f"         {rate:8.1f}")


if __name__ == "__main__":
    main()
