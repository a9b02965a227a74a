"""Image datasets as uint8 arrays [M, C, H, W] with int64 labels (torch-free).

Sources: Fashion-MNIST IDX files (Debian's ``dataset-fashion-mnist``), an image-folder layout
(``root/<class>/<image>``), CIFAR-10 python batches, and the samples shipped with edge-mimo.
"""

from __future__ import annotations

import gzip
import json
import pickle
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from .models.config import FASHION_MNIST_CLASSES

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
VALIDATION_HOLDOUT = 3000  # the last images of the Fashion-MNIST training split, never trained on
AUGMENT_PRESETS = ("camera", "shift", "none")  # what training may do to each image (edge_mimo.train.recipe)
FOLDER_HOLDOUT_SHARE = 0.1  # share of each class held out as "test" from an image folder without test/
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm"}


@dataclass
class ImageSet:
    """Labelled images: uint8 ``images`` [M, C, H, W], ``labels`` [M] and the class names."""
    images: np.ndarray  # uint8 [M, C, H, W]
    labels: np.ndarray  # int64 [M]
    class_names: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index) -> "ImageSet":
        """The images and labels at ``index`` (a slice, an index array or a mask)."""
        return ImageSet(self.images[index], self.labels[index], self.class_names)


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (optionally gzipped): the format of MNIST and Fashion-MNIST."""
    path = Path(path)
    raw = gzip.open(path).read() if path.suffix == ".gz" else path.read_bytes()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte IDX file")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise ValueError(f"{path} is truncated: header says {shape}, found {data.size} values")
    return data.reshape(shape)


def load_fashion_mnist(split: str, root: str | Path = FASHION_MNIST_DIR) -> ImageSet:
    """``split``: 'train' (57k, the held-out tail removed), 'val' (the 3k held out), 'test' (10k), 'full-train'."""
    root = Path(root)
    prefix = "t10k" if split == "test" else "train"
    files = [root / f"{prefix}-{kind}-idx{d}-ubyte.gz" for kind, d in (("images", 3), ("labels", 1))]
    for f in files:
        if not f.exists() and not f.with_suffix("").exists():
            raise FileNotFoundError(
                f"{f} not found: install Fashion-MNIST with `apt-get install -y dataset-fashion-mnist` "
                "or pass --data-root"
            )
    images, labels = (read_idx(f if f.exists() else f.with_suffix("")) for f in files)
    data = ImageSet(images[:, None].copy(), labels.astype(np.int64), FASHION_MNIST_CLASSES)
    if split == "train":
        return data.subset(slice(0, len(data) - VALIDATION_HOLDOUT))
    if split == "val":
        return data.subset(slice(len(data) - VALIDATION_HOLDOUT, None))
    if split in ("test", "full-train"):
        return data
    raise ValueError(f"unknown Fashion-MNIST split {split!r}: use train, val, test or full-train")


def load_image_folder(root: str | Path, size: int, channels: int) -> ImageSet:
    """``root/<class name>/<image>``; images resized to ``size`` x ``size`` with ``channels`` channels."""
    import cv2

    root = Path(root)
    classes = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    if not classes:
        raise FileNotFoundError(f"{root} has no class folders: expected {root}/<class>/<image files>")
    images, labels = [], []
    for label, name in enumerate(classes):
        for f in sorted((root / name).iterdir()):
            if f.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            img = cv2.imread(str(f), cv2.IMREAD_GRAYSCALE if channels == 1 else cv2.IMREAD_COLOR)
            if img is None:
                raise ValueError(f"{f} could not be decoded as an image: remove or replace it")
            img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
            img = img[None] if channels == 1 else cv2.cvtColor(img, cv2.COLOR_BGR2RGB).transpose(2, 0, 1)
            images.append(img)
            labels.append(label)
    if not images:
        raise FileNotFoundError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) under {root}")
    return ImageSet(np.stack(images), np.array(labels, dtype=np.int64), tuple(classes))


def load_cifar10(root: str | Path, split: str) -> ImageSet:
    """CIFAR-10 python batches (``data_batch_1..5``, ``test_batch``, ``batches.meta``) under ``root``.

    These files are pickles: only load CIFAR batches you downloaded from the official source.
    """
    root = Path(root)
    names = ["test_batch"] if split == "test" else [f"data_batch_{i}" for i in range(1, 6)]
    images, labels = [], []
    for name in names:
        if not (root / name).exists():
            raise FileNotFoundError(f"{root / name} not found: point --data-root at the cifar-10-batches-py folder")
        with open(root / name, "rb") as f:
            batch = pickle.load(f, encoding="bytes")
        images.append(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        labels.append(np.asarray(batch[b"labels"], dtype=np.int64))
    meta_file = root / "batches.meta"
    classes: tuple[str, ...] = ()
    if meta_file.exists():
        with open(meta_file, "rb") as f:
            classes = tuple(c.decode() for c in pickle.load(f, encoding="bytes")[b"label_names"])
    return ImageSet(np.concatenate(images), np.concatenate(labels), classes)


SHIPPED_SAMPLES = {
    "calibration": "fashion_mnist_calibration.npz",  # 1024 Fashion-MNIST training images
    "validation": "fashion_mnist_validation.npz",  # the 3000 held-out Fashion-MNIST training images
    "digits-ood": "digits_ood.npz",  # scikit-learn's 1797 digits at 28x28: out-of-distribution objects
}


def shipped_sample(name: str) -> ImageSet:
    """A sample shipped with edge-mimo (see calibration/make_samples.py): one of :data:`SHIPPED_SAMPLES`."""
    if name not in SHIPPED_SAMPLES:
        raise FileNotFoundError(f"no shipped sample {name!r}: choose one of {', '.join(SHIPPED_SAMPLES)}")
    ref = resources.files("edge_mimo.calibration") / SHIPPED_SAMPLES[name]
    with ref.open("rb") as f, np.load(f) as z:
        meta = json.loads(str(z["meta"]))
        return ImageSet(z["images"], z["labels"].astype(np.int64), tuple(meta["class_names"]))


def holdout_split(labels: np.ndarray, share: float = FOLDER_HOLDOUT_SHARE, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Indices (kept, held out): ``share`` of every class, at least one image per class with two or more,
    chosen at random but the same for a seed."""
    rng = np.random.default_rng(seed)
    kept, held = [], []
    for label in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == label))
        k = min(len(idx) - 1, max(1, round(share * len(idx)))) if len(idx) > 1 else 0
        held.append(idx[:k])
        kept.append(idx[k:])
    return np.sort(np.concatenate(kept)), np.sort(np.concatenate(held))


