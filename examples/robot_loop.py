"""A robotics-style control loop: fixed rate, one frame per camera, act only on confident predictions.

    python examples/robot_loop.py BUNDLE [VIDEO_OR_URL ...] [--hz 10]

Each tick takes the freshest frame of every live camera and classifies them together in one call. Confident
results are acted on; uncertain ones are re-queried once with ``policy="robust"`` (every slot of the network
holds that frame: an ensemble) and, if still uncertain, the robot holds still for that camera.
"""

import argparse
import tempfile
import time

from edge_mimo import Runtime
from edge_mimo.streams import StreamMux

from demo_videos import write_demo_videos


def decide(result) -> str:
    return f"pick up {result.class_name}" if result.class_name in ("Bag", "Sandal", "Sneaker") else "ignore"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundle")
    parser.add_argument("sources", nargs="*")
    parser.add_argument("--hz", type=float, default=10.0, help="control rate")
    parser.add_argument("--budget-ms", type=float, default=50.0, help="inference budget per tick")
    args = parser.parse_args()

    runtime = Runtime(args.bundle)
    sources = args.sources or write_demo_videos(tempfile.mkdtemp(prefix="edge-mimo-robot-"))
    period, actions, holds, requeried = 1.0 / args.hz, 0, 0, 0
    with StreamMux({f"cam{i}": s for i, s in enumerate(sources)}) as mux:
        next_tick = time.monotonic()
        while mux.active:
            frames = {name: f.image for name, f in mux.read(timeout=period).items() if f.age < 2 * period}
            if frames:
                results = runtime.infer_many(frames, policy="throughput", budget_ms=args.budget_ms)
                for name, r in results.items():
                    if not r.ok:  # a bad frame from one camera: the others are still handled
                        print(f"{name}: skipped ({r.error})")
                        continue
                    if r.uncertain:
                        requeried += 1
                        r = runtime.infer_many({name: frames[name]}, policy="robust")[name]
                    if r.uncertain:
                        holds += 1
                        print(f"{name}: hold still ({r.class_name}? entropy {r.entropy:.2f}, "
                              f"disagreement {r.disagreement:.3f})")
                    else:
                        actions += 1
                        print(f"{name}: {decide(r)} ({r.confidence:.0%}, {r.replicas} replicas)")
            next_tick += period
            time.sleep(max(0.0, next_tick - time.monotonic()))
        for name, status in mux.health().items():
            print(f"{name}: {status.state}" + (f" ({status.error})" if status.error else ""))
    print(f"{actions} actions, {holds} holds, {requeried} re-queries with the full ensemble")


if __name__ == "__main__":
    main()
