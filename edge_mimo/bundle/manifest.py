"""The bundle manifest: what a compile produced and how to check it.

A bundle directory holds ``manifest.json``, the ONNX graphs, engines where built, ``report.md`` and an
operating-point plot. The manifest (schema version 2) is a JSON object:

``schema_version`` (int), ``edge_mimo_version``, ``created`` (UTC ISO time),
``model``: the ModelConfig dict (arch, capacity, in_channels, image_size, num_classes, class_names, mean, std, ...),
``model_sha256``: sha256 of the source weights,
``input``: {``layout``: "B,n,C,H,W", ``dtype``: "float32", ``channels``, ``height``, ``width_px``,
            ``color``: "gray" | "rgb", ``mean``, ``std`` (0..1 units), ``resize``: "center-crop" | "stretch" | "letterbox"},
``output``: {``name``: "logits", ``layout``: "B,R,n,K"} (R = capacity / n replicas),
``widths``: [1, 2, 4],
``target``: the target profile dict (``name``, ``backend``: "onnxruntime" | "tensorrt", ...),
``artifacts``: {"<n>": {"fp32": {file, sha256}, "int8": {file, sha256, flavour},
                        "engines": [{file, sha256, compute_capability, tensorrt}]}},
``quantization``: {method, flavour, tool, calibration_sha256, calibration_images, ...},
``temperature``: {"<n>": float}, ``uncertainty``: {"<n>": {"entropy_threshold": float, ...}},
``accuracy``: {"<n>": {"fp32": {accuracy, nll, ece}, "int8": {...}, "drop_points": float}},
``macs_per_image``: {"<n>": int}, ``versions``: {package: version or null}, ``files``: {relpath: sha256} of
every file the runtime may load (engines may be added later by ``edge-mimo build-engines``).

Schema 1 called the input's pixel width ``width``; :func:`load_manifest` reads such bundles as schema 2
(``width`` means the superposition width everywhere else). It checks the structure the runtime relies on (types and ranges of ``model``, ``widths``,
``artifacts``, ``files``, ``input``, ``temperature``, ``uncertainty``) and refuses anything else as damaged.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

from ..errors import BundleError, BundleIntegrityError, BundleVersionError

MANIFEST_FILE = "manifest.json"
SCHEMA_VERSION = 2
ENGINE_KEYS = ("file", "sha256", "compute_capability", "tensorrt")


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in ``chunk``-byte blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def load_manifest(bundle: str | Path) -> dict:
    """Read and sanity-check ``manifest.json``; refuse unknown schema versions."""
    path = Path(bundle) / MANIFEST_FILE
    if not path.is_file():
        raise BundleError(f"{bundle} is not a bundle (no {MANIFEST_FILE}): pass a directory written by `edge-mimo compile`")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BundleIntegrityError(f"{path} is not valid JSON ({e}): the bundle is damaged, compile it again") from e
    if not isinstance(manifest, dict):
        raise BundleIntegrityError(f"{path} is not a JSON object: the bundle is damaged, compile it again")
    version = manifest.get("schema_version")
    if not isinstance(version, int):
        raise BundleIntegrityError(f"{path} has no schema_version: the bundle is damaged, compile it again")
    if version > SCHEMA_VERSION:
        raise BundleVersionError(
            f"{bundle} uses bundle schema {version}, this edge-mimo reads up to {SCHEMA_VERSION}: "
            "upgrade edge-mimo (`pip install -U edge-mimo`) or compile the bundle with this version"
        )
    for key in ("model", "widths", "artifacts", "files", "input"):
        if key not in manifest:
            raise BundleIntegrityError(f"{path} lacks '{key}': the bundle is damaged, compile it again")
    _upgrade(manifest)
    problem = _structure_problem(manifest)
    if problem:
        raise BundleIntegrityError(f"{path}: {problem}: the bundle is damaged, compile it again")
    return manifest


def _upgrade(manifest: dict) -> None:
    """Schema 1 -> 2 in place: the input's pixel width, ``input.width``, became ``input.width_px``."""
    inp = manifest["input"]
    if manifest["schema_version"] < 2 and isinstance(inp, dict) and "width" in inp:
        inp["width_px"] = inp.pop("width")
    manifest["schema_version"] = SCHEMA_VERSION


