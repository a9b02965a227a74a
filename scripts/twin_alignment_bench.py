"""Do odd channel counts slow a plain twin on the CPU? (BENCHMARKS.md, "Odd channel counts on the CPU")

Compiles the equal-cost twin of a model twice for the cpu target, with MACs matched exactly and in multiples of 8
channels (random weights: speed does not depend on them), and times both with ``infer_many`` at 8 streams, INT8,
2 threads, in interleaved rounds, beside any ``--bundle`` given (e.g. the model's own). Run it on a quiet machine:

    python scripts/twin_alignment_bench.py --model default
    python scripts/twin_alignment_bench.py --model ~/.cache/edge-mimo/study/ours/model \\
        --bundle ~/.cache/edge-mimo/study/ours/bundle-cpu --bundle ~/.cache/edge-mimo/study/ours/twin/bundle-cpu
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from edge_mimo.bench.timing import measure_interleaved, summary
from edge_mimo.camera.frames import camera_frames
from edge_mimo.compile.pipeline import CompileOptions, compile_bundle
from edge_mimo.datasets import shipped_sample
from edge_mimo.models import build_model
from edge_mimo.models.config import CONFIG_FILE, ModelConfig
from edge_mimo.models.default import resolve_model
from edge_mimo.models.weights import save_model
from edge_mimo.runtime import Runtime
from edge_mimo.twin.equal_cost import CHANNEL_MULTIPLE, macs_per_frame, plain_twin_config


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="default", help="the superposed model whose twin is built")
    p.add_argument("--bundle", action="append", default=[], help="another bundle timed in the same rounds")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--calls", type=int, default=60, help="timed calls per bundle and round")
    args = p.parse_args()
    config = ModelConfig.load(resolve_model(args.model) / CONFIG_FILE)
    bundles = {str(b): Path(b) for b in args.bundle}
    with tempfile.TemporaryDirectory() as tmp:
        for multiple in (1, CHANNEL_MULTIPLE):
            twin = plain_twin_config(config, multiple=multiple)
            torch.manual_seed(0)
            save_model(build_model(twin), Path(tmp) / f"twin{multiple}" / "model")
            name = f"twin {'/'.join(map(str, twin.stage_widths))} ({macs_per_frame(twin) / 1e6:.2f} MMAC)"
            bundles[name], _ = compile_bundle(CompileOptions(
                model=str(Path(tmp) / f"twin{multiple}" / "model"), target="cpu", max_width=1, allow_drop=True,
                calibration_size=128, output=Path(tmp) / f"twin{multiple}" / "bundle"))
        frames = camera_frames(shipped_sample("validation").images[:8])
        runtimes = {name: Runtime(b, precision="int8", threads=2) for name, b in bundles.items()}
        calls = {name: (lambda rt=rt: rt.infer_many(frames)) for name, rt in runtimes.items()}
        for r in range(args.rounds):
            times, _ = measure_interleaved(calls, args.calls)
            print(f"round {r}: " + ", ".join(f"{name} {summary(times[name], len(frames))['fps']:.0f}"
                                             for name in calls) + " frames/s", flush=True)


if __name__ == "__main__":
    main()
