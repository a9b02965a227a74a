"""The bundle manifest: what a compile produced and how to check it.

A bundle directory holds ``manifest.json``, the ONNX graphs, engines where built, ``report.md`` and an
operating-point plot. The manifest (schema version 1) is a JSON object:

``schema_version`` (int), ``edge_mimo_version``, ``created`` (UTC ISO time),
``model``: the ModelConfig dict (arch, capacity, in_channels, image_size, num_classes, class_names, mean, std, ...),
``model_sha256``: sha256 of the source weights,
``input``: {``layout``: "B,n,C,H,W", ``dtype``: "float32", ``channels``, ``height``, ``width``,
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
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from ..errors import BundleError, BundleIntegrityError, BundleVersionError

MANIFEST_FILE = "manifest.json"
SCHEMA_VERSION = 1


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
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
    return manifest


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
