"""Issue 25 on a GPU: preprocessing on the CPU (the numpy path) or in the graph, on the GPU?

TensorRT cannot be installed on the GPU machines this project is lent, and their ONNX Runtime has no CUDA provider
(the script prints the providers it finds), so PyTorch CUDA is the proxy. For ``--streams`` camera frames (640x480
BGR, as ``edge-mimo bench`` makes them) and the shipped model at width 4 (the throughput policy's packing) and
width 1, each call is timed end to end:

* numpy path: the runtime's own ``prepare_frame`` + ``Normalizer`` on the CPU, the float batch uploaded, the pass,
  the logits back;
* in-graph path: the runtime's ``prepare_crop`` on the CPU (the centred 476x476 window, a view), the uint8 crops
  uploaded, then on the GPU the operators ``compile --in-graph`` prepends (cast, average pooling by the crop factor,
  the 1x1 colour/normalisation convolution of ``export.ingraph.colour_weights``), the pass, the logits back.

The pass is the model in half precision, channels-last, replayed from a CUDA graph (the in-graph operators are
captured in the same graph). Outside share = 1 - pass / end to end, with the pass timed alone by CUDA events.
Both paths' predictions are compared on the same frames. One call on a lent GPU:

    python scripts/gpu_preprocess_bench.py --device cuda -o gpu_preprocess.json

``--device cpu`` runs the same harness on the CPU in float32, without CUDA graphs (a smoke test).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from edge_mimo.camera.frames import camera_frames
from edge_mimo.datasets import shipped_sample
from edge_mimo.export.ingraph import colour_weights
from edge_mimo.models.default import resolve_model
from edge_mimo.models.weights import load_model
from edge_mimo.runtime.batching import spec_for, width_groups
from edge_mimo.runtime.ingraph import prepare_crop
from edge_mimo.runtime.preprocess import Normalizer, prepare_frame
from gpu_proxy_bench import runner, timed  # this folder's CUDA-graph capture and device timing

CROP_FACTOR = 17  # the cpu target's [preprocess] crop_factor: 476 = 17 x 28


class InGraph(torch.nn.Module):
    """uint8 crops [G, n, S, S, 3] (BGR) -> the model's logits, with the in-graph operators in front."""

    def __init__(self, model: torch.nn.Module, spec, factor: int) -> None:
        super().__init__()
        self.model, self.factor = model, factor
        self.shape = (spec.channels, spec.height, spec.width_px)
        weight, bias = colour_weights(spec.color, spec.mean, spec.std)
        self.register_buffer("weight", torch.from_numpy(weight))
        self.register_buffer("bias", torch.from_numpy(bias))

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        g, n, sh, sw, _ = crops.shape
        x = crops.reshape(g * n, sh, sw, 3).permute(0, 3, 1, 2).to(self.weight.dtype)
        x = F.conv2d(F.avg_pool2d(x, self.factor), self.weight, self.bias)
        return self.model(x.reshape(g, n, *self.shape))


