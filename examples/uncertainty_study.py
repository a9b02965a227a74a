"""Is the runtime's uncertainty useful? Measured per policy through ``Runtime.infer_many``.

    python examples/uncertainty_study.py BUNDLE [--streams 4] [--limit 10000] [--json out.json]

In-distribution: the Fashion-MNIST test set. Out-of-distribution: scikit-learn's bundled handwritten digits
(1797 8x8 images, scaled to 0..255 and upscaled to 28x28). Frames are fed ``--streams`` at a time, so with
4 streams on an N=4 model "throughput" runs width 4 (1 replica), "balanced" width 2 (2 replicas) and
"robust" width 1 (4 replicas). Reported per policy:
- accuracy overall, the share of test frames flagged ``uncertain`` and the accuracy of the others;
- AUROC of entropy, of disagreement and of 1 - confidence for telling digits (positive) from garments;
- the share of digits flagged uncertain; ECE with and without the bundle's temperature.
"""

from __future__ import annotations

import argparse
import json

import cv2
import numpy as np
from sklearn.datasets import load_digits
from sklearn.metrics import roc_auc_score

from edge_mimo import Runtime
from edge_mimo.datasets import load_fashion_mnist
from edge_mimo.metrics import ece
from edge_mimo.runtime.scheduler import POLICIES


def digits_28() -> np.ndarray:
    """scikit-learn's 8x8 digits (values 0..16) as uint8 28x28 images."""
    images = (load_digits().images * (255.0 / 16.0)).astype(np.uint8)
    return np.stack([cv2.resize(img, (28, 28), interpolation=cv2.INTER_LINEAR) for img in images])


def study(runtime: Runtime, test_images, test_labels, ood_images, streams: int) -> dict:
    report = {}
    for policy in POLICIES:
        ind = runtime.infer_in_calls(test_images, streams, policy=policy)
        ood = runtime.infer_in_calls(ood_images, streams, policy=policy)
        probs = np.stack([r.probabilities for r in ind])
        correct = probs.argmax(1) == test_labels
        flagged = np.array([r.uncertain for r in ind])
        is_ood = np.r_[np.zeros(len(ind)), np.ones(len(ood))]
        scores = {name: np.array([getattr(r, name) for r in ind + ood]) for name in ("entropy", "disagreement")}
        scores["1-confidence"] = 1 - np.array([r.confidence for r in ind + ood])
        saved = dict(runtime.temperature)
        runtime.temperature = dict.fromkeys(saved, 1.0)  # the same frames without temperature scaling
        raw = np.stack([r.probabilities for r in runtime.infer_in_calls(test_images, streams, policy=policy)])
        runtime.temperature = saved
        report[policy] = {
            "width": sorted({r.width for r in ind}), "replicas": sorted({r.replicas for r in ind}),
            "accuracy": float(correct.mean()),
            "flagged_uncertain": float(flagged.mean()),
            "accuracy_not_flagged": float(correct[~flagged].mean()) if (~flagged).any() else None,
            "accuracy_flagged": float(correct[flagged].mean()) if flagged.any() else None,
            "ood_flagged_uncertain": float(np.mean([r.uncertain for r in ood])),
            "auroc": {k: float(roc_auc_score(is_ood, v)) for k, v in scores.items()},
            "ece_temperature_scaled": ece(probs, test_labels),
            "ece_raw": ece(raw, test_labels),
        }
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundle")
    parser.add_argument("--streams", type=int, default=4, help="frames per infer_many call")
    parser.add_argument("--limit", type=int, default=10000, help="Fashion-MNIST test images to use")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()

    runtime = Runtime(args.bundle, threads=args.threads)
    test = load_fashion_mnist("test").subset(slice(0, args.limit))
    report = study(runtime, test.images[:, 0], test.labels, digits_28(), args.streams)
    print(f"bundle {args.bundle} ({runtime.precision}), {len(test)} Fashion-MNIST test images, "
          f"1797 OOD digits, {args.streams} streams per call\n")
    print("| policy | width | replicas | accuracy | flagged | acc. not flagged | acc. flagged | digits flagged "
          "| AUROC entropy | AUROC disagreement | AUROC 1-conf | ECE (T) | ECE (raw) |")
    print("|---" * 13 + "|")
    for policy, r in report.items():
        fmt = lambda v: "-" if v is None else f"{v:.4f}"  # noqa: E731
        print(f"| {policy} | {r['width']} | {r['replicas']} | {fmt(r['accuracy'])} | {fmt(r['flagged_uncertain'])} "
              f"| {fmt(r['accuracy_not_flagged'])} | {fmt(r['accuracy_flagged'])} | {fmt(r['ood_flagged_uncertain'])} "
              f"| {r['auroc']['entropy']:.4f} | {r['auroc']['disagreement']:.4f} | {r['auroc']['1-confidence']:.4f} "
              f"| {r['ece_temperature_scaled']:.4f} | {r['ece_raw']:.4f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"bundle": args.bundle, "precision": runtime.precision, "streams": args.streams,
                       "test_images": len(test), "ood_images": 1797, "policies": report}, f, indent=2)


if __name__ == "__main__":
    main()
