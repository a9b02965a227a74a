"""Several cameras, one superposed model: the freshest frame of every live stream per step.

    python examples/multi_camera.py BUNDLE [VIDEO_OR_URL ...]

Without sources, three demo videos (30, 15 and 10 fps) are rendered from the shipped Fashion-MNIST sample.
Sources may be video files, rtsp:// or http:// URLs, V4L2 devices (0, /dev/video0) or GStreamer pipelines.
"""

import sys
import tempfile
import time

from edge_mimo import Runtime, live
from edge_mimo.streams import StreamMux

from demo_videos import write_demo_videos


def main(bundle: str, sources: list[str]) -> None:
    runtime = Runtime(bundle)
    if not sources:
        sources = write_demo_videos(tempfile.mkdtemp(prefix="edge-mimo-demo-"))
    names = {f"cam{i}": uri for i, uri in enumerate(sources)}
    seen = dict.fromkeys(names, 0)
    start = time.monotonic()

    def show(frame, r) -> None:
        seen[frame.stream] += 1
        if not r.ok:
            print(f"{frame.stream}: bad frame: {r.error}")
        elif seen[frame.stream] % 10 == 1:
            flag = "  <- uncertain" if r.uncertain else ""
            print(f"{frame.stream} frame {frame.index:4d}: {r.class_name:12s} {r.confidence:5.1%} "
                  f"(width {r.width}, {r.replicas} replicas, {r.timing.total_ms:.1f} ms){flag}")

    with StreamMux(names) as mux:
        # Until every source has ended or failed (a dead one never blocks the others); gather_ms: wait up to
        # 30 ms so that streams share superposed passes (one pass for up to N cameras).
        live.run(runtime, mux, show, gather_ms=30)
        elapsed = time.monotonic() - start
        for name, status in mux.health().items():
            print(f"{name}: {status.state}, {seen[name]} frames classified ({seen[name] / elapsed:.1f}/s), "
                  f"{mux.skipped[name]} superseded by newer ones" + (f"; {status.error}" if status.error else ""))


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2:])
