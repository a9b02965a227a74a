"""The benchmark: per number of streams and policy, frames/s and latency of ``Runtime.infer_many``
(preprocessing included), the share of each stage, and baselines measured in the same run."""

from __future__ import annotations

import platform
import tempfile
from pathlib import Path

import numpy as np

from ..datasets import shipped_sample
from ..runtime import Runtime
from ..runtime.preprocess import Normalizer, prepare_batch
from .baselines import plain_int8_runner, torch_eager_runner
from .frames import camera_frames
from .timing import measure, summary

POLICIES = ("throughput", "balanced", "robust")


def _stage_shares(runtime: Runtime, frames: list, repeats: int, **call) -> dict:
    """Median milliseconds of preprocessing, inference and demultiplexing inside ``infer_many(frames, **call)``."""
    rows = []
    for _ in range(repeats):
        t = next(iter(runtime.infer_many(frames, **call))).timing
        rows.append((t.preprocess_ms, t.inference_ms, t.postprocess_ms, t.total_ms))
    pre, inf, post, total = np.median(np.array(rows), axis=0)
    return {"preprocess_ms": pre, "inference_ms": inf, "demux_ms": post,
            "preprocess_share": pre / total, "inference_share": inf / total, "demux_share": post / total}


def run_bench(bundle: str | Path, streams: list[int], repeats: int = 20, threads: int = 2,
              baselines: bool = True, log=print) -> dict:
    """Measure everything in one run; returns a JSON-ready dict."""
    runtimes = {p: Runtime(bundle, precision=p, threads=threads) for p in ("int8", "fp32")}
    manifest = runtimes["int8"].manifest
    sample = shipped_sample("validation")
    frames_all = camera_frames(sample.images[: max(streams)])
    result = {"bundle": str(bundle), "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
              "threads": threads, "repeats": repeats, "frame_size": "640x480 BGR",
              "macs_per_image": manifest["macs_per_image"], "runs": []}

    for m in streams:
        frames = frames_all[:m]
        for precision, runtime in runtimes.items():
            for policy in POLICIES:
                plan = runtime.plan(m, policy)
                widths = sorted({g.width for g in plan.groups})
                ms = measure(lambda: runtime.infer_many(frames, policy=policy), repeats)
                row = {"streams": m, "precision": precision, "policy": policy, "passes": plan.cost,
                       "widths": widths, **summary(ms, m)}
                if precision == "int8":
                    row.update(_stage_shares(runtime, frames, max(5, repeats // 2), policy=policy))
                result["runs"].append(row)
                log(f"{m:>3} streams  {precision}  {policy:<10} widths {widths}  {row['fps']:8.1f} frames/s  "
                    f"p50 {row['p50_ms']:.2f} ms  p99 {row['p99_ms']:.2f} ms")
            ms = measure(lambda: runtime.infer_many(frames, width=1), repeats)
            row = {"streams": m, "precision": precision, "policy": "width-1", "passes": m, "widths": [1],
                   **summary(ms, m)}
            if precision == "int8":
                row.update(_stage_shares(runtime, frames, max(5, repeats // 2), width=1))
            result["runs"].append(row)
        if baselines:
            result["runs"] += _baseline_rows(manifest, runtimes["int8"], frames, repeats, threads, log)
    result["ratios"] = ratios(result["runs"], 8 if 8 in streams else max(streams))
    return result


def _baseline_rows(manifest: dict, runtime: Runtime, frames: list, repeats: int, threads: int, log) -> list[dict]:
    """(b) plain WRN INT8 batched and (d) PyTorch eager FP32 width 1, each with the same preprocessing."""
    normalize = Normalizer(runtime.spec)

    def prepared() -> np.ndarray:
        batch, _, _ = prepare_batch(frames, runtime.spec, None)
        return normalize(batch)

    rows = []
    runners = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            calib = shipped_sample("calibration").images[:128]
            runners["plain-wrn-int8"] = plain_int8_runner(manifest, Path(tmp), calib, threads)
    except ImportError as e:
        log(f"plain WideResNet baseline skipped: {e} (install edge-mimo[compile])")
    eager = torch_eager_runner(manifest, threads)
    if eager is not None:
        runners["torch-eager-fp32-width-1"] = eager
    else:
        log("PyTorch eager baseline skipped: torch or the source weights are not available")
    for name, run in runners.items():
        ms = measure(lambda: run(prepared()), repeats)
        rows.append({"streams": len(frames), "precision": "fp32" if "eager" in name else "int8",
                     "policy": name, "passes": len(frames), "widths": [1], **summary(ms, len(frames))})
        log(f"{len(frames):>3} streams  {name:<26} {rows[-1]['fps']:8.1f} frames/s")
    return rows


def ratios(runs: list[dict], streams: int) -> dict:
    """The issue's goals at ``streams`` streams, as measured ratios."""
    at = {(r["precision"], r["policy"]): r for r in runs if r["streams"] == streams}

    def fps(precision: str, policy: str) -> float | None:
        row = at.get((precision, policy))
        return row["fps"] if row else None

    out = {"streams": streams}
    w4, w1 = fps("int8", "throughput"), fps("int8", "width-1")
    out["int8_throughput_vs_int8_width1"] = w4 / w1 if w4 and w1 else None
    inf4, inf1 = (at.get(("int8", p), {}).get("inference_ms") for p in ("throughput", "width-1"))
    out["int8_throughput_vs_int8_width1_inference_only"] = inf1 / inf4 if inf4 and inf1 else None
    eager = at.get(("fp32", "torch-eager-fp32-width-1"))
    out["int8_throughput_vs_torch_eager_width1"] = w4 / eager["fps"] if w4 and eager else None
    plain = at.get(("int8", "plain-wrn-int8"))
    out["int8_throughput_vs_plain_wrn_int8"] = w4 / plain["fps"] if w4 and plain else None
    for policy in (*POLICIES, "width-1"):
        q, f = fps("int8", policy), fps("fp32", policy)
        out[f"int8_vs_fp32_{policy}"] = q / f if q and f else None
    row = at.get(("int8", "throughput"))
    out["preprocess_plus_demux_share"] = row["preprocess_share"] + row["demux_share"] if row else None
    return out