def _count(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 1


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _structure_problem(m: dict) -> str | None:
    """What the runtime relies on, checked up front so a damaged manifest never fails deep inside the loader."""
    model, widths, inp = m["model"], m["widths"], m["input"]
    if not (isinstance(model, dict) and _count(model.get("capacity")) and _count(model.get("num_classes"))):
        return "'model' needs positive integers 'capacity' and 'num_classes'"
    names = model.get("class_names")
    if names is not None and not (isinstance(names, list) and len(names) == model["num_classes"]
                                  and all(isinstance(c, str) for c in names)):
        return "'model.class_names' must be a list of num_classes strings"
    if not (isinstance(widths, list) and widths and all(_count(n) and model["capacity"] % n == 0 for n in widths)):
        return "'widths' must be a non-empty list of positive integers dividing the capacity"
    if not (isinstance(m["files"], dict) and all(isinstance(k, str) and isinstance(v, str) and len(v) == 64
                                                 for k, v in m["files"].items())):
        return "'files' must map relative paths to sha256 hex digests"
    arts = m["artifacts"]
    for n in widths:
        entry = arts.get(str(n)) if isinstance(arts, dict) else None
        graphs = [entry.get(p) for p in ("fp32", "int8") if p in entry] if isinstance(entry, dict) else []
        if not graphs or not all(isinstance(g, dict) and isinstance(g.get("file"), str)
                                 and isinstance(g.get("sha256"), str) for g in graphs):
            return f"'artifacts.{n}' must hold an 'fp32' or 'int8' graph with 'file' and 'sha256'"
        engines = entry.get("engines", [])
        if not (isinstance(engines, list) and all(
                isinstance(e, dict) and all(isinstance(e.get(k), str) for k in ENGINE_KEYS) for e in engines)):
            return f"'artifacts.{n}.engines' must be a list of {{{', '.join(ENGINE_KEYS)}}} entries"
    channels = inp.get("channels") if isinstance(inp, dict) else None
    if not (channels in (1, 3) and not isinstance(channels, bool) and _count(inp.get("height"))
            and _count(inp.get("width_px")) and all(isinstance(inp.get(k), list) and len(inp[k]) == channels
                                                 and all(_number(v) for v in inp[k]) for k in ("mean", "std"))
            and all(v > 0 for v in inp["std"])):
        return "'input' needs channels (1 or 3), positive height and width_px, and mean/std lists (std > 0) per channel"
    for key, ok in (("temperature", lambda t: _number(t) and t > 0),
                    ("uncertainty", lambda u: isinstance(u, dict) and _number(u.get("entropy_threshold", 0.0)))):
        table = m.get(key, {})
        if not (isinstance(table, dict) and all(ok(v) for v in table.values())):
            return f"'{key}' must map widths to {'positive numbers' if key == 'temperature' else 'thresholds'}"
    return None


def artifact_path(bundle: str | Path, relpath: str) -> Path:
    """Resolve a manifest path inside the bundle, refusing paths that escape it."""
    root = Path(bundle).resolve()
    path = (root / relpath).resolve()
    if root not in path.parents:
        raise BundleIntegrityError(f"manifest names {relpath!r}, outside the bundle: refusing to load it")
    return path


def verify_artifacts(bundle: str | Path, manifest: dict, only: list[str] | None = None) -> None:
    """Check the sha256 of every file the manifest lists (or only those in ``only``)."""
    for rel, digest in manifest["files"].items():
        if only is not None and rel not in only:
            continue
        path = artifact_path(bundle, rel)
        if not path.is_file():
            raise BundleIntegrityError(f"{bundle} is missing {rel}: copy the whole bundle again or recompile it")
        if sha256_file(path) != digest:
            raise BundleIntegrityError(
                f"{rel} in {bundle} does not match its sha256 in the manifest (truncated or altered): "
                "copy the whole bundle again or recompile it"
            )
