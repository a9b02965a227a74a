"""Recipe for the Fashion-MNIST samples shipped with edge-mimo (run once; the outputs are committed).

    python -m edge_mimo.samples.make_samples

- fashion_mnist_calibration.npz: 1024 training images (seeded draw, class-balanced), for INT8 calibration.
- fashion_mnist_validation.npz: the 3000 images held out from the end of the training split (never trained
  on), for the accuracy gate and temperature / uncertainty-threshold fitting.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from edge_mimo.datasets import ImageSet, load_fashion_mnist

HERE = Path(__file__).resolve().parent
CALIBRATION_PER_CLASS = 1024 // 10 + 1


def save(path: Path, data: ImageSet, source: str) -> None:
    meta = json.dumps({"class_names": list(data.class_names), "source": source})
    np.savez_compressed(path, images=data.images, labels=data.labels.astype(np.uint8), meta=np.array(meta))
    print(f"{path.name}: {len(data)} images, {path.stat().st_size / 1e6:.2f} MB")


def main() -> None:
    train = load_fashion_mnist("train")
    rng = np.random.default_rng(20261123)
    picks = np.concatenate([rng.choice(np.flatnonzero(train.labels == c), CALIBRATION_PER_CLASS, replace=False)
                            for c in range(10)])
    picks = rng.permutation(picks)[:1024]
    save(HERE / "fashion_mnist_calibration.npz", train.subset(picks), "Fashion-MNIST train split, seeded draw")
    save(HERE / "fashion_mnist_validation.npz", load_fashion_mnist("val"),
         "Fashion-MNIST train images 57000..59999 (held out from training)")


if __name__ == "__main__":
    main()
