"""``edge-mimo export-triton``: write a Triton Inference Server model repository serving a bundle."""

from __future__ import annotations

from pathlib import Path

from ..runtime.scheduler import POLICIES
from ..serving.triton.repo import LIMITS, PLATFORMS, ExportOptions, export_repository


def add_parser(sub) -> None:
    """Register ``edge-mimo export-triton``."""
    p = sub.add_parser("export-triton", help="write a Triton model repository that packs requests into superposed "
                                             "passes (docs/serving.md)")
    p.add_argument("bundle", type=Path)
    p.add_argument("-o", "--output", type=Path, required=True, help="the model repository (created if missing)")
    p.add_argument("--name", default="edge_mimo", help="the packing model's name (default: edge_mimo)")
    p.add_argument("--policy", choices=POLICIES, default="throughput",
                   help="default scheduling policy (requests may override it with the parameter 'policy')")
    p.add_argument("--budget-ms", type=float, help="default inference budget per batch (request parameter "
                                                   "'budget_ms' overrides it)")
    p.add_argument("--threads", type=int, help=f"ONNX Runtime threads of the packing model, {_range('threads')} "
                                               "(default: its choice)")
    p.add_argument("--queue-delay-us", type=int, default=2000,
                   help=f"how long Triton's dynamic batcher waits to fill a batch, {_range('queue_delay_us')} us "
                        "(default: 2000)")
    p.add_argument("--max-batch-frames", type=int,
                   help=f"frames per execution, {_range('max_batch_frames')} (default: 8 x capacity)")
    p.add_argument("--instances", type=int, default=1,
                   help=f"packing model instances, {_range('instances')} (default: 1)")
    p.add_argument("--reference-bundle", action="store_true",
                   help="name the bundle by its absolute path instead of copying it into the repository")
    p.add_argument("--engine-models", action="store_true",
                   help="also serve each width's graph as a Triton model of its own, called by the packing model "
                        "through BLS")
    p.add_argument("--platform", choices=PLATFORMS, default="auto",
                   help="engine models' platform: auto (TensorRT plans when the bundle has them, else ONNX Runtime), "
                        "tensorrt, onnxruntime, or python (ONNX Runtime in Triton's Python backend)")
    p.add_argument("--force", action="store_true", help="replace models of the same names in the repository")
    p.set_defaults(run=run)


def _range(option: str) -> str:
    low, high, _ = LIMITS[option]
    return f"{low}..{high}"


def run(args) -> int:
    """Write the repository; returns the exit status."""
    options = ExportOptions(
        name=args.name, copy_bundle=not args.reference_bundle, engine_models=args.engine_models,
        platform=args.platform, policy=args.policy, budget_ms=args.budget_ms, threads=args.threads,
        queue_delay_us=args.queue_delay_us, max_batch_frames=args.max_batch_frames, instances=args.instances,
        overwrite=args.force)
    for model in export_repository(args.bundle, args.output, options):
        print(f"wrote {model}")
    print(f"serve it with: edge-mimo triton-server {args.output} (a local CPU server), or NVIDIA's Triton container "
          f"with edge-mimo installed: tritonserver --model-repository={args.output.resolve()} (docs/serving.md)")
    return 0
