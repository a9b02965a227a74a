"""Recipe for the Fashion-MNIST samples shipped with edge-mimo (run once; the outputs are committed).

    python -m edge_mimo.calibration.make_samples

- fashion_mnist_calibration.npz: 1024 training images (seeded draw, class-balanced), for INT8 calibration.
- fashion_mnist_validation.npz: the 3000 images held out from the end of the training split (never trained
  on), for the accuracy gate and temperature / uncertainty-threshold fitting.
- digits_ood.npz: scikit-learn's 1797 handwritten digits (8x8, from the UCI optical digits set, BSD-3 via
  scikit-learn), scaled to 0..255 and upscaled to 28x28: out-of-distribution objects for the camera suite's
  uncertainty check. Needs scikit-learn to regenerate.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..datasets import ImageSet, load_fashion_mnist

HERE = Path(__file__).resolve().parent
CALIBRATION_PER_CLASS = 1024 // 10 + 1


def save(path: Path, data: ImageSet, source: str) -> None:
    """Write ``data`` as a compressed .npz with its class names and where it came from."""
    meta = json.dumps({"class_names": list(data.class_names), "source": source})
    np.savez_compressed(path, images=data.images, labels=data.labels.astype(np.uint8), meta=np.array(meta))
    print(f"{path.name}: {len(data)} images, {path.stat().st_size / 1e6:.2f} MB")


def main() -> None:
    """Regenerate the three samples beside this file."""
    train = load_fashion_mnist("train")
    rng = np.random.default_rng(20261123)
    picks = np.concatenate([rng.choice(np.flatnonzero(train.labels == c), CALIBRATION_PER_CLASS, replace=False)
                            for c in range(10)])
    picks = rng.permutation(picks)[:1024]
    save(HERE / "fashion_mnist_calibration.npz", train.subset(picks), "Fashion-MNIST train split, seeded draw")
    save(HERE / "fashion_mnist_validation.npz", load_fashion_mnist("val"),
         "Fashion-MNIST train images 57000..59999 (held out from training)")
    save(HERE / "digits_ood.npz", digits_28(), "scikit-learn load_digits(), x255/16, INTER_LINEAR to 28x28")


def digits_28() -> ImageSet:
    """scikit-learn's 8x8 digits (values 0..16) as uint8 [1797, 1, 28, 28] images, labelled with their digit."""
    import cv2
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = (digits.images * (255.0 / 16.0)).astype(np.uint8)
    big = np.stack([cv2.resize(img, (28, 28), interpolation=cv2.INTER_LINEAR) for img in images])[:, None]
    return ImageSet(big, digits.target.astype(np.int64), tuple(str(d) for d in range(10)))


if __name__ == "__main__":
    main()