class Call:
    """One ``infer_many``-like call on a fixed number of frames: host preparation, upload, pass, logits back."""

    def __init__(self, net: torch.nn.Module, host_shape: tuple, host_dtype, device: torch.device, graphs: bool,
                 compute_dtype) -> None:
        self.device = device
        pin = device.type == "cuda"
        self.host = torch.empty(host_shape, dtype=host_dtype, pin_memory=pin)
        self.input = torch.empty(host_shape, dtype=host_dtype, device=device)

        def step() -> torch.Tensor:
            return net(self.input if host_dtype == torch.uint8 else self.input.to(compute_dtype))

        self.forward = runner(step, graphs)

    def run(self, frames: list[np.ndarray], order: np.ndarray) -> np.ndarray:
        """Prepared frames written once, straight into the pinned buffer in the groups' order, then the pass."""
        host = self.host.numpy()
        for (g, j), i in np.ndenumerate(order):
            host[g, j] = frames[i]
        self.input.copy_(self.host, non_blocking=True)
        return self.forward().float().cpu().numpy()

    def pass_ms(self, repeats: int) -> float:
        """Median milliseconds of the pass alone (device timing on CUDA)."""
        return timed(self.forward, repeats, self.device)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    p.add_argument("--dtype", default="fp16", choices=["fp16", "bf16", "fp32"])
    p.add_argument("--streams", type=int, default=8)
    p.add_argument("--repeats", type=int, default=200)
    p.add_argument("-o", "--output", type=Path, default=Path("gpu_preprocess.json"))
    args = p.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        p.error("no CUDA GPU visible to torch: run with --device cpu for a smoke test")
    cuda = device.type == "cuda"
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[args.dtype] if cuda else torch.float32
    torch.backends.cudnn.benchmark = True
    try:
        import onnxruntime

        providers = onnxruntime.get_available_providers()
    except ImportError:
        providers = []

    model = load_model(resolve_model("default")).eval()
    spec = spec_for(model.config)
    crop_spec = spec.with_crop(CROP_FACTOR)
    normalize = Normalizer(spec)
    frames = camera_frames(shipped_sample("validation").images[: args.streams])
    net = model.to(device=device, dtype=dtype, memory_format=torch.channels_last)
    in_graph = InGraph(net, spec, CROP_FACTOR).to(device=device, dtype=dtype)
    label = (f"PyTorch {torch.__version__} {args.dtype if cuda else 'fp32'}, channels-last, "
             f"{'CUDA graphs' if cuda else 'eager'}, on {torch.cuda.get_device_name() if cuda else platform.processor()};"
             f" host preparation on the {platform.machine()} CPU in the calling thread, written once into pinned memory; ONNX Runtime providers there: {providers}"
             " (a proxy for TensorRT, which was not run)")

    def numpy_frames() -> list[np.ndarray]:
        return [normalize(prepare_frame(f, spec)) for f in frames]

    def crops() -> list[np.ndarray]:
        return [prepare_crop(f, crop_spec) for f in frames]

    rows, predictions = [], {}
    with torch.inference_mode():
        for path, prepare, net_of, host_dtype in (("numpy", numpy_frames, net, torch.float32),
                                                   ("in-graph", crops, in_graph, torch.uint8)):
            for width in (4, 1):
                order = width_groups(np.arange(len(frames)).reshape(-1, 1, 1, 1), width)[..., 0, 0, 0]
                sample = prepare()
                call = Call(net_of, (*order.shape, *sample[0].shape), host_dtype, device, cuda, dtype)
                predictions[(path, width)] = call.run(sample, order)
                for _ in range(20):
                    call.run(prepare(), order)
                host, total = [], []
                for _ in range(args.repeats):
                    t0 = time.perf_counter()
                    prepared = prepare()
                    t1 = time.perf_counter()
                    call.run(prepared, order)
                    t2 = time.perf_counter()
                    host.append((t1 - t0) * 1e3)
                    total.append((t2 - t0) * 1e3)
                pass_ms = call.pass_ms(args.repeats)
                end_to_end = float(np.median(total))
                row = {"path": path, "width": width, "streams": args.streams, "groups": int(order.shape[0]),
                       "end_to_end_ms": end_to_end, "host_prepare_ms": float(np.median(host)), "pass_ms": pass_ms,
                       "outside_share": max(0.0, 1 - pass_ms / end_to_end),
                       "frames_per_s": 1e3 * args.streams / end_to_end}
                rows.append(row)
                print(f"{path:8s} width {width}: {end_to_end:7.3f} ms end to end ({row['frames_per_s']:7.0f} frames/s), "
                      f"host {row['host_prepare_ms']:.3f} ms, pass {pass_ms:.3f} ms, outside {row['outside_share']:.2f}",
                      flush=True)
    fps = {(r["path"], r["width"]): r["frames_per_s"] for r in rows}
    ratios = {path: fps[(path, 4)] / fps[(path, 1)] for path in ("numpy", "in-graph")}
    agree = {width: float(np.mean(predictions[("numpy", width)].argmax(-1)
                                  == predictions[("in-graph", width)].argmax(-1))) for width in (4, 1)}
    print("width 4 / width 1 end to end: " + ", ".join(f"{k} {v:.2f}x" for k, v in ratios.items()))
    print("top-1 agreement of the two paths on the same frames: " + ", ".join(f"width {k} {v:.3f}" for k, v in agree.items()))
    args.output.write_text(json.dumps({"label": label, "rows": rows, "width4_over_width1": ratios,
                                       "top1_agreement": {str(k): v for k, v in agree.items()}}, indent=2) + "\n")
    print(f"{label}\nwrote {args.output}")


if __name__ == "__main__":
    main()
