"""``edge-mimo run``: classify live sources with a bundle; JSON lines per prediction, live stats on stderr."""

from __future__ import annotations

import collections
import json
import math
import os
import re
import signal
import stat
import sys
import threading
import time
from pathlib import Path

from .. import live
from ..engines import BACKENDS, PRECISIONS
from ..errors import ConfigError, StreamError
from ..runtime import POLICIES, Runtime
from ..runtime.preprocess import RESIZE_MODES
from ..streams import StreamMux
from ..streams.source import MAX_URI, redact
from ..streams.annotate import MosaicWriter, draw_tile

MAX_SOURCES_BYTES = 1 << 20
NAMED = re.compile(r"^([A-Za-z0-9_.-]+)=(.+)$")  # name=uri (a URL's own '=' comes after ':' or '/')


def add_parser(sub) -> None:
    """Register ``edge-mimo run``."""
    p = sub.add_parser("run", help="classify live sources (files, RTSP/HTTP, V4L2, GStreamer) with a bundle")
    p.add_argument("bundle", help="bundle directory written by `edge-mimo compile`")
    p.add_argument("--source", action="append", default=[], metavar="[NAME=]URI",
                   help="video file, rtsp:// or http:// URL, device index or /dev/videoN, GStreamer pipeline; repeat")
    p.add_argument("--sources-file", metavar="FILE",
                   help="more sources, one [NAME=]URI a line (# comments); re-read when it changes or on SIGHUP: "
                        "streams added or removed there are added or removed while the others run")
    p.add_argument("--policy", default="throughput", choices=POLICIES,
                   help="fewest passes | >= 2 replicas per frame | full ensemble per frame")
    p.add_argument("--budget-ms", type=float, help="cap on inference time per step (lowers replicas to fit)")
    p.add_argument("--width", type=int, help="force one superposition width")
    p.add_argument("--backend", default="auto", choices=BACKENDS)
    p.add_argument("--precision", default="auto", choices=PRECISIONS)
    p.add_argument("--threads", type=int, help="ONNX Runtime threads")
    p.add_argument("--resize", choices=RESIZE_MODES, help="override the bundle's resize")
    p.add_argument("--roi", action="append", default=[], metavar="NAME=X,Y,W,H", help="region of interest per stream")
    p.add_argument("--loop", action="store_true", help="restart video files at their end")
    p.add_argument("--no-pace", action="store_true", help="read files as fast as possible instead of at their fps")
    p.add_argument("--max-age", type=float, help="skip frames older than this many seconds")
    p.add_argument("--gather-ms", type=float, default=0.0,
                   help="after a first new frame, wait up to this long for the other streams (shared passes)")
    p.add_argument("--duration", type=float, help="stop after this many seconds")
    p.add_argument("--max-frames", type=int, help="stop after this many predictions in all")
    p.add_argument("--output", "-o", help="write JSON lines here instead of stdout")
    p.add_argument("--probabilities", action="store_true", help="include class probabilities in each line")
    p.add_argument("--video", help="write an annotated mosaic of all streams to this .mp4/.avi")
    p.add_argument("--video-fps", type=float, default=15.0)
    p.add_argument("--stats-every", type=float, default=2.0, help="seconds between stats lines on stderr (0: off)")
    p.add_argument("--metrics-port", type=int, metavar="PORT",
                   help="serve Prometheus metrics on this port (needs 'edge-mimo[metrics]'; 0: any free port)")
    p.add_argument("--metrics-host", default="127.0.0.1", help="address to serve metrics on (default: loopback only)")
    p.set_defaults(run=run)


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
        nothing: the error goes to stderr and the streams run on."""
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
            print(f"sources file not applied, streams unchanged: {e}", file=sys.stderr)
            return
        for name, uri in self.current.items():
            if wanted.get(name) != uri:
                mux.remove(name)
                print(f"{name}: removed", file=sys.stderr)
        for name, uri in wanted.items():
            if self.current.get(name) != uri:
                try:
                    mux.add(name, uri)
                except (ConfigError, StreamError) as e:  # e.g. a pipeline this OpenCV cannot run
                    print(f"{name}: not added: {e}", file=sys.stderr)
                    continue
                print(f"{name}: added ({redact(uri)})", file=sys.stderr)
        self.current = {n: u for n, u in wanted.items() if n in mux.sources}


def parse_rois(specs: list[str], names) -> dict[str, tuple[int, ...]]:
    """``NAME=X,Y,W,H`` options -> {name: (x, y, w, h)} for known source names."""
    rois = {}
    for spec in specs:
        m = re.fullmatch(r"([A-Za-z0-9_.-]+)=(\d+),(\d+),(\d+),(\d+)", spec)
        if not m:
            raise ConfigError(f"--roi {spec!r}: write NAME=X,Y,W,H in pixels, e.g. cam0=100,50,320,240")
        if m.group(1) not in names:
            raise ConfigError(f"--roi names {m.group(1)!r}, which is no source: sources are {', '.join(names)}")
        rois[m.group(1)] = tuple(int(v) for v in m.groups()[1:])
    return rois


class Stats:
    """Per-stream prediction rate (last 30 predictions) and running uncertainty / error counts."""

    def __init__(self) -> None:
        self.times: dict[str, collections.deque] = collections.defaultdict(lambda: collections.deque(maxlen=30))
        self.count: dict[str, int] = collections.defaultdict(int)
        self.uncertain: dict[str, int] = collections.defaultdict(int)
        self.errors: dict[str, int] = collections.defaultdict(int)

    def add(self, name: str, result) -> None:
        """Count one result of stream ``name``."""
        self.times[name].append(time.monotonic())
        self.count[name] += 1
        self.uncertain[name] += bool(result.ok and result.uncertain)
        self.errors[name] += not result.ok

    def fps(self, name: str) -> float:
        """Predictions per second of stream ``name`` over its last 30."""
        t = self.times[name]
        return (len(t) - 1) / (t[-1] - t[0]) if len(t) > 1 and t[-1] > t[0] else 0.0

    def rate(self, name: str) -> float:
        """Share of stream ``name``'s good predictions flagged uncertain."""
        ok = self.count[name] - self.errors[name]
        return self.uncertain[name] / ok if ok else 0.0

    def line(self, health: dict, elapsed: float) -> str:
        """One status line for stderr (the streams in ``health``)."""
        parts = [f"{n} {health[n].state} {self.fps(n):.1f} fps uncertain {100 * self.rate(n):.0f}%"
                 + (f" errors {self.errors[n]}" if self.errors[n] else "") for n in health]
        return f"[{elapsed:6.1f}s] " + " | ".join(parts)


