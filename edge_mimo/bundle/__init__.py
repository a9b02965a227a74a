"""Bundles: one directory per compile, described by ``manifest.json`` (torch-free)."""

from .manifest import (
    MANIFEST_FILE,
    SCHEMA_VERSION,
    artifact_path,
    load_manifest,
    sha256_file,
    verify_artifacts,
)

__all__ = ["MANIFEST_FILE", "SCHEMA_VERSION", "artifact_path", "load_manifest", "sha256_file", "verify_artifacts"]
