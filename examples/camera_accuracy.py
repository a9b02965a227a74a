"""Accuracy of ``Runtime.infer_many`` on Fashion-MNIST test images rendered as 640x480 BGR camera frames.

    python examples/camera_accuracy.py BUNDLE [--limit 2000] [--streams 8]

Each test garment fills the centre of a frame with a noisy background (see demo_videos.render); frames go
through the whole runtime (centre crop, resize, superposed passes, demultiplexing), ``--streams`` per call.
Printed per width next to the bundle's own report (measured by compile on its validation set).
"""

import argparse
import time

import numpy as np

from edge_mimo import Runtime
from edge_mimo.datasets import load_fashion_mnist

from demo_videos import render


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundle")
    parser.add_argument("--limit", type=int, default=2000)
    parser.add_argument("--streams", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    runtime = Runtime(args.bundle, threads=args.threads)
    test = load_fashion_mnist("test").subset(slice(0, args.limit))
    rng = np.random.default_rng(0)
    frames = [render(img[0], rng) for img in test.images]
    print(f"{len(frames)} Fashion-MNIST test images as 640x480 frames, {args.streams} streams per call, "
          f"{runtime.precision} on {runtime.backend_name}")
    print("width  accuracy  bundle report (validation)  frames/s  in order")
    for width in runtime.widths:
        predictions, ordered, start = [], True, time.perf_counter()
        for i in range(0, len(frames), args.streams):
            results = runtime.infer_many(frames[i : i + args.streams], width=width)
            ordered &= [r.stream for r in results] == list(range(len(results)))
            predictions += [r.class_index for r in results]
        rate = len(frames) / (time.perf_counter() - start)
        acc = float(np.mean(np.array(predictions) == test.labels))
        report = runtime.manifest.accuracy.get(width)
        shown = f"{getattr(report, runtime.precision).accuracy:.4f}" if report else "-"
        print(f"{width:>5}  {acc:.4f}    {shown:>10}                  {rate:8.1f}  {ordered}")


if __name__ == "__main__":
    main()