def check_limits(args) -> None:
    """Numbers that must be finite and in range (``inf`` or ``nan`` would mean something else than asked)."""
    for option, value, lowest, strict in (("--max-frames", args.max_frames, 1, False),
                                          ("--duration", args.duration, 0, True),
                                          ("--max-age", args.max_age, 0, True),
                                          ("--gather-ms", args.gather_ms, 0, False),
                                          ("--stats-every", args.stats_every, 0, False),
                                          ("--video-fps", args.video_fps, 0, True)):
        if value is not None and not (math.isfinite(value) and (value > lowest if strict else value >= lowest)):
            raise ConfigError(f"{option} must be a finite number {'>' if strict else '>='} {lowest}, got {value}: "
                              + ("leave it out for no limit" if option in ("--max-frames", "--duration")
                                 else "give a finite number"))


def run(args) -> int:
    """Classify the sources until they end, a limit is reached or Ctrl-C; returns the exit status."""
    check_limits(args)
    if args.metrics_port is not None and not 0 <= args.metrics_port <= 65535:
        raise ConfigError(f"--metrics-port must be a port number 0..65535, got {args.metrics_port}")
    sources = parse_sources(args.source)
    watch = SourcesFile(args.sources_file, sources) if args.sources_file else None
    hangup_before = None  # caught from now on: a SIGHUP while the bundle loads must not end the run
    if watch and hasattr(signal, "SIGHUP") and threading.current_thread() is threading.main_thread():
        hangup_before = signal.signal(signal.SIGHUP, lambda *_: watch.hangup.set())
    try:
        return _run(args, sources, watch)
    finally:
        if hangup_before is not None:
            signal.signal(signal.SIGHUP, hangup_before)


