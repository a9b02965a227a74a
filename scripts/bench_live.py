"""Live-loop benchmark: `edge_mimo.live.run` over camera-like video files, width 1 against width 4, with the
frames prepared in the readers' threads or in the loop's (interleaved runs; medians).

    .venv/bin/python scripts/bench_live.py BUNDLE [--streams 8] [--fps 30] [--seconds 8] [--rounds 3]

Each stream is a 640x480 MJPEG file of garments in a scene (as examples/demo_videos.py), paced at ``--fps`` and
looped. Per configuration: results per second, loop milliseconds per frame (wall time of the ``infer_many``
calls / results: the loop's capacity), the share of that time outside the superposed passes, and the process's
CPU milliseconds per result (all threads: decoding, preparation, passes).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from edge_mimo import Runtime, StreamMux, live
from edge_mimo.camera.scenes import CONDITIONS, render_frame
from edge_mimo.datasets import shipped_sample


def write_videos(folder: Path, streams: int, fps: float, frames: int = 60) -> dict[str, str]:
    images = shipped_sample("validation").images[:, 0]
    conditions = list(CONDITIONS)
    out = {}
    for k in range(streams):
        path = folder / f"cam{k}.avi"
        rng = np.random.default_rng(k)
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (640, 480))
        for i in range(frames):
            writer.write(render_frame(images[(k * 97 + i // 5) % len(images)], CONDITIONS[conditions[k % len(conditions)]],
                                      rng, (640, 480)))
        writer.release()
        out[f"cam{k}"] = str(path)
    return out


def one_run(runtime: Runtime, videos: dict[str, str], width: int, in_readers: bool, seconds: float) -> dict:
    calls = []
    with StreamMux(videos, loop=True) as mux:
        cpu = time.process_time()
        summary = live.run(runtime, mux, lambda frame, result: None, width=width, gather_ms=5, duration=seconds,
                           prepare_in_readers=in_readers,
                           on_batch=lambda frames, results: calls.append(next(iter(results.values())).timing))
        cpu = time.process_time() - cpu
    total = sum(t.total_ms for t in calls)
    return {"fps": summary.results / summary.elapsed, "loop_ms": total / summary.results,
            "outside": 1 - sum(t.inference_ms for t in calls) / total, "cpu_ms": cpu * 1e3 / summary.results}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundle")
    p.add_argument("--streams", type=int, default=8)
    p.add_argument("--fps", type=float, default=30.0)
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    runtime = Runtime(args.bundle, precision="int8", threads=args.threads)
    configs = [(w, r) for w in (1, 4) for r in (False, True)]
    runs: dict[tuple, list[dict]] = {c: [] for c in configs}
    with tempfile.TemporaryDirectory() as d:
        videos = write_videos(Path(d), args.streams, args.fps)
        for _ in range(args.rounds):  # interleaved: load changes hit every configuration alike
            for width, in_readers in configs:
                runs[(width, in_readers)].append(one_run(runtime, videos, width, in_readers, args.seconds))
    med = {c: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for c, rs in runs.items()}
    print(f"{args.streams} streams x {args.fps:g} fps 640x480 MJPEG, {runtime.backend_name} {runtime.precision}, "
          f"{args.threads} threads, {args.rounds} interleaved rounds of {args.seconds:g} s (medians)")
    print("width  prepared in   results/s  loop ms/frame  outside passes  CPU ms/result")
    for (width, in_readers), m in med.items():
        print(f"{width:5d}  {'readers' if in_readers else 'loop':11s}  {m['fps']:9.1f}  {m['loop_ms']:13.3f}  "
              f"{100 * m['outside']:13.0f}%  {m['cpu_ms']:13.3f}")
    for in_readers in (False, True):
        ratios = [a["loop_ms"] / b["loop_ms"] for a, b in zip(runs[(1, in_readers)], runs[(4, in_readers)])]
        print(f"width-4 / width-1 loop capacity, prepared in {'readers' if in_readers else 'loop'}: "
              f"{statistics.median(ratios):.2f}x (per-round ratios {', '.join(f'{r:.2f}' for r in ratios)})")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
