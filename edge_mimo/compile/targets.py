"""Deployment target profiles: one TOML file per target in ``targets/`` (torch-free), read as :class:`TargetProfile`."""

from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path

from ..bundle.target import TargetProfile
from ..errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10 (JetPack 6)
    import tomli as tomllib


def _parse(text: str, source: str) -> TargetProfile:
    try:
        return TargetProfile.from_dict(tomllib.loads(text), source)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"target profile {source} is not valid TOML ({e}): fix the file") from e


def list_targets() -> dict[str, TargetProfile]:
    """The shipped profiles by name."""
    out = {}
    for ref in sorted(resources.files("edge_mimo.targets").iterdir(), key=lambda r: r.name):
        if ref.name.endswith(".toml"):
            profile = _parse(ref.read_text(), ref.name)
            out[profile.name] = profile
    return out


def load_target(spec: str | Path) -> TargetProfile:
    """A shipped target by name, or a profile file path."""
    path = Path(spec)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise ConfigError(f"target profile {path} not found: pass a TOML file or one of {', '.join(list_targets())}")
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"cannot read target profile {path} ({e}): check the file") from e
        return _parse(text, str(path))
    targets = list_targets()
    if str(spec) not in targets:
        raise ConfigError(f"unknown target {spec!r}: choose one of {', '.join(targets)} or pass a profile .toml file")
    return targets[str(spec)]