def _run(args, sources: dict[str, str], watch: SourcesFile | None) -> int:
    if watch:
        sources = watch.current
        if args.video:
            raise ConfigError("--video needs a fixed set of streams: leave out --sources-file or --video")
    if not sources:
        raise ConfigError("no sources given: pass --source [NAME=]URI (repeat it) or a --sources-file listing some")
    rois = parse_rois(args.roi, sources)
    metrics = None
    if args.metrics_port is not None:
        from ..streams.prometheus import LiveMetrics

        metrics = LiveMetrics()
    runtime = Runtime(args.bundle, backend=args.backend, precision=args.precision, threads=args.threads,
                      resize=args.resize)
    try:
        out = open(args.output, "w") if args.output else sys.stdout
    except OSError as e:
        runtime.close()
        raise ConfigError(f"cannot write predictions to {args.output} ({e.strerror or e}): "
                          "give a file path in a writable directory") from None
    writer = MosaicWriter(args.video, len(sources), args.video_fps) if args.video else None
    stats = Stats()
    last = {name: (None, "", [], False) for name in sources}  # for the mosaic: frame, title, lines, alarm
    start = next_stats = time.monotonic()
    mux = StreamMux(sources, loop=args.loop, pace=False if args.no_pace else None)

    def on_result(frame, result) -> None:
        record = {"stream": frame.stream, "frame": frame.index, "timestamp": round(frame.timestamp, 3),
                  **result.to_dict()}
        if not args.probabilities:
            record.pop("probabilities", None)
        out.write(json.dumps(record) + "\n")
        stats.add(frame.stream, result)
        if writer:
            lines = ([f"{result.class_name} {100 * result.confidence:.0f}%",
                      f"H {result.entropy:.2f} MI {result.disagreement:.3f} x{result.replicas}"]
                     if result.ok else [str(result.error)[:44]])
            last[frame.stream] = (frame.image, f"{frame.stream} #{frame.index} {stats.fps(frame.stream):.1f} fps",
                                  lines, not result.ok or result.uncertain)

    def on_batch(frames, results) -> None:
        out.flush()  # before the metrics count the batch: scraped counts never run ahead of the JSON lines
        if writer:
            health = mux.health()
            writer.write([draw_tile(*cell) if cell[0] is not None else
                          draw_tile(None, f"{n} {health[n].state}", [], health[n].state != "opening")
                          for n, cell in last.items()])

    def on_step() -> None:
        nonlocal next_stats
        if watch:
            watch.apply(mux)
        if args.stats_every and time.monotonic() >= next_stats:
            print(stats.line(mux.health(), time.monotonic() - start), file=sys.stderr)
            next_stats = time.monotonic() + args.stats_every

    summary = None
    try:
        if metrics:
            port = metrics.serve(args.metrics_port, args.metrics_host)
            print(f"metrics on http://{args.metrics_host}:{port}/metrics", file=sys.stderr)
        with mux:
            summary = live.run(runtime, mux, on_result, policy=args.policy, budget_ms=args.budget_ms,
                               width=args.width, rois=rois, gather_ms=args.gather_ms, max_age=args.max_age,
                               duration=args.duration, max_results=args.max_frames, on_batch=on_batch,
                               on_step=on_step, metrics=metrics, until_ended=watch is None)
    except KeyboardInterrupt:
        pass
    finally:
        runtime.close()
        if metrics:
            metrics.update(mux.health())
            metrics.close()
        if writer:
            writer.close()
        if out is not sys.stdout:
            out.close()
    health = mux.health()
    print(stats.line(health, time.monotonic() - start), file=sys.stderr)
    for name, h in health.items():
        if h.error:
            print(f"{name}: {h.state}: {h.error}", file=sys.stderr)
    total = summary.results if summary else sum(stats.count.values())
    return 0 if total or not all(h.state == "failed" for h in health.values()) else 1
