"""A calibration cache: tensor ranges keyed by the exact FP32 graph, data, width, method and flavour (its
digest, reads and HMAC from :mod:`edge_mimo.keyed_cache`, shared with the TensorRT plan cache).

Each entry is a directory ``<key>/`` with ``ranges.json`` (ONNX Runtime's calibration cache format) and
``meta.json`` (the key's fields and an HMAC-SHA256 of the fields and ranges.json under a random key kept in
``<root>/.hmac-key``, readable by its owner only). So an entry ties its ranges to the graph and calibration data
they came from: ranges altered (or copied from another entry) with a checksum recomputed fail the HMAC; ranges
that name tensors the graph lacks, or hold non-finite or inverted bounds, fail validation. Every doubt (a damaged,
malformed, oversized or non-regular entry) is reported and the ranges recomputed, never reused. A cache that
cannot be read or written (a read-only or file root) is skipped with a warning: the compile runs without it.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
from pathlib import Path

from ..atomic import atomic_dir
from ..errors import CacheEntryError, CalibrationCacheError, EdgeMimoError
from ..keyed_cache import KEY_FILE, cache_secret, entry_mac, key_digest, parse_json, read_bounded, same_mac

log = logging.getLogger(__name__)

RANGES = "ranges.json"
META = "meta.json"
MAX_META_BYTES = 64 << 10
MAX_RANGES_BYTES = 64 << 20


def _bound(v: object) -> list[float] | None:
    if not (isinstance(v, dict) and v.get("CLS") == "numpy.array" and v.get("dtype") in ("float32", "float16")
            and isinstance(v.get("data"), list) and v["data"]):
        return None
    values = v["data"]
    ok = all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in values)
    return values if ok else None


def check_ranges(doc: object, tensors: set[str] | None) -> None:
    """Raise CalibrationCacheError unless ``doc`` is ONNX Runtime's calibration cache with finite, ordered bounds
    (lowest <= 0 <= highest is not required; lowest <= highest is) for tensors of the graph (``tensors``)."""
    if not (isinstance(doc, dict) and doc.get("CLS") == "TensorsData" and isinstance(doc.get("data"), dict)
            and doc["data"]):
        raise CalibrationCacheError(f"{RANGES} is not a calibration cache of ONNX Runtime")
    unknown = set(doc["data"]) - tensors if tensors is not None else set()
    if unknown:
        raise CalibrationCacheError(f"{RANGES} names {len(unknown)} tensor(s) the graph lacks (e.g. "
                                    f"{sorted(unknown)[0][:60]!r}): ranges of another graph")
    for name, entry in doc["data"].items():
        low = _bound(entry.get("lowest")) if isinstance(entry, dict) else None
        high = _bound(entry.get("highest")) if isinstance(entry, dict) else None
        if low is None or high is None or len(low) != len(high) or any(a > b for a, b in zip(low, high)):
            raise CalibrationCacheError(f"{RANGES}: the range of {str(name)[:60]!r} is malformed")


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
        return self.root / f"w{fields['width']}-{fields['flavour']}-{fields['method']}-{key_digest(fields)}"

    def lookup(self, fields: dict, tensors: set[str] | None = None) -> Path | None:
        """The ranges file of a valid entry, or None. Raises CalibrationCacheError for a damaged or doubtful entry.

        ``tensors``: the names of the graph's tensors; ranges naming others are refused.
        """
        entry = self.entry(fields)
        try:
            if not (entry.exists() or entry.is_symlink()):  # a dangling link is damage too
                return None
            if entry.is_symlink() or not entry.is_dir():
                raise CalibrationCacheError("it is not a directory")
            key = cache_secret(self.root, create=False)
            if key is None:
                raise CalibrationCacheError(f"the cache has no key ({KEY_FILE}) to check it by")
            meta = parse_json(read_bounded(entry / META, MAX_META_BYTES), META)
            if not isinstance(meta, dict) or meta.get("key") != fields or not isinstance(meta.get("hmac"), str):
                raise CalibrationCacheError(f"{META} was made for another graph, data or settings (stale or altered)")
            data = read_bounded(entry / RANGES, MAX_RANGES_BYTES)
            if not same_mac(entry_mac(key, fields, data), meta["hmac"]):
                raise CalibrationCacheError(f"{RANGES} was altered since it was computed (its HMAC differs)")
            check_ranges(parse_json(data, RANGES), tensors)
        except CacheEntryError as e:
            raise CalibrationCacheError(f"calibration cache entry {entry}: {e}") from None
        except (OSError, ValueError) as e:
            raise CalibrationCacheError(f"calibration cache entry {entry} cannot be read ({e})") from None
        return entry / RANGES

    def discard(self, fields: dict) -> None:
        """Remove an entry, whatever it became (a directory, a plain file, a link); a failure is only logged."""
        entry = self.entry(fields)
        try:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink(missing_ok=True)
        except OSError as e:
            log.warning("cannot remove the damaged calibration cache entry %s (%s): remove it by hand", entry, e)

    def store(self, fields: dict, ranges: Path) -> Path | None:
        """Copy freshly computed ranges into a new entry (atomically: directory rename); None, with a warning,
        when the cache cannot be written (the compile goes on without it)."""
        entry = self.entry(fields)
        try:
            key = cache_secret(self.root, create=True)
            data = ranges.read_bytes()
            with atomic_dir(entry, marker=META) as tmp:
                (tmp / RANGES).write_bytes(data)
                (tmp / META).write_text(json.dumps({"key": fields, "hmac": entry_mac(key, fields, data)}, indent=2))
        except (OSError, EdgeMimoError) as e:
            log.warning("calibration cache %s cannot be written (%s): compiling without it; set EDGE_MIMO_CACHE to a "
                        "writable directory to reuse calibrations", self.root, e)
            return None
        return entry / RANGES
