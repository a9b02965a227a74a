"""Naming live sources: ``[NAME=]URI`` specs, and a sources file (one spec a line) re-read while the loop runs,
streams added or removed as it changes (``edge-mimo run --source``, ``--sources-file``). Torch-free."""

from __future__ import annotations

import logging
import os
import re
import stat
import threading
import time
from pathlib import Path

from ..errors import ConfigError, StreamError
from ..streams import StreamMux
from ..streams.source import MAX_URI, redact

log = logging.getLogger(__name__)
MAX_SOURCES_BYTES = 1 << 20
NAMED = re.compile(r"^([A-Za-z0-9_.-]+)=(.+)$")  # name=uri (a URL's own '=' comes after ':' or '/')

def parse_spec(spec: str, default_name: str, where: str = "--source") -> tuple[str, str]:
    """One ``[NAME=]URI`` spec -> (name, uri); ``default_name`` when unnamed. A file whose own name contains
    '=' is a file, not NAME=URI."""
    m = NAMED.match(spec)
    if m and Path(spec).exists():
        if Path(m.group(2)).exists():
            raise ConfigError(
                f"{where} {spec!r} may be the file {spec!r} or the file {m.group(2)!r} named {m.group(1)!r}: "
                f"write {default_name}={spec} for the first, {m.group(1)}=./{m.group(2)} for the second")
        m = None
    return (m.group(1), m.group(2)) if m else (default_name, spec)


def parse_sources(specs: list[str]) -> dict[str, str]:
    """``[NAME=]URI`` specs -> {name: uri} (unnamed ones are cam0, cam1, ... by position)."""
    sources = {}
    for i, spec in enumerate(specs):
        name, uri = parse_spec(spec, f"cam{i}")
        if name in sources:
            raise ConfigError(f"two sources are named {name!r}: name them with NAME=URI")
        sources[name] = uri
    return sources


def _read_text(path: str | Path) -> str:
    """The UTF-8 text of a small regular file; never blocks on a FIFO nor reads a device without end."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise ConfigError(f"the sources file {path} is not a regular file (a pipe, device or folder): give "
                                  "a text file with one [NAME=]URI a line")
            with os.fdopen(os.dup(fd), "rb") as f:
                data = f.read(MAX_SOURCES_BYTES + 1)
        finally:
            os.close(fd)
    except (OSError, ValueError) as e:  # ValueError: a NUL in the path
        raise ConfigError(f"cannot read the sources file {path} ({getattr(e, 'strerror', None) or e}): check the "
                          "path") from None
    if len(data) > MAX_SOURCES_BYTES:
        raise ConfigError(f"the sources file {path} is larger than {MAX_SOURCES_BYTES >> 10} KiB: give a text file "
                          "with one [NAME=]URI a line")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise ConfigError(f"{path}:{line}: not UTF-8 text ({e.reason}): save the sources file as UTF-8") from None


def read_sources_file(path: str | Path) -> dict[str, str]:
    """A sources file -> {name: uri}: one ``[NAME=]URI`` a line, blank lines and ``#`` comments skipped; an
    unnamed source is named by its URI (so that editing other lines never renames it)."""
    text = _read_text(path)
    sources = {}
    for number, line in enumerate(text.splitlines(), 1):
        spec = line.strip()
        if not spec or spec.startswith("#"):
            continue
        if "\x00" in spec or len(spec) > MAX_URI:
            raise ConfigError(f"{path}:{number}: the line holds a NUL byte or is longer than {MAX_URI} characters: "
                              "write one [NAME=]URI a line")
        name, uri = parse_spec(spec, redact(spec), f"{path}:{number}:")
        if name in sources:
            raise ConfigError(f"{path}:{number}: a second source is named {name!r}: give each line its own NAME=")
        sources[name] = uri
    return sources


class SourcesFile:
    """The streams a ``--sources-file`` asks for, applied to a running mux when the file changes or on SIGHUP."""

    def __init__(self, path: str, fixed: dict[str, str], check_every: float = 1.0) -> None:
        self.path, self.fixed, self.check_every = path, fixed, check_every
        self.hangup = threading.Event()
        self._applied = self._seen = self._stat()  # the file's stamp when last applied, and at the last check
        self._next_check = time.monotonic() + check_every
        self.current = self.wanted(read_sources_file(path))

    def _stat(self) -> tuple | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size, st.st_ino

    def wanted(self, from_file: dict[str, str]) -> dict[str, str]:
        """The --source streams and the file's, refusing a name given by both."""
        clash = set(from_file) & set(self.fixed)
        if clash:
            raise ConfigError(f"{self.path} names {', '.join(sorted(clash))}, which --source names too: "
                              "rename one of them")
        return {**self.fixed, **from_file}

    def apply(self, mux: StreamMux) -> None:
        """If the file changed and then stayed the same for one check (not caught half-written), or SIGHUP came,
        add, remove or replace streams so that the mux matches it. A file that cannot be read or parsed changes
        nothing: the error is logged as a warning and the streams run on."""
        now = time.monotonic()
        if not self.hangup.is_set() and now < self._next_check:
            return
        self._next_check = now + self.check_every
        stamp, seen = self._stat(), self._seen
        self._seen = stamp
        if not self.hangup.is_set() and (stamp == self._applied or stamp != seen):
            return
        self.hangup.clear()
        self._applied = stamp
        try:
            wanted = self.wanted(read_sources_file(self.path))
        except ConfigError as e:
            log.warning("sources file not applied, streams unchanged: %s", e)
            return
        for name, uri in self.current.items():
            if wanted.get(name) != uri:
                mux.remove(name)
                log.info("%s: removed", name)
        for name, uri in wanted.items():
            if self.current.get(name) != uri:
                try:
                    mux.add(name, uri)
                except (ConfigError, StreamError) as e:  # e.g. a pipeline this OpenCV cannot run
                    log.warning("%s: not added: %s", name, e)
                    continue
                log.info("%s: added (%s)", name, redact(uri))
        self.current = {n: u for n, u in wanted.items() if n in mux.sources}
