"""Deployment target profiles: one TOML file per target in ``edge_mimo/targets/`` (torch-free)."""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path

from ..errors import ConfigError

BACKENDS = ("onnxruntime", "tensorrt")
FLAVOURS = ("cpu", "tensorrt")


def list_targets() -> dict[str, dict]:
    """The shipped profiles by name."""
    out = {}
    for ref in sorted(resources.files("edge_mimo.targets").iterdir(), key=lambda r: r.name):
        if ref.name.endswith(".toml"):
            profile = validate(tomllib.loads(ref.read_text()), ref.name)
            out[profile["name"]] = profile
    return out


def load_target(spec: str | Path) -> dict:
    """A shipped target by name, or a profile file path."""
    path = Path(spec)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise ConfigError(f"target profile {path} not found: pass a TOML file or one of {', '.join(list_targets())}")
        try:
            return validate(tomllib.loads(path.read_text()), str(path))
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"target profile {path} is not valid TOML ({e}): fix the file") from e
    targets = list_targets()
    if str(spec) not in targets:
        raise ConfigError(f"unknown target {spec!r}: choose one of {', '.join(targets)} or pass a profile .toml file")
    return targets[str(spec)]


def validate(profile: dict, source: str) -> dict:
    """Check a profile's fields; every message names the field and the fix."""
    def need(cond: bool, msg: str) -> None:
        if not cond:
            raise ConfigError(f"target profile {source}: {msg}")

    need(isinstance(profile.get("name"), str), "needs a string 'name'")
    need(profile.get("backend") in BACKENDS, f"'backend' must be one of {', '.join(BACKENDS)}")
    need(profile.get("flavour") in FLAVOURS, f"'flavour' must be one of {', '.join(FLAVOURS)}")
    widths = profile.get("widths", [1, 2, 4])
    need(isinstance(widths, list) and all(isinstance(w, int) and w > 0 for w in widths),
         "'widths' must be a list of positive integers, e.g. [1, 2, 4]")
    if profile["backend"] == "tensorrt":
        need(profile["flavour"] == "tensorrt", "a TensorRT target needs flavour = \"tensorrt\" (symmetric Q/DQ)")
        trt = profile.get("tensorrt", {})
        batch = trt.get("batch", {})
        need(all(isinstance(batch.get(k), int) for k in ("min", "opt", "max")),
             "[tensorrt] batch needs integers min, opt and max, e.g. { min = 1, opt = 1, max = 8 }")
        need(1 <= batch["min"] <= batch["opt"] <= batch["max"], "[tensorrt] batch needs 1 <= min <= opt <= max")
        need(isinstance(trt.get("workspace_mib"), int) and trt["workspace_mib"] > 0,
             "[tensorrt] workspace_mib must be a positive integer (MiB)")
        need(isinstance(trt.get("dla_core", -1), int), "[tensorrt] dla_core must be an integer (-1: GPU only)")
    return dict(profile, widths=widths)
