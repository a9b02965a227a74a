"""``compile``: model -> per-width ONNX -> INT8 -> accuracy gate -> (engines) -> bundle, written atomically."""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .. import __version__
from ..atomic import atomic_dir
from ..bundle.manifest import MANIFEST_FILE, SCHEMA_VERSION, sha256_file
from ..datasets import ImageSet, load_dataset
from ..errors import AccuracyGateError, BackendUnavailableError, ConfigError, DataError
from ..quantize import CalibrationCache, data_hash, quantize_width
from ..quantize.calibration import normalize
from .evaluate import onnx_replica_logits, width_report
from .report import render, write_plot


def default_cache_dir() -> Path:
    """``$EDGE_MIMO_CACHE/calibration`` when that variable is set, else ``~/.cache/edge-mimo/calibration``."""
    root = os.environ.get("EDGE_MIMO_CACHE")
    return (Path(root) if root else Path.home() / ".cache" / "edge-mimo") / "calibration"


@dataclass
class CompileOptions:
    model: str = "default"
    target: str = "cpu"
    m: int = 4
    widths: list[int] | None = None
    calib: str = "shipped"
    calib_size: int = 512
    calib_method: str = "minmax"
    val: str = "shipped"
    val_size: int = 0  # 0: the whole validation set
    max_drop: float = 1.0
    allow_drop: bool = False
    output: Path | None = None
    cache_dir: Path | None = field(default_factory=default_cache_dir)
    log: object = field(default=print)


