"""Is a wide superposed pass faster than a thin batched network on a GPU? (issue 20, part 4)

TensorRT cannot be installed on the GPU machines this project is lent, so this times PyTorch CUDA as the honest
proxy: the shipped MIMOConv at widths 1 / 2 / 4 against its equal-cost plain twin (``edge_mimo.twin``) and the
plain network of the same trunk, at 1-64 camera streams, in half precision (bf16 or fp16), channels-last, with
and without CUDA graphs. Every figure is labelled with what ran. One call on a lent GPU:

    python scripts/gpu_proxy_bench.py --device cuda --dtype fp16 -o gpu_proxy.json

``--device cpu`` runs the same harness on the CPU (a smoke test; CUDA graphs and half precision are skipped).
Weights do not change speed: the twins run with their initial weights, the MIMO model with the shipped ones.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import platform
import time
from collections.abc import Callable
from pathlib import Path

import torch

from edge_mimo.models import build_model
from edge_mimo.models.default import resolve_model
from edge_mimo.models.weights import count_macs, load_model
from edge_mimo.twin import plain_twin_config
from edge_mimo.twin.equal_cost import CHANNEL_MULTIPLE

STREAMS = (1, 2, 4, 8, 16, 32, 64)


def candidates() -> dict[str, tuple[torch.nn.Module, int]]:
    """name -> (model, width): the shipped MIMOConv per width, its equal-cost twins (exact, and in multiples of 8
    channels, as ``edge-mimo twin`` makes them), the plain net of its trunk."""
    mimo = load_model(resolve_model("default"))
    out = {f"mimo-width{n}": (mimo, n) for n in mimo.config.widths}
    for multiple in (1, CHANNEL_MULTIPLE):  # MACs matched exactly, and in multiples of 8 channels (edge-mimo twin's)
        twin = plain_twin_config(mimo.config, multiple=multiple)
        out[f"plain-twin ({'/'.join(map(str, twin.stage_widths))})"] = (build_model(twin), 1)
    same = dataclasses.replace(mimo.config, arch="plain", capacity=1)
    out[f"plain-same-trunk ({'/'.join(map(str, same.stage_widths))})"] = (build_model(same), 1)
    return out


def timed(fn, repeats: int, device: torch.device) -> float:
    """Median milliseconds of ``fn()``, synchronised with the device."""
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
    times.sort()
    return times[len(times) // 2]


def runner(fn: Callable[[], torch.Tensor], graphs: bool) -> Callable[[], torch.Tensor]:
    """``fn`` (one pass, returning its output), or a replay of it captured in a CUDA graph, returning the same."""
    if not graphs:
        return fn
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):  # warm-up on a side stream before capture, as CUDA graphs require
            fn()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = fn()

    def replay() -> torch.Tensor:
        graph.replay()
        return out

    return replay


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    p.add_argument("--dtype", default="fp16", choices=["fp16", "bf16", "fp32"])
    p.add_argument("--streams", default=",".join(map(str, STREAMS)))
    p.add_argument("--repeats", type=int, default=50)
    p.add_argument("-o", "--output", type=Path, default=Path("gpu_proxy.json"))
    args = p.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        p.error("no CUDA GPU visible to torch: run with --device cpu for a smoke test")
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[args.dtype]
    if device.type == "cpu":
        dtype = torch.float32
    streams = [int(s) for s in args.streams.split(",")]
    torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its fastest kernels
    label = (f"PyTorch {torch.__version__} eager/CUDA graphs, {args.dtype if device.type == 'cuda' else 'fp32'}, "
             f"channels-last, on {torch.cuda.get_device_name() if device.type == 'cuda' else platform.processor()}"
             " (a proxy for TensorRT, which was not run)")
    rows = []
    with torch.inference_mode():
        for name, (model, width) in candidates().items():
            macs = count_macs(model.eval().float().cpu(), width) / width  # counted on the CPU (the MIMO model is shared)
            model = model.to(device=device, dtype=dtype, memory_format=torch.channels_last)
            for s in streams:
                groups = math.ceil(s / width)  # frames of the call packed into superposed groups of this width
                x = torch.randn(groups, width, model.config.in_channels, model.config.image_size,
                                model.config.image_size, device=device, dtype=dtype)
                for graphs in ((False, True) if device.type == "cuda" else (False,)):
                    ms = timed(runner(lambda: model(x), graphs), args.repeats, device)
                    rows.append({"model": name, "width": width, "streams": s, "groups": groups, "cuda_graphs": graphs,
                                 "ms": ms, "frames_per_s": 1e3 * s / ms, "mmac_per_frame": macs / 1e6})
                    print(f"{name:38s} streams {s:3d} graphs {graphs!s:5s} {ms:8.3f} ms "
                          f"{1e3 * s / ms:10.0f} frames/s", flush=True)
    args.output.write_text(json.dumps({"label": label, "rows": rows}, indent=2) + "\n")
    print(f"{label}\nwrote {args.output}")


if __name__ == "__main__":
    main()
