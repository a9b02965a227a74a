"""``edge-mimo run``: classify live sources with a bundle; JSON lines per prediction, live stats on stderr."""

from __future__ import annotations

import collections
import json
import math
import re
import sys
import time
from pathlib import Path

from ..engines import BACKENDS, PRECISIONS
from ..errors import ConfigError
from ..runtime import POLICIES, Runtime
from ..runtime.preprocess import RESIZE_MODES
from ..streams import StreamMux
from ..streams.annotate import MosaicWriter, draw_tile

NAMED = re.compile(r"^([A-Za-z0-9_.-]+)=(.+)$")  # name=uri (a URL's own '=' comes after ':' or '/')


def add_parser(sub) -> None:
    """Register ``edge-mimo run``."""
    p = sub.add_parser("run", help="classify live sources (files, RTSP/HTTP, V4L2, GStreamer) with a bundle")
    p.add_argument("bundle", help="bundle directory written by `edge-mimo compile`")
    p.add_argument("--source", action="append", required=True, metavar="[NAME=]URI",
                   help="video file, rtsp:// or http:// URL, device index or /dev/videoN, GStreamer pipeline; repeat")
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
    p.set_defaults(run=run)


def parse_sources(specs: list[str]) -> dict[str, str]:
    """``[NAME=]URI`` specs -> {name: uri}. A file whose own name contains '=' is a file, not NAME=URI."""
    sources = {}
    for i, spec in enumerate(specs):
        m = NAMED.match(spec)
        if m and Path(spec).exists():
            if Path(m.group(2)).exists():
                raise ConfigError(
                    f"--source {spec!r} may be the file {spec!r} or the file {m.group(2)!r} named {m.group(1)!r}: "
                    f"write cam{i}={spec} for the first, {m.group(1)}=./{m.group(2)} for the second")
            m = None
        name, uri = (m.group(1), m.group(2)) if m else (f"cam{i}", spec)
        if name in sources:
            raise ConfigError(f"two sources are named {name!r}: name them with NAME=URI")
        sources[name] = uri
    return sources


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

    def __init__(self, names) -> None:
        self.times = {n: collections.deque(maxlen=30) for n in names}
        self.count = dict.fromkeys(names, 0)
        self.uncertain = dict.fromkeys(names, 0)
        self.errors = dict.fromkeys(names, 0)

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
        """One status line for stderr."""
        parts = [f"{n} {health[n].state} {self.fps(n):.1f} fps uncertain {100 * self.rate(n):.0f}%"
                 + (f" errors {self.errors[n]}" if self.errors[n] else "") for n in self.count]
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
    sources = parse_sources(args.source)
    rois = parse_rois(args.roi, sources)
    runtime = Runtime(args.bundle, backend=args.backend, precision=args.precision, threads=args.threads,
                      resize=args.resize)
    try:
        out = open(args.output, "w") if args.output else sys.stdout
    except OSError as e:
        raise ConfigError(f"cannot write predictions to {args.output} ({e.strerror or e}): "
                          "give a file path in a writable directory") from None
    writer = MosaicWriter(args.video, len(sources), args.video_fps) if args.video else None
    stats = Stats(sources)
    last = {name: (None, "", [], False) for name in sources}  # for the mosaic: frame, title, lines, alarm
    start = next_stats = time.monotonic()
    total = 0
    mux = StreamMux(sources, loop=args.loop, pace=False if args.no_pace else None).start()
    try:
        while mux.active:
            now = time.monotonic()
            if args.duration and now - start >= args.duration or args.max_frames and total >= args.max_frames:
                break
            batch = mux.read(timeout=0.5, max_age=args.max_age, gather=args.gather_ms / 1e3)
            if batch:
                results = runtime.infer_many({n: f.image for n, f in batch.items()}, policy=args.policy,
                                             budget_ms=args.budget_ms, width=args.width,
                                             rois={n: rois[n] for n in batch if n in rois} or None)
                for name, result in results.items():
                    frame = batch[name]
                    record = {"stream": name, "frame": frame.index, "timestamp": round(frame.timestamp, 3), **result.to_dict()}
                    if not args.probabilities:
                        record.pop("probabilities", None)
                    out.write(json.dumps(record) + "\n")
                    stats.add(name, result)
                    total += 1
                    lines = ([f"{result.class_name} {100 * result.confidence:.0f}%",
                              f"H {result.entropy:.2f} MI {result.disagreement:.3f} x{result.replicas}"]
                             if result.ok else [str(result.error)[:44]])
                    last[name] = (frame.image, f"{name} #{frame.index} {stats.fps(name):.1f} fps", lines,
                                  not result.ok or result.uncertain)
                out.flush()
                if writer:
                    health = mux.health()
                    writer.write([draw_tile(*cell) if cell[0] is not None else
                                  draw_tile(None, f"{n} {health[n].state}", [], health[n].state != "opening")
                                  for n, cell in last.items()])
            if args.stats_every and time.monotonic() >= next_stats:
                print(stats.line(mux.health(), time.monotonic() - start), file=sys.stderr)
                next_stats = time.monotonic() + args.stats_every
    except KeyboardInterrupt:
        pass
    finally:
        mux.close()
        runtime.close()
        if writer:
            writer.close()
        if out is not sys.stdout:
            out.close()
    health = mux.health()
    print(stats.line(health, time.monotonic() - start), file=sys.stderr)
    for name, h in health.items():
        if h.error:
            print(f"{name}: {h.state}: {h.error}", file=sys.stderr)
    return 0 if total or not all(h.state == "failed" for h in health.values()) else 1
