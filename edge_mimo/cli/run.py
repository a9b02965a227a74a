"""``edge-mimo run``: classify live sources with a bundle; JSON lines per prediction, live stats on stderr.

Parses the options and prints; the live loop and its parts (sources file, stats, metrics, mosaic) are in
``edge_mimo.live``."""

from __future__ import annotations

import json
import re
import signal
import sys
import threading
import time

from .. import live
from ..bundle.manifest import RESIZE_MODES
from ..engines import BACKENDS, PRECISIONS
from ..errors import ConfigError
from ..live.loop import check_limit
from ..live.mosaic import MAX_VIDEO_FPS, MosaicWriter, draw_tile, tile_lines
from ..live.sources import SourcesFile, parse_sources
from ..live.stats import Stats
from ..runtime import POLICIES, InferOptions, Runtime
from ..streams import StreamMux


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
    p.add_argument("--video", help="write an annotated mosaic of all streams to this .mp4/.avi, as long as the run: "
                                   "each tile shows the class and confidence, the entropy (0 certain .. 1 uniform), "
                                   "the replicas' disagreement (mutual information) and the replicas and width; "
                                   "red = uncertain or failed")
    p.add_argument("--video-fps", type=float, default=15.0)
    p.add_argument("--stats-every", type=float, default=2.0, help="seconds between stats lines on stderr (0: off)")
    p.add_argument("--metrics-port", type=int, metavar="PORT",
                   help="serve Prometheus metrics on this port (needs 'edge-mimo[metrics]'; 0: any free port)")
    p.add_argument("--metrics-host", default="127.0.0.1", help="address to serve metrics on (default: loopback only)")
    p.set_defaults(run=run)


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


def check_limits(args) -> None:
    """The numeric options, before anything opens (the live loop's checks: :func:`edge_mimo.live.loop.check_limit`)."""
    for option, value, lowest, strict in (("--duration", args.duration, 0, True), ("--max-age", args.max_age, 0, True),
                                          ("--gather-ms", args.gather_ms, 0, False),
                                          ("--stats-every", args.stats_every, 0, False),
                                          ("--video-fps", args.video_fps, 0, True)):
        check_limit(option, value, lowest, strict, optional=option in ("--duration", "--max-age"))
    check_limit("--max-frames", args.max_frames, 1, whole=True)
    if args.video_fps > MAX_VIDEO_FPS:
        raise ConfigError(f"--video-fps {args.video_fps:g} is above {MAX_VIDEO_FPS:g}: the video keeps the run's time, "
                          "so a higher rate only repeats frames; give e.g. 15 or 30")
    InferOptions(args.policy, args.budget_ms, args.width)


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
        from ..live.prometheus import LiveMetrics

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
            lines = tile_lines(result)
            last[frame.stream] = (frame.image, f"{frame.stream} #{frame.index} {stats.fps(frame.stream):.1f} fps",
                                  lines, not result.ok or result.uncertain)

    def on_batch(frames, results) -> None:
        out.flush()  # before the metrics count the batch: scraped counts never run ahead of the JSON lines
        if writer:
            health = mux.health()
            writer.write([draw_tile(*cell) if cell[0] is not None else
                          draw_tile(None, f"{n} {health[n].state}", [], health[n].state != "opening")
                          for n, cell in last.items()], time.monotonic() - start)

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
