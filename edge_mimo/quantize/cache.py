"""A calibration cache: tensor ranges keyed by the exact FP32 graph, data, width, method and flavour.

Each entry is a directory ``<key>/`` with ``ranges.json`` (ONNX Runtime's calibration cache format) and
``meta.json`` (the key's fields and an HMAC-SHA256 of the fields and ranges.json under a random key kept in
``<root>/.hmac-key``, readable by its owner only). So an entry ties its ranges to the graph and calibration data
they came from: ranges altered (or copied from another entry) with a checksum recomputed fail the HMAC; ranges
that name tensors the graph lacks, or hold non-finite or inverted bounds, fail validation. Every doubt (a damaged,
malformed, oversized or non-regular entry) is reported and the ranges recomputed, never reused. A cache that
cannot be read or written (a read-only or file root) is skipped with a warning: the compile runs without it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import os
import secrets
import shutil
import stat
from pathlib import Path

from ..atomic import atomic_dir
from ..errors import CalibrationCacheError, EdgeMimoError

log = logging.getLogger(__name__)

RANGES = "ranges.json"
META = "meta.json"
KEY_FILE = ".hmac-key"
MAX_META_BYTES = 64 << 10
MAX_RANGES_BYTES = 64 << 20


def _read_regular(path: Path, limit: int) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes; never follows a link or blocks on a FIFO."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise CalibrationCacheError(f"{path} is not a regular file")
        if st.st_size > limit:
            raise CalibrationCacheError(f"{path} is larger than {limit} bytes")
        with os.fdopen(os.dup(fd), "rb") as f:
            return f.read(limit + 1)
    finally:
        os.close(fd)


def _json(data: bytes, what: str) -> object:
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as e:
        raise CalibrationCacheError(f"{what} is not valid JSON ({type(e).__name__})") from None


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
        digest = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:24]
        return self.root / f"w{fields['width']}-{fields['flavour']}-{fields['method']}-{digest}"

    def _key(self, create: bool) -> bytes | None:
        """This cache's HMAC key (made on first store); None when there is none or it cannot be read."""
        path = self.root / KEY_FILE
        try:
            return _read_regular(path, 1024) or None
        except FileNotFoundError:
            if not create:
                return None
        except (OSError, CalibrationCacheError) as e:
            raise CalibrationCacheError(f"the cache key {path} cannot be read ({e})") from None
        self.root.mkdir(parents=True, exist_ok=True)
        key = secrets.token_bytes(32)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        except FileExistsError:  # another compile made it first
            return self._key(create=False)
        with os.fdopen(fd, "wb") as f:
            f.write(key)
        return key

    @staticmethod
    def _mac(key: bytes, fields: dict, ranges: bytes) -> str:
        return hmac.new(key, json.dumps(fields, sort_keys=True).encode() + b"\0" + ranges, "sha256").hexdigest()

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
            key = self._key(create=False)
            if key is None:
                raise CalibrationCacheError(f"the cache has no key ({KEY_FILE}) to check it by")
            meta = _json(_read_regular(entry / META, MAX_META_BYTES), META)
            if not isinstance(meta, dict) or meta.get("key") != fields or not isinstance(meta.get("hmac"), str):
                raise CalibrationCacheError(f"{META} was made for another graph, data or settings (stale or altered)")
            data = _read_regular(entry / RANGES, MAX_RANGES_BYTES)
            if not hmac.compare_digest(self._mac(key, fields, data), meta["hmac"]):
                raise CalibrationCacheError(f"{RANGES} was altered since it was computed (its HMAC differs)")
            check_ranges(_json(data, RANGES), tensors)
        except CalibrationCacheError as e:
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
            key = self._key(create=True)
            data = ranges.read_bytes()
            with atomic_dir(entry, marker=META) as tmp:
                (tmp / RANGES).write_bytes(data)
                (tmp / META).write_text(json.dumps({"key": fields, "hmac": self._mac(key, fields, data)}, indent=2))
        except (OSError, EdgeMimoError) as e:
            log.warning("calibration cache %s cannot be written (%s): compiling without it; set EDGE_MIMO_CACHE to a "
                        "writable directory to reuse calibrations", self.root, e)
            return None
        return entry / RANGES
