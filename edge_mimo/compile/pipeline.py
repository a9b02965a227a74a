"""``compile``: model -> per-width ONNX -> INT8 -> accuracy gate -> (engines) -> bundle, written atomically."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import platform
import time
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np

from .. import __version__
from ..atomic import atomic_dir, check_replaceable
from ..bundle.manifest import (MANIFEST_FILE, GraphFile, Manifest, Quantization, Validation, WidthAccuracy,
                               WidthArtifacts, is_bundle, sha256_file)
from ..bundle.names import INPUT_NAME, PLOT_FILE, REPORT_FILE, graph_file
from ..bundle.target import MAX_CROP_FACTOR, TargetProfile
from ..datasets import NAMED_DATASETS, ImageSet, load_dataset
from ..engines import build_bundle_engines
from ..models.config import FASHION_MNIST_CLASSES, TRAINING_FILE
from ..models.default import SHIPPED_MODELS, resolve_model
from ..progress import bar
from ..errors import AccuracyGateError, BackendUnavailableError, ConfigError, DataError, ExportError
from ..quantize import METHODS, CalibrationCache, QuantizeResult, data_hash, quantize_width
from ..runtime.batching import model_inputs, spec_for, width_groups
from .evaluate import onnx_frame_logits, width_report
from .report import render, write_plot
from .targets import load_target

log = logging.getLogger(__name__)
AUTO = "auto"  # calibrate / validate on the model's own data (its training.json says which)


def default_cache_dir() -> Path:
    """``$EDGE_MIMO_CACHE/calibration`` when that variable is set, else ``~/.cache/edge-mimo/calibration``."""
    root = os.environ.get("EDGE_MIMO_CACHE")
    return (Path(root) if root else Path.home() / ".cache" / "edge-mimo") / "calibration"


def _whole(value: object, lowest: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= lowest


@dataclass(frozen=True)
class CompileOptions:
    """What :func:`compile_bundle` builds, checked when made (ConfigError naming the ``edge-mimo compile`` option
    and the fix); the fields mirror that command's options.

    ``max_width`` (--m): the largest superposition width built from the target's widths, unless ``widths`` names
    them. ``calibration_set`` / ``validation_set`` (--calib / --val): 'auto' (the model's own data), 'shipped',
    'fashion-mnist[:ROOT]', 'cifar10:ROOT' or an image folder; ``calibration_size`` images calibrate,
    ``validation_size`` validate (0: all). ``calibration_method``: None for the model family's default
    (:func:`calibration_method`). ``max_drop_points``: the accuracy gate (INT8 vs FP32, points), ignored with
    ``allow_drop``. ``cache_dir``: the calibration cache (None: none). ``in_graph`` / ``crop_factor``: None for
    the target profile's [preprocess] values.
    """

    model: str = "default"
    target: str = "cpu"
    max_width: int = 4
    widths: tuple[int, ...] | None = None
    calibration_set: str = AUTO
    calibration_size: int = 512
    calibration_method: str | None = None
    validation_set: str = AUTO
    validation_size: int = 0
    max_drop_points: float = 1.0
    allow_drop: bool = False
    output: Path | None = None
    cache_dir: Path | None = field(default_factory=default_cache_dir)
    in_graph: bool | None = None
    crop_factor: int | None = None

    def __post_init__(self) -> None:
        for flag, name, lowest in (("--m", "max_width", 1), ("--calib-size", "calibration_size", 0),
                                   ("--val-size", "validation_size", 0)):
            if not _whole(getattr(self, name), lowest):
                raise ConfigError(f"{flag} ({name}) must be an integer >= {lowest}: got {getattr(self, name)!r}")
        if self.calibration_size == 0:
            raise ConfigError("--calib-size (calibration_size) must be at least 1: calibration needs images (512 "
                              "is the default)")
        if self.widths is not None:
            if isinstance(self.widths, (str, bytes)) or not all(_whole(n, 1) for n in self.widths):
                raise ConfigError(f"--widths {self.widths!r} must be positive integers, e.g. --widths 1 2 4")
            if len(set(self.widths)) != len(self.widths):
                raise ConfigError(f"--widths {list(self.widths)} names a width twice: give each width once, e.g. "
                                  "--widths 1 2 4")
            object.__setattr__(self, "widths", tuple(self.widths))  # a list given: frozen like the rest
        if self.calibration_method is not None and self.calibration_method not in METHODS:
            raise ConfigError(f"--calib-method {self.calibration_method!r} is unknown: choose one of "
                              f"{', '.join(METHODS)}")
        if self.crop_factor is not None and not (_whole(self.crop_factor, 1) and self.crop_factor <= MAX_CROP_FACTOR):
            raise ConfigError(f"--crop-factor must be an integer in 1..{MAX_CROP_FACTOR}, got {self.crop_factor!r}")
        if not (isinstance(self.max_drop_points, (int, float)) and not isinstance(self.max_drop_points, bool)
                and math.isfinite(self.max_drop_points) and self.max_drop_points >= 0):
            raise ConfigError(f"--max-drop (max_drop_points) must be a finite number of points >= 0, got "
                              f"{self.max_drop_points!r}: use --allow-drop to write a bundle whatever the drop")


# in-graph graphs vs the numpy path on camera frames: largest |logit difference| allowed (FP32 graphs; the
# inputs differ by the numpy path's uint8 roundings only, within 1/255 of a pixel)
IN_GRAPH_MAX_LOGIT_DIFF = 0.25  # measured: 0.06-0.09 (logits up to 15) on the default model


def calibration_method(arch: str) -> str:
    """The default calibration method of a model family: min-max, except percentile clipping for MIMOFormer.

    MIMOFormer's activations have long tails (FAVOR+ feature maps, the superposed token sums); min-max spends the
    8-bit grid on rare outliers. Measured on the shipped MIMOFormer, 10,000 test images, INT8 drop at widths
    1 / 2 / 4: min-max 1.02 / 0.79 / 0.95 points (width 1 over the 1-point gate), percentile 0.68 / 0.71 / 0.50.
    """
    return "percentile" if arch == "mimoformer" else "minmax"


def _versions() -> dict:
    out = {"python": platform.python_version()}
    for pkg in ("torch", "onnx", "onnxruntime", "tensorrt", "nvidia-modelopt"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out


def _trained_on(model_dir: Path) -> dict:
    """The model's ``training.json`` (empty when it has none or it cannot be read)."""
    try:
        record = json.loads((model_dir / TRAINING_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def _is_fashion_mnist(spec: str) -> bool:
    return spec.partition(":")[0] in ("fashion-mnist", "shipped")


def data_specs(opts: CompileOptions, model_dir: Path, config) -> tuple[str, str]:
    """The calibration and validation specs: ``auto`` becomes the model's own data (``training.json``), the
    shipped Fashion-MNIST samples for a Fashion-MNIST model; refused at once when neither applies."""
    if AUTO not in (opts.calibration_set, opts.validation_set):
        return opts.calibration_set, opts.validation_set
    dataset = _trained_on(model_dir).get("dataset")
    fashion = tuple(config.class_names) == FASHION_MNIST_CLASSES and (config.in_channels, config.image_size) == (1, 28)
    if isinstance(dataset, str) and _is_fashion_mnist(dataset) or dataset is None and fashion:
        own = "shipped"
    elif isinstance(dataset, str) and (dataset.partition(":")[0] in NAMED_DATASETS or Path(dataset).is_dir()):
        own = dataset
    else:
        where = f"its training data {dataset!r} is not here" if isinstance(dataset, str) else \
            f"it has no {TRAINING_FILE} naming its training data"
        raise DataError(f"cannot tell which images to calibrate and validate {model_dir} on ({where}): pass "
                        "--calib and --val, e.g. --calib ROOT/train --val ROOT/test (image folders of its classes)")
    return (own if opts.calibration_set == AUTO else opts.calibration_set), (own if opts.validation_set == AUTO else opts.validation_set)


def _split(spec: str, purpose: str) -> str:
    """The split of ``spec`` to read: training images to calibrate; held-out images (``val/``, else ``test``) to
    validate, never the images a model was trained on."""
    if purpose == "calib":
        return "train"
    if spec == "shipped" or (spec.partition(":")[0] not in NAMED_DATASETS and (Path(spec) / "val").is_dir()):
        return "val"
    return "test"


def _images(spec: str, split: str, size: int, config) -> tuple[ImageSet, str]:
    """Calibration / validation images: 'shipped', 'fashion-mnist[:ROOT]', 'cifar10:ROOT' or an image folder,
    checked against the model's input and classes."""
    try:
        data = load_dataset(spec, split, config.image_size, config.in_channels)
    except FileNotFoundError as e:
        raise DataError(str(e)) from e
    option = "--calib" if split == "train" else "--val"
    if data.images.shape[1:] != (config.in_channels, config.image_size, config.image_size):
        raise DataError(f"{spec} images are {data.images.shape[1:]}, the model takes "
                        f"{(config.in_channels, config.image_size, config.image_size)}: pass {option} with images "
                        "of the model's own classes (an image folder ROOT/<class>/<image>)")
    names, own = tuple(data.class_names), tuple(config.class_names)
    if (names and own and names != own) or (len(data) and int(data.labels.max()) >= config.num_classes):
        raise DataError(f"{spec} has classes {list(names) or int(data.labels.max()) + 1}, the model "
                        f"{list(own) or config.num_classes}: pass {option} with images of the model's own classes "
                        "(an image folder ROOT/<class>/<image>)")
    if size and size < len(data):
        pick = np.sort(np.random.default_rng(0).choice(len(data), size, replace=False))
        data = data.subset(pick)
    return data, spec


def _warn_if_trained_on(val: ImageSet, model_dir: Path, config) -> None:
    """Warn when validation images are images the model was trained on: its accuracy would be flattering."""
    record = _trained_on(model_dir)
    dataset, count = record.get("dataset"), record.get("train_images")
    if not isinstance(dataset, str):
        return
    try:
        train = load_dataset(dataset, "train", config.image_size, config.in_channels)
    except (OSError, ValueError):
        return
    if isinstance(count, int) and count > 0:
        train = train.subset(slice(0, count))
    seen = {hashlib.sha1(im.tobytes()).digest() for im in train.images}
    overlap = sum(hashlib.sha1(im.tobytes()).digest() in seen for im in val.images)
    if overlap:
        log.warning("warning: %d of the %d validation images are training images of this model: its accuracy, "
                    "temperature and uncertainty threshold would be fitted on data it has seen; pass held-out "
                    "images with --val", overlap, len(val))


def near_chance(accuracy: float, classes: int) -> str | None:
    """A warning when ``accuracy`` is less than halfway from chance (1 / classes) to perfect, else None."""
    chance = 1 / classes
    if accuracy >= (1 + chance) / 2:
        return None
    return (f"INT8 accuracy {accuracy:.1%} is near chance ({chance:.1%} for {classes} classes): the model has "
            "barely learned; train longer (--steps) or on more data before deploying it")


def _widths(opts: CompileOptions, profile: TargetProfile, capacity_widths: tuple[int, ...]) -> list[int]:
    wanted = opts.widths or [n for n in profile.widths if n <= opts.max_width]
    bad = [n for n in wanted if n not in capacity_widths]
    if bad:
        raise ConfigError(f"widths {bad} are not divisors of the model's capacity: choose from {list(capacity_widths)}")
    if not wanted:
        raise ConfigError(f"no width <= --m {opts.max_width} in the target's widths {list(profile.widths)}: raise --m")
    return sorted(wanted)


@dataclass
class _Data:
    """The images a compile calibrates and validates on, and where they came from."""
    calib_spec: str
    calib: ImageSet
    calib_sha: str
    val: ImageSet
    val_source: str


@dataclass
class _Graphs:
    """What :func:`_build_graphs` wrote: per width the graph files, the accuracy report, the calibration cache's
    status; the sha256 of every file; the last width's quantization record (the same settings for all)."""
    artifacts: dict[int, WidthArtifacts]
    accuracy: dict[int, WidthAccuracy]
    files: dict[str, str]
    cache_status: dict[int, str]
    quant: QuantizeResult


def compile_bundle(opts: CompileOptions) -> tuple[Path, Manifest]:
    """Run the pipeline; returns the bundle path and its manifest. Nothing is left behind on failure."""
    from ..models.weights import WEIGHTS_FILE, load_model  # torch: the compile extra

    profile = _target_profile(opts)
    model_dir = resolve_model(opts.model)
    model = load_model(model_dir)
    widths = _widths(opts, profile, model.config.widths)
    model_sha = sha256_file(model_dir / WEIGHTS_FILE)
    data = _load_data(opts, model_dir, model.config, widths)
    output = _output_path(opts, profile, model_dir)
    check_replaceable(output, MANIFEST_FILE, owned=is_bundle)  # only an earlier bundle is ever replaced
    with atomic_dir(output, marker=MANIFEST_FILE) as tmp:
        graphs = _build_graphs(tmp, model, widths, profile, data, opts)
        if profile.in_graph:
            _in_graph(tmp, model, widths, profile.flavour, profile, data.calib)
            graphs = _rehashed(tmp, graphs, profile.flavour)
        failed = _accuracy_gate(graphs.accuracy, opts)
        _warn_near_chance(graphs.accuracy, model.config.num_classes)
        manifest = _manifest(opts, model, model_dir, model_sha, widths, profile, data, graphs, failed)
        manifest = _write_bundle(tmp, manifest, f"{model.config.arch} N={model.config.capacity}, {profile.name}")
    return output, manifest


def _target_profile(opts: CompileOptions) -> TargetProfile:
    """The target's profile, with ``--in-graph`` / ``--crop-factor`` applied over its ``[preprocess]`` table."""
    profile = load_target(opts.target)
    return dataclasses.replace(profile, in_graph=profile.in_graph if opts.in_graph is None else bool(opts.in_graph),
                               crop_factor=opts.crop_factor or profile.crop_factor)


def _load_data(opts: CompileOptions, model_dir: Path, cfg, widths: list[int]) -> _Data:
    """The calibration and validation images, checked against the model; warns when validation images are
    training images of the model."""
    calib_spec, val_spec = data_specs(opts, model_dir, cfg)
    calib, _ = _images(calib_spec, _split(calib_spec, "calib"), opts.calibration_size, cfg)
    if len(calib) < max(widths):
        raise DataError(f"{len(calib)} calibration image(s) cannot fill a width-{max(widths)} group: "
                        f"give at least {max(widths)} (ideally hundreds) with --calib / --calib-size")
    val, val_source = _images(val_spec, _split(val_spec, "val"), opts.validation_size, cfg)
    if val_spec != "shipped":  # the shipped sample is Fashion-MNIST's held-out tail, never in the train split
        _warn_if_trained_on(val, model_dir, cfg)
    return _Data(calib_spec, calib, data_hash(calib.images), val, val_source)


def _output_path(opts: CompileOptions, profile: TargetProfile, model_dir: Path) -> Path:
    """``--output``, else ``bundles/<model>-<target>-m<m>``."""
    name = opts.model if opts.model in SHIPPED_MODELS else model_dir.name
    return Path(opts.output or f"bundles/{name}-{profile.name}-m{opts.max_width}")


def _build_graphs(tmp: Path, model, widths: list[int], profile: TargetProfile, data: _Data,
                  opts: CompileOptions) -> _Graphs:
    """Per width, into ``tmp``: export the FP32 graph (checked against PyTorch), quantize it to the target's INT8
    flavour, and score both on the validation images."""
    cfg, flavour = model.config, profile.flavour
    cache = CalibrationCache(opts.cache_dir) if opts.cache_dir else None
    artifacts, accuracy, files, cache_status = {}, {}, {}, {}
    (tmp / "fp32").mkdir()
    (tmp / "int8").mkdir()
    steps = bar(3 * len(widths), "compile")
    spec = spec_for(cfg)
    val_x = model_inputs(data.val.images, spec)  # the runtime's preprocessing, as the bundle will be fed
    for n in widths:
        fp32_rel, int8_rel = graph_file("fp32", n), graph_file("int8", n, flavour)
        steps.set_postfix_str(f"export n={n}")
        diff = _export_checked(model, n, tmp / fp32_rel, data.calib, spec)
        steps.update()
        steps.set_postfix_str(f"quantize n={n}")
        quant = quantize_width(tmp / fp32_rel, tmp / int8_rel, data.calib.images, n, cfg.mean, cfg.std,
                               data_sha256=data.calib_sha,
                               method=opts.calibration_method or calibration_method(cfg.arch),
                               flavour=flavour, cache=cache)
        cache_status[n] = quant.cache
        steps.update()
        steps.set_postfix_str(f"evaluate n={n}")
        fp_logits = onnx_frame_logits(tmp / fp32_rel, val_x, n, cfg.capacity)
        q_logits = onnx_frame_logits(tmp / int8_rel, val_x, n, cfg.capacity)
        accuracy[n] = width_report(fp_logits, q_logits, data.val.labels, fp32_max_abs_diff_vs_torch=diff)
        steps.update()
        for rel in (fp32_rel, int8_rel):
            files[rel] = sha256_file(tmp / rel)
        artifacts[n] = WidthArtifacts(GraphFile(fp32_rel, files[fp32_rel]),
                                      GraphFile(int8_rel, files[int8_rel], flavour))
    steps.close()
    return _Graphs(artifacts, accuracy, files, cache_status, quant)


def _export_checked(model, n: int, path: Path, calib: ImageSet, spec) -> float:
    """Export the width-``n`` FP32 graph to ``path``; returns its largest |difference| from PyTorch on calibration
    groups, ExportError beyond 1e-3."""
    from ..export import export_width, max_abs_difference  # torch: the compile extra

    export_width(model, n, path)
    x = width_groups(model_inputs(calib.images[: 8 * n], spec), n)
    diff = max_abs_difference(model, path, x)
    if diff > 1e-3:
        raise ExportError(f"the width-{n} ONNX graph differs from PyTorch by {diff:.2e} (allowed 1e-3): "
                          "the export is broken for this model; check the torch and onnx versions")
    return diff


def _rehashed(tmp: Path, graphs: _Graphs, flavour: str) -> _Graphs:
    """``graphs`` with the sha256 of its graph files taken again (the in-graph preprocessing rewrote them)."""
    files = dict(graphs.files)
    files.update({rel: sha256_file(tmp / rel) for n in graphs.artifacts
                  for rel in (graph_file("fp32", n), graph_file("int8", n, flavour))})
    artifacts = {n: WidthArtifacts(GraphFile(a.fp32.file, files[a.fp32.file]),
                                   GraphFile(a.int8.file, files[a.int8.file], flavour))
                 for n, a in graphs.artifacts.items()}
    return dataclasses.replace(graphs, artifacts=artifacts, files=files)


def _accuracy_gate(accuracy: dict[int, WidthAccuracy], opts: CompileOptions) -> dict[int, float]:
    """The widths whose INT8 drop exceeds ``--max-drop`` (width -> drop in points); AccuracyGateError when there
    are any, unless ``--allow-drop``."""
    # drop_points is 100 * (a difference of two accuracies): 4 frames of 400 come out as 1.0000000000000009
    # points, so a drop of exactly --max-drop is compared with a tolerance far below one frame
    failed = {n: a.drop_points for n, a in accuracy.items() if not a.drop_points <= opts.max_drop_points + 1e-9}
    if failed and not opts.allow_drop:
        detail = ", ".join(f"width {n}: -{d:.2f} points" for n, d in failed.items())
        raise AccuracyGateError(
            f"INT8 lost more than {opts.max_drop_points} points ({detail}); no bundle written. Try another "
            "--calib-method (entropy, percentile), more calibration data (--calib-size), or accept it "
            "with --allow-drop / a larger --max-drop")
    return failed


def _warn_near_chance(accuracy: dict[int, WidthAccuracy], classes: int) -> None:
    """Warn for each width whose INT8 accuracy is near chance."""
    for n, a in accuracy.items():
        if warning := near_chance(a.int8.accuracy, classes):
            log.warning("warning: width %d: %s", n, warning)


def _manifest(opts: CompileOptions, model, model_dir: Path, model_sha: str, widths: list[int],
              profile: TargetProfile, data: _Data, graphs: _Graphs, failed: dict[int, float]) -> Manifest:
    """The bundle's manifest: what was compiled, from what, how, and how accurate it is."""
    from ..models.weights import count_macs  # torch: the compile extra

    cfg, quant, accuracy = model.config, graphs.quant, graphs.accuracy
    spec = spec_for(cfg)
    return Manifest(
        edge_mimo_version=__version__, created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        model=cfg, model_sha256=model_sha, model_source=str(model_dir),
        input=spec.with_crop(profile.crop_factor) if profile.in_graph else spec,
        widths=tuple(widths), target=profile, artifacts=graphs.artifacts,
        quantization=Quantization(
            method=quant.method, flavour=quant.flavour, tool=quant.tool,
            calibration_images=quant.calibration_images, per_channel=quant.per_channel,
            symmetric_activations=quant.symmetric_activations, calibration_sha256=data.calib_sha,
            calibration_source=data.calib_spec, cache=graphs.cache_status),
        validation=Validation(source=data.val_source, images=int(len(data.val)), gate_max_drop=opts.max_drop_points,
                              gate_failed=tuple(sorted(failed)), allowed_drop=bool(failed and opts.allow_drop)),
        temperature={n: a.temperature for n, a in accuracy.items()},
        uncertainty={n: a.uncertainty for n, a in accuracy.items()},
        accuracy=accuracy, macs_per_image={n: count_macs(model, n) // n for n in widths},
        versions=_versions(), files=graphs.files,
    )


def _write_bundle(tmp: Path, manifest: Manifest, title: str) -> Manifest:
    """TensorRT plans when this machine can build them, the plot, ``report.md`` and the manifest, into ``tmp``;
    returns the manifest as saved."""
    manifest = _engines(tmp, manifest)
    write_plot(tmp / PLOT_FILE, manifest, title)
    (tmp / REPORT_FILE).write_text(render(manifest))
    manifest.save(tmp)
    return manifest


def _in_graph(tmp: Path, model, widths: list[int], flavour: str, profile: TargetProfile,
              calib: ImageSet) -> dict[int, float]:
    """Prepend the preprocessing to every graph (after quantization: those operators stay float), then check the
    FP32 graphs against the numpy path on camera frames (renders of calibration images whose centre crop is the
    graph's crop size, so that both paths see the same pixels and differ only by the numpy path's uint8
    roundings; the trim rule's field of view is the camera suite's to measure). Returns the largest |logit| difference
    per width; ExportError beyond :data:`IN_GRAPH_MAX_LOGIT_DIFF`.

    The accuracy gate has run on the same quantized model: for dataset images (upscaled by the factor) the
    prepended operators compute the numpy path's input exactly, so its figures hold; the camera suite measures
    the difference on real crops (tests/test_compile_ingraph.py, BENCHMARKS.md)."""
    from ..camera.frames import camera_frames
    from ..export.ingraph import prepend_preprocessing
    from ..runtime.preprocess import Normalizer, prepare_batch
    import onnxruntime as ort

    cfg = model.config
    spec = spec_for(cfg)
    crop = spec.with_crop(profile.crop_factor)
    crop_h, crop_w = crop.crop
    frames = camera_frames(calib.images[:16], size=(crop_w + crop_w // 3, crop_h))
    x_numpy = Normalizer(spec)(prepare_batch(frames, spec)[0])
    x_crop = prepare_batch(frames, crop)[0]
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    diffs = {}
    for n in widths:
        fp32 = tmp / graph_file("fp32", n)
        want = ort.InferenceSession(str(fp32), opts).run(None, {INPUT_NAME: width_groups(x_numpy, n)})[0]
        for rel in (graph_file("fp32", n), graph_file("int8", n, flavour)):
            prepend_preprocessing(tmp / rel, tmp / rel, n, cfg.in_channels, cfg.image_size, cfg.image_size,
                                  profile.crop_factor, spec.color, cfg.mean, cfg.std)
        got = ort.InferenceSession(str(fp32), opts).run(None, {INPUT_NAME: width_groups(x_crop, n)})[0]
        diffs[n] = float(np.abs(got - want).max())
        if not diffs[n] <= IN_GRAPH_MAX_LOGIT_DIFF:
            raise ExportError(f"the width-{n} in-graph preprocessing differs from the numpy path by {diffs[n]:.3f} "
                              f"in the logits (allowed {IN_GRAPH_MAX_LOGIT_DIFF}): compile without --in-graph and "
                              "report it")
    return diffs


def _engines(tmp: Path, manifest: Manifest) -> Manifest:
    """Build TensorRT plans when this machine can; the manifest comes back with them and a note saying what was done."""
    if manifest.backend != "tensorrt":
        manifest.engines_note = "none (ONNX Runtime runs the INT8 ONNX directly)"
        return manifest
    try:
        manifest, built = build_bundle_engines(tmp, manifest)
    except BackendUnavailableError as e:
        manifest.engines_note = (f"not built here ({e}). Build them on the device with `edge-mimo build-engines "
                                 "BUNDLE`, or let the runtime build them into its plan cache on first load")
        return manifest
    manifest.engines_note = f"built {len(built)} plan(s) on this machine"
    manifest.save(tmp)  # with the plans and their hashes, as build_bundle_engines recorded them
    return manifest
