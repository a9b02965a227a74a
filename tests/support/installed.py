"""The suite tests the installed edge-mimo (the wheel users get, or an editable install while developing), never
a checkout that merely happens to be on ``sys.path`` — and refuses to run on a wheel older than the checkout."""

from __future__ import annotations

import base64
import hashlib
import importlib
import importlib.metadata
import json
import sys
import tomllib
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]
REINSTALL = "run `bash scripts/setup.sh` again (or `pip install -e .` while developing)"


def import_installed() -> ModuleType:
    """Import ``edge_mimo`` with the checkout off ``sys.path``; its submodules then come from the same place."""
    saved = list(sys.path)
    sys.path[:] = [p for p in saved if Path(p or ".").resolve() != ROOT]
    try:
        return importlib.import_module("edge_mimo")
    except ImportError as e:
        raise SystemExit(f"edge-mimo is not installed ({e}): {REINSTALL}") from None
    finally:
        sys.path[:] = saved


def installed_distribution(path: list[str] | None = None, root: Path = ROOT) -> importlib.metadata.Distribution:
    """The installed edge-mimo's metadata, looked up with the checkout off the search path: an editable install
    leaves ``edge_mimo.egg-info`` in the checkout, whose metadata (no ``direct_url.json``, no hashes) would
    otherwise be found first, since pytest or ``python -m`` puts the checkout on ``sys.path``."""
    path = [p for p in (sys.path if path is None else path) if Path(p or ".").resolve() != root]
    found = next(iter(importlib.metadata.distributions(name="edge-mimo", path=path)), None)
    if found is None:
        raise SystemExit(f"edge-mimo is not installed: {REINSTALL}")
    return found


def is_editable(dist: importlib.metadata.Distribution) -> bool:
    """True for ``pip install -e``: its metadata says so in ``direct_url.json`` (PEP 610)."""
    direct = dist.read_text("direct_url.json")
    return bool(direct and json.loads(direct).get("dir_info", {}).get("editable"))


def stale_files() -> list[str]:
    """Files of this checkout that the installed wheel lacks or holds in another version ([] when editable)."""
    dist = installed_distribution()
    if is_editable(dist):
        return []
    mapped = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    folders = {package.replace(".", "/") + "/": ROOT / folder for package, folder in mapped.items()}

    def source(rel: str) -> Path:
        for prefix, folder in folders.items():
            if rel.startswith(prefix):
                return folder / rel[len(prefix):]
        return ROOT / rel

    installed = {str(f): f.hash.value for f in dist.files or () if f.hash and str(f).startswith("edge_mimo/")}
    stale = [rel for rel, digest in installed.items() if not source(rel).is_file() or base64.urlsafe_b64encode(
        hashlib.sha256(source(rel).read_bytes()).digest()).rstrip(b"=").decode() != digest]
    new = [p.relative_to(ROOT).as_posix() for p in (ROOT / "edge_mimo").rglob("*.py")
           if p.relative_to(ROOT).as_posix() not in installed]
    return sorted(stale + new)
