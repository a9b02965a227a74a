"""Keyed caches on disk: a result filed under a digest of the fields it depends on, read back only when its entry
still matches them. The calibration cache (``quantize/cache.py``) and the TensorRT plan cache (``engines/plans.py``)
are built from these pieces:

- :func:`key_digest`: an entry's name, from the canonical JSON of its key fields;
- :func:`read_bounded` / :func:`read_json`: an entry's files, read without following links, blocking on a FIFO or
  reading without end (a doubtful file raises :class:`~edge_mimo.errors.CacheEntryError`);
- :func:`cache_secret` / :func:`entry_mac`: a random key per cache root (``.hmac-key``, readable by its owner
  only) and an HMAC-SHA256 tying an entry's bytes to its key fields, so that bytes altered (or copied from
  another entry) with a checksum recomputed are refused.

Every doubt is the caller's to report (a warning) and recompute, never to reuse. Torch-free.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import stat
from pathlib import Path

from .errors import CacheEntryError

KEY_FILE = ".hmac-key"


def key_digest(fields: dict) -> str:
    """24 hex digits of the sha256 of ``fields`` as canonical JSON: the name of their entry."""
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:24]


def read_bounded(path: Path, limit: int) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes; never follows a link or blocks on a FIFO."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise CacheEntryError(f"{path} is not a regular file")
        if st.st_size > limit:
            raise CacheEntryError(f"{path} is larger than {limit} bytes")
        with os.fdopen(os.dup(fd), "rb") as f:
            return f.read(limit + 1)
    finally:
        os.close(fd)


def parse_json(data: bytes, what: str) -> object:
    """``data`` as JSON; CacheEntryError naming ``what`` when it is not."""
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as e:
        raise CacheEntryError(f"{what} is not valid JSON ({type(e).__name__})") from None


def read_json(path: Path, limit: int, what: str) -> object:
    """:func:`read_bounded` then :func:`parse_json`."""
    return parse_json(read_bounded(path, limit), what)


def cache_secret(root: Path, create: bool) -> bytes | None:
    """The HMAC key of the cache at ``root`` (made on first store when ``create``); None when there is none.
    Raises CacheEntryError when it cannot be read."""
    path = root / KEY_FILE
    try:
        return read_bounded(path, 1024) or None
    except FileNotFoundError:
        if not create:
            return None
    except (OSError, CacheEntryError) as e:
        raise CacheEntryError(f"the cache key {path} cannot be read ({e})") from None
    root.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:  # another process made it first
        return cache_secret(root, create=False)
    with os.fdopen(fd, "wb") as f:
        f.write(key)
    return key


def entry_mac(secret: bytes, fields: dict, data: bytes) -> str:
    """The HMAC-SHA256 (hex) of ``fields`` (canonical JSON) and an entry's ``data`` under ``secret``."""
    return hmac.new(secret, json.dumps(fields, sort_keys=True).encode() + b"\0" + data, "sha256").hexdigest()


def same_mac(a: str, b: str) -> bool:
    """Compare two MACs in constant time."""
    return hmac.compare_digest(a, b)
