"""``edge-mimo verify``: check a bundle copied to a device, file by file, before running it."""

from __future__ import annotations

from pathlib import Path

from ..bundle.manifest import Manifest, verify_artifacts
from ..errors import BundleIntegrityError


def add_parser(sub) -> None:
    """Register ``edge-mimo verify``."""
    p = sub.add_parser("verify", help="check every file of a bundle against the sha256 in its manifest")
    p.add_argument("bundle", type=Path)
    p.set_defaults(run=run)


def run(args) -> int:
    """Check every file of the bundle; returns the exit status."""
    manifest = Manifest.load(args.bundle)
    verify_artifacts(args.bundle, manifest)
    if manifest.damaged:
        raise BundleIntegrityError(
            f"{args.bundle}: the manifest's {', '.join(manifest.damaged)} are malformed (the runtime does not read "
            "them, so the bundle still runs): recompile the bundle, or copy it again, for a whole report")
    print(f"{args.bundle}: {len(manifest.files)} file(s) match their sha256 (schema {manifest.schema_version}, "
          f"widths {', '.join(map(str, manifest.widths))})")
    return 0
