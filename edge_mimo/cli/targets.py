"""``edge-mimo targets``: the shipped deployment profiles."""

from __future__ import annotations

import json

from ..compile.targets import list_targets


def add_parser(sub) -> None:
    """Register ``edge-mimo targets``."""
    p = sub.add_parser("targets", help="list deployment targets")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=run)


def run(args) -> int:
    """Print the shipped targets; returns the exit status."""
    targets = list_targets()
    if args.json:
        print(json.dumps({name: t.to_dict() for name, t in targets.items()}, indent=2))
        return 0
    for name, t in targets.items():
        extra = f"SM {t.compute_capability}" if t.compute_capability else ""
        print(f"{name:<16} {t.backend:<12} {t.flavour:<9} {extra:<8} {t.description}")
    return 0