NAMED_DATASETS = ("fashion-mnist", "cifar10", "shipped")  # any other spec is an image folder


def holds_out_test_images(spec: str) -> bool:
    """Is ``spec`` an image folder without its own ``test/`` split (so :func:`load_dataset` holds images out)?"""
    return spec.partition(":")[0] not in NAMED_DATASETS and not (Path(spec) / "test").is_dir()


def load_dataset(spec: str, split: str, size: int = 28, channels: int = 1) -> ImageSet:
    """Resolve a dataset spec: 'fashion-mnist[:ROOT]', 'cifar10:ROOT', 'shipped', or an image-folder path.

    An image folder without a ``test/`` subfolder keeps :data:`FOLDER_HOLDOUT_SHARE` of each class apart
    (the same images every time): split "test" returns those, "train" the rest, so a test figure is never
    measured on training images.
    """
    kind, _, root = spec.partition(":")
    if kind == "fashion-mnist":
        return load_fashion_mnist(split, root or FASHION_MNIST_DIR)
    if kind == "cifar10":
        return load_cifar10(root, split)
    if kind == "shipped":
        return shipped_sample("calibration" if split == "train" else "validation")
    folder = Path(spec)
    if (folder / split).is_dir():
        return load_image_folder(folder / split, size, channels)
    data = load_image_folder(folder / "train" if (folder / "train").is_dir() else folder, size, channels)
    kept, held = holdout_split(data.labels)
    return data.subset(held if split == "test" else kept)