def _versions() -> dict:
    out = {"python": platform.python_version()}
    for pkg in ("torch", "onnx", "onnxruntime", "tensorrt", "nvidia-modelopt"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out


def _images(spec: str, split: str, size: int, config) -> tuple[ImageSet, str]:
    """Calibration / validation images: 'shipped', 'fashion-mnist[:ROOT]' or an image folder."""
    try:
        data = load_dataset(spec, split, config.image_size, config.in_channels)
    except FileNotFoundError as e:
        raise DataError(str(e)) from e
    if data.images.shape[1:] != (config.in_channels, config.image_size, config.image_size):
        raise DataError(f"{spec} images are {data.images.shape[1:]}, the model takes "
                        f"{(config.in_channels, config.image_size, config.image_size)}")
    if size and size < len(data):
        pick = np.sort(np.random.default_rng(0).choice(len(data), size, replace=False))
        data = data.subset(pick)
    return data, spec


def _widths(opts: CompileOptions, profile: dict, capacity_widths: tuple[int, ...]) -> list[int]:
    wanted = opts.widths or [n for n in profile["widths"] if n <= opts.m]
    bad = [n for n in wanted if n not in capacity_widths]
    if bad:
        raise ConfigError(f"widths {bad} are not divisors of the model's capacity: choose from {list(capacity_widths)}")
    if not wanted:
        raise ConfigError(f"no width <= --m {opts.m} in the target's widths {profile['widths']}: raise --m")
    return sorted(wanted)


def compile_bundle(opts: CompileOptions) -> tuple[Path, dict]:
    """Run the pipeline; returns the bundle path and its manifest. Nothing is left behind on failure."""
    from ..export import export_width, max_abs_difference
    from ..models.default import resolve_model
    from ..models.weights import WEIGHTS_FILE, count_macs, load_model
    from .targets import load_target

    log = opts.log
    profile = load_target(opts.target)
    model_dir = resolve_model(opts.model)
    model = load_model(model_dir)
    cfg = model.config
    widths = _widths(opts, profile, cfg.widths)
    model_sha = sha256_file(model_dir / WEIGHTS_FILE)
    calib, _ = _images(opts.calib, "train", opts.calib_size, cfg)
    val, val_source = _images(opts.val, "test" if opts.val.startswith("fashion-mnist") else "val", opts.val_size, cfg)
    calib_sha = data_hash(calib.images)
    flavour = profile["flavour"]
    cache = CalibrationCache(opts.cache_dir) if opts.cache_dir else None
    name = "default" if opts.model == "default" else model_dir.name
    output = Path(opts.output or f"bundles/{name}-{profile['name']}-m{opts.m}")

    artifacts, accuracy, files, quant, cache_status = {}, {}, {}, {}, {}
    with atomic_dir(output, marker=MANIFEST_FILE) as tmp:
        (tmp / "fp32").mkdir()
        (tmp / "int8").mkdir()
        steps = tqdm(total=3 * len(widths), desc="compile", unit="step", dynamic_ncols=True)
        for n in widths:
            fp32_rel, int8_rel = f"fp32/width{n}.onnx", f"int8/width{n}.{flavour}.onnx"
            steps.set_postfix_str(f"export n={n}")
            export_width(model, n, tmp / fp32_rel)
            probe = calib.images[: 8 * n]
            x = normalize(probe, cfg.mean, cfg.std).reshape(-1, n, *probe.shape[1:])
            diff = max_abs_difference(model, tmp / fp32_rel, x)
            if diff > 1e-3:
                raise RuntimeError(f"the width-{n} ONNX graph differs from PyTorch by {diff:.2e}: export is broken")
            steps.update()
            steps.set_postfix_str(f"quantize n={n}")
            quant = quantize_width(tmp / fp32_rel, tmp / int8_rel, calib.images, n, cfg.mean, cfg.std,
                                   data_sha256=calib_sha, method=opts.calib_method,
                                   flavour=flavour, cache=cache)
            cache_status[str(n)] = quant.pop("cache")
            steps.update()
            steps.set_postfix_str(f"evaluate n={n}")
            fp_logits = onnx_replica_logits(tmp / fp32_rel, val.images, n, cfg.mean, cfg.std)
            q_logits = onnx_replica_logits(tmp / int8_rel, val.images, n, cfg.mean, cfg.std)
            accuracy[str(n)] = width_report(fp_logits, q_logits, val.labels)
            accuracy[str(n)]["fp32_max_abs_diff_vs_torch"] = diff
            steps.update()
            for rel in (fp32_rel, int8_rel):
                files[rel] = sha256_file(tmp / rel)
            artifacts[str(n)] = {"fp32": {"file": fp32_rel, "sha256": files[fp32_rel]},
                                 "int8": {"file": int8_rel, "sha256": files[int8_rel], "flavour": flavour},
                                 "engines": []}
        steps.close()

        failed = {n: a["drop_points"] for n, a in accuracy.items() if a["drop_points"] > opts.max_drop}
        if failed and not opts.allow_drop:
            detail = ", ".join(f"width {n}: -{d:.2f} points" for n, d in failed.items())
            raise AccuracyGateError(
                f"INT8 lost more than {opts.max_drop} points ({detail}); no bundle written. Try another "
                "--calib-method (entropy, percentile), more calibration data (--calib-size), or accept it "
                "with --allow-drop / a larger --max-drop")

        manifest = {
            "schema_version": SCHEMA_VERSION, "edge_mimo_version": __version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "model": cfg.to_dict(), "model_sha256": model_sha, "model_source": str(model_dir),
            "input": {"layout": "B,n,C,H,W", "dtype": "float32", "channels": cfg.in_channels,
                      "height": cfg.image_size, "width": cfg.image_size,
                      "color": "gray" if cfg.in_channels == 1 else "rgb", "mean": list(cfg.mean),
                      "std": list(cfg.std), "resize": "center-crop"},
            "output": {"name": "logits", "layout": "B,R,n,K"},
            "widths": widths, "target": profile, "artifacts": artifacts,
            "quantization": dict(quant, calibration_sha256=calib_sha, calibration_source=opts.calib,
                                 cache=cache_status),
            "validation": {"source": val_source, "images": int(len(val)), "gate_max_drop": opts.max_drop,
                           "gate_failed": sorted(failed), "allowed_drop": bool(failed and opts.allow_drop)},
            "temperature": {n: a["temperature"] for n, a in accuracy.items()},
            "uncertainty": {n: a["uncertainty"] for n, a in accuracy.items()},
            "accuracy": accuracy,
            "macs_per_image": {str(n): count_macs(model, n) // n for n in widths},
            "versions": _versions(), "files": files,
        }
        manifest["engines_note"] = _engines(tmp, manifest, log)
        write_plot(tmp / "operating_points.png", widths, accuracy, manifest["macs_per_image"],
                   f"{cfg.arch} N={cfg.capacity}, {profile['name']}")
        (tmp / "report.md").write_text(render(manifest))
        (tmp / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
    return output, manifest


def _engines(tmp: Path, manifest: dict, log) -> str:
    """Build TensorRT plans when this machine can; otherwise say where they will be built."""
    if manifest["target"]["backend"] != "tensorrt":
        return "none (ONNX Runtime runs the INT8 ONNX directly)"
    from ..build.tensorrt import build_bundle_engines

    (tmp / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
    try:
        built = build_bundle_engines(tmp, log=log)
    except BackendUnavailableError as e:
        return (f"not built here ({e}). Build them on the device with `edge-mimo build-engines BUNDLE`, "
                "or let the runtime build them on first load")
    manifest.update(json.loads((tmp / MANIFEST_FILE).read_text()))
    return f"built {len(built)} plan(s) on this machine"
