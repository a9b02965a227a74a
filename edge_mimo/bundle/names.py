"""The names inside a bundle, one constant each: its files and its graphs' input and output tensors."""

from __future__ import annotations

INPUT_NAME = "images"  # every graph's input: float32 [B, n, C, H, W], normalised
OUTPUT_NAME = "logits"  # every graph's output: per-replica logits [B, N/n, n, K]
REPORT_FILE = "report.md"
PLOT_FILE = "operating_points.png"
TIMING_CACHE_FILE = "timing.cache"  # TensorRT's, beside the plans it sped up


def graph_file(precision: str, width: int, flavour: str | None = None) -> str:
    """The bundle-relative path of a width's graph: 'fp32/width4.onnx', 'int8/width4.cpu.onnx'."""
    return f"{precision}/width{width}.{flavour}.onnx" if flavour else f"{precision}/width{width}.onnx"


def engine_dir(engine_key: str) -> str:
    """The bundle-relative folder of one GPU architecture's and TensorRT version's plans: 'engines/sm87-trt10.3.0'."""
    return f"engines/{engine_key}"


def plan_file(engine_key: str, width: int) -> str:
    """The bundle-relative path of a width's TensorRT plan: 'engines/sm87-trt10.3.0/width4.plan'."""
    return f"{engine_dir(engine_key)}/width{width}.plan"
