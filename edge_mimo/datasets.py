"""Image datasets as uint8 arrays [M, C, H, W] with int64 labels (torch-free).

Sources: Fashion-MNIST IDX files (Debian's ``dataset-fashion-mnist``), an image-folder layout
(``root/<class>/<image>``), CIFAR-10 python batches, and the samples shipped with edge-mimo.
"""

from __future__ import annotations

import gzip
import json
import logging
import pickle
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from .models.config import FASHION_MNIST_CLASSES
from .errors import DataError, NotFoundError

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
        raise DataError(f"{path} is not an unsigned-byte IDX file")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise DataError(f"{path} is truncated: header says {shape}, found {data.size} values")
    return data.reshape(shape)


def load_fashion_mnist(split: str, root: str | Path = FASHION_MNIST_DIR) -> ImageSet:
    """``split``: 'train' (57k, the held-out tail removed), 'val' (the 3k held out), 'test' (10k), 'full-train'."""
    root = Path(root)
    prefix = "t10k" if split == "test" else "train"
    files = [root / f"{prefix}-{kind}-idx{d}-ubyte.gz" for kind, d in (("images", 3), ("labels", 1))]
    for f in files:
        if not f.exists() and not f.with_suffix("").exists():
            raise NotFoundError(
                f"{f} not found: install Fashion-MNIST with `apt-get install -y dataset-fashion-mnist` "
                "(or name the folder holding its IDX files in the dataset spec: fashion-mnist:FOLDER)"
            )
    images, labels = (read_idx(f if f.exists() else f.with_suffix("")) for f in files)
    data = ImageSet(images[:, None].copy(), labels.astype(np.int64), FASHION_MNIST_CLASSES)
    if split == "train":
        return data.subset(slice(0, len(data) - VALIDATION_HOLDOUT))
    if split == "val":
        return data.subset(slice(len(data) - VALIDATION_HOLDOUT, None))
    if split in ("test", "full-train"):
        return data
    raise DataError(f"unknown Fashion-MNIST split {split!r}: use train, val, test or full-train")


def image_folder_classes(root: str | Path) -> dict[str, list[Path]]:
    """The class folders of ``root`` (hidden ones such as ``.ipynb_checkpoints`` skipped) and their image files,
    sorted; a folder without images maps to an empty list."""
    root = Path(root)
    if not root.is_dir():
        return {}
    return {d.name: sorted(f for f in d.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES and not f.name.startswith(".")
                           and f.is_file())
            for d in sorted(root.iterdir()) if d.is_dir() and not d.name.startswith(".")}


def load_image_folder(root: str | Path, size: int, channels: int) -> ImageSet:
    """``root/<class name>/<image>``; images resized to ``size`` x ``size`` with ``channels`` channels.
    Hidden folders and class folders without images are not classes (the latter are named in a warning)."""
    import cv2

    folders = image_folder_classes(root)
    if empty := [name for name, files in folders.items() if not files]:
        logging.getLogger(__name__).warning("warning: %s: no images in class folder(s) %s: not used as classes",
                                            root, ", ".join(empty))
    classes = sorted(name for name, files in folders.items() if files)
    if not folders:
        raise NotFoundError(f"{root} has no class folders: expected {root}/<class>/<image files>")
    if not classes:
        raise NotFoundError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in the class folders of {root}")
    images, labels = [], []
    for label, name in enumerate(classes):
        for f in folders[name]:
            img = cv2.imread(str(f), cv2.IMREAD_GRAYSCALE if channels == 1 else cv2.IMREAD_COLOR)
            if img is None:
                raise DataError(f"{f} could not be decoded as an image: remove or replace it")
            img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
            img = img[None] if channels == 1 else cv2.cvtColor(img, cv2.COLOR_BGR2RGB).transpose(2, 0, 1)
            images.append(img)
            labels.append(label)
    return ImageSet(np.stack(images), np.array(labels, dtype=np.int64), tuple(classes))


MAX_AUTO_SIZE = 64  # the largest input side picked from an image folder's own images


def image_folder_input(spec: str, sample: int = 50) -> tuple[int, int]:
    """(channels, side) an image folder's images suggest: 3 if any sampled image has colour, else 1; the median
    shorter side, at most :data:`MAX_AUTO_SIZE`."""
    import cv2

    folder = Path(spec)
    folder = folder / "train" if (folder / "train").is_dir() else folder
    files = [f for fs in image_folder_classes(folder).values() for f in fs]
    picked = [files[i] for i in np.linspace(0, len(files) - 1, min(sample, len(files))).astype(int)] if files else []
    colour, sides = False, []
    for f in picked:
        img = cv2.imread(str(f), cv2.IMREAD_COLOR)
        if img is None:
            continue
        sides.append(min(img.shape[:2]))
        colour = colour or not (np.array_equal(img[..., 0], img[..., 1]) and np.array_equal(img[..., 1], img[..., 2]))
    if not sides:
        raise NotFoundError(f"no readable images under {folder}/<class>/: expected image files "
                            f"({', '.join(sorted(IMAGE_SUFFIXES))})")
    return (3 if colour else 1), int(min(MAX_AUTO_SIZE, np.median(sides)))


def load_cifar10(root: str | Path, split: str) -> ImageSet:
    """CIFAR-10 python batches (``data_batch_1..5``, ``test_batch``, ``batches.meta``) under ``root``.

    These files are pickles: only load CIFAR batches you downloaded from the official source.
    """
    root = Path(root)
    names = ["test_batch"] if split == "test" else [f"data_batch_{i}" for i in range(1, 6)]
    images, labels = [], []
    for name in names:
        if not (root / name).exists():
            raise NotFoundError(f"{root / name} not found: name the cifar-10-batches-py folder in the dataset spec: "
                                "cifar10:FOLDER")
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
        raise NotFoundError(f"no shipped sample {name!r}: choose one of {', '.join(SHIPPED_SAMPLES)}")
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
