"""A calibration cache: tensor ranges keyed by the exact FP32 graph, data, width, method and flavour.

Each entry is a directory ``<key>/`` with ``ranges.json`` (ONNX Runtime's calibration cache format) and
``meta.json`` (the key's fields and the sha256 of ranges.json). An entry whose meta does not match its key,
or whose ranges do not match their checksum, is reported and recomputed: never reused silently.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from ..atomic import atomic_dir
from ..bundle.manifest import sha256_file
from ..errors import CalibrationCacheError

RANGES = "ranges.json"
META = "meta.json"


class CalibrationCache:
    """Calibration ranges on disk under ``root``, one entry per key (see the module docstring)."""
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    @staticmethod
    def key_fields(graph_sha256: str, data_sha256: str, width: int, method: str, flavour: str, tool: str) -> dict:
        """``graph_sha256``: the FP32 ONNX file calibrated (new weights or a new exporter both change it)."""
        return {"graph": graph_sha256, "data": data_sha256, "width": width, "method": method, "flavour": flavour,
                "tool": tool}

    def entry(self, fields: dict) -> Path:
        """The entry directory of ``fields`` (from :meth:`key_fields`)."""
        digest = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:24]
        return self.root / f"w{fields['width']}-{fields['flavour']}-{fields['method']}-{digest}"

    def lookup(self, fields: dict) -> Path | None:
        """The ranges file of a valid entry, or None. Raises CalibrationCacheError for a damaged entry."""
        entry = self.entry(fields)
        if not (entry.exists() or entry.is_symlink()):  # a dangling link is damage too
            return None
        try:
            meta = json.loads((entry / META).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise CalibrationCacheError(f"calibration cache entry {entry} has no readable {META} ({e})") from e
        if meta.get("key") != fields:
            raise CalibrationCacheError(
                f"calibration cache entry {entry} was made for {meta.get('key')}, not {fields} (stale)")
        ranges = entry / RANGES
        if not ranges.is_file() or sha256_file(ranges) != meta.get("sha256"):
            raise CalibrationCacheError(f"calibration cache entry {entry}: {RANGES} is missing or altered")
        return ranges

    def discard(self, fields: dict) -> None:
        """Remove an entry, whatever it became (a directory, a plain file, a link)."""
        entry = self.entry(fields)
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)

    def store(self, fields: dict, ranges: Path) -> Path:
        """Move a freshly computed ranges file into a new entry (atomically: directory rename)."""
        entry = self.entry(fields)
        with atomic_dir(entry, marker=META) as tmp:
            shutil.copyfile(ranges, tmp / RANGES)
            (tmp / META).write_text(json.dumps({"key": fields, "sha256": sha256_file(tmp / RANGES)}, indent=2))
        return entry / RANGES
