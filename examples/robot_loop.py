"""A robotics-style control loop: fixed rate, one frame per camera, act only on confident predictions.

    python examples/robot_loop.py BUNDLE [VIDEO_OR_URL ...] [--hz 10]

Each tick takes the freshest frame of every live camera and classifies them together in one call. Confident
results are acted on; uncertain ones are re-queried once with ``policy="robust"`` (every slot of the network
holds that frame: an ensemble) and, if still uncertain, the robot holds still for that camera.
"""

import argparse
import tempfile

from edge_mimo import Runtime, live
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
    period, counts = 1.0 / args.hz, {"actions": 0, "holds": 0, "requeried": 0}

    def act(frame, r) -> None:
        name = frame.stream
        if not r.ok:  # a bad frame from one camera: the others are still handled
            print(f"{name}: skipped ({r.error})")
            return
        if r.uncertain:
            counts["requeried"] += 1
            r = runtime.infer_many({name: frame}, policy="robust")[name]
        if r.uncertain:
            counts["holds"] += 1
            print(f"{name}: hold still ({r.class_name}? entropy {r.entropy:.2f}, disagreement {r.disagreement:.3f})")
        else:
            counts["actions"] += 1
            print(f"{name}: {decide(r)} ({r.confidence:.0%}, {r.replicas} replicas)")

    with StreamMux({f"cam{i}": s for i, s in enumerate(sources)}) as mux:
        # One tick per period: the freshest frame of every live camera (none older than two ticks), classified
        # together within the inference budget.
        live.run(runtime, mux, act, policy="throughput", budget_ms=args.budget_ms, period=period,
                 max_age=2 * period)
        for name, status in mux.health().items():
            print(f"{name}: {status.state}" + (f" ({status.error})" if status.error else ""))
    print(f"{counts['actions']} actions, {counts['holds']} holds, {counts['requeried']} re-queries with the full ensemble")


if __name__ == "__main__":
    main()
