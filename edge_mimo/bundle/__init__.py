"""Bundles: one directory per compile, described by ``manifest.json`` (torch-free)."""

from .manifest import (
    MANIFEST_FILE,
    SCHEMA_VERSION,
    InputSpec,
    Manifest,
    artifact_path,
    is_bundle,
    load_manifest,
    sha256_file,
    verify_artifacts,
)
from .target import TargetProfile

__all__ = ["MANIFEST_FILE", "SCHEMA_VERSION", "InputSpec", "Manifest", "TargetProfile", "artifact_path", "is_bundle",
           "load_manifest", "sha256_file", "verify_artifacts"]
