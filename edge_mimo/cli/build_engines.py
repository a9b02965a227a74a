"""``edge-mimo build-engines``: build TensorRT plans for this GPU into a bundle (run on the device)."""

from __future__ import annotations

from pathlib import Path

from ..engines import build_bundle_engines


def add_parser(sub) -> None:
    """Register ``edge-mimo build-engines``."""
    p = sub.add_parser("build-engines", help="build TensorRT engines for this GPU into a TensorRT-target bundle")
    p.add_argument("bundle", type=Path)
    p.set_defaults(run=run)


def run(args) -> int:
    """Build the missing plans into the bundle; returns the exit status."""
    manifest, built = build_bundle_engines(args.bundle)
    if built:
        manifest.save(args.bundle)
    print(f"{len(built)} engine(s) built" if built else "engines for this GPU and TensorRT version already exist")
    return 0
