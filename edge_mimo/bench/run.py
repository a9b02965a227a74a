"""The benchmark: per number of streams and policy, frames/s and latency of ``Runtime.infer_many``
(preprocessing included), the share of each stage, and baselines measured in the same run."""

from __future__ import annotations

import logging
import platform
import tempfile
from pathlib import Path

import numpy as np

from ..bundle.manifest import Manifest
from ..errors import ConfigError
from ..datasets import shipped_sample
from ..runtime import Runtime
from ..runtime.preprocess import Normalizer, prepare_batch
from ..runtime.scheduler import POLICIES
from .baselines import plain_int8_runner, torch_eager_runner
from ..camera.frames import camera_frames
from .timing import measure_interleaved, summary

logger = logging.getLogger(__name__)


def _stage_shares(timings: list) -> dict:
    """Median milliseconds of preprocessing, inference and demultiplexing from ``infer_many``'s own timings."""
    rows = np.array([(t.preprocess_ms, t.inference_ms, t.postprocess_ms, t.total_ms) for t in timings])
    pre, inf, post, total = np.median(rows, axis=0)
    return {"preprocess_ms": pre, "inference_ms": inf, "demux_ms": post,
            "preprocess_share": pre / total, "inference_share": inf / total, "demux_share": post / total}


def _report(manifest: Manifest) -> dict:
    """A compared bundle's figures for bench.json and the operating-point plot, in the manifest's JSON form."""
    doc = manifest.to_dict()
    return {"macs_per_image": doc.get("macs_per_image", {}), "accuracy": doc.get("accuracy", {}),
            "validation": doc.get("validation")}


def _baseline_runners(manifest: Manifest, threads: int) -> dict:
    """(b) the plain equivalent INT8, batched, and (d) PyTorch eager FP32 width 1: name -> run(inputs [M, C, H, W])."""
    runners = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            calib = shipped_sample("calibration").images[:128]
            runners["plain-int8"] = plain_int8_runner(manifest, Path(tmp), calib, threads)
    except ImportError as e:
        logger.warning("plain-network baseline skipped: %s (install edge-mimo[compile])", e)
    eager = torch_eager_runner(manifest, threads)
    if eager is not None:
        runners["torch-eager-fp32-width-1"] = eager
    else:
        logger.warning("PyTorch eager baseline skipped: torch or the source weights are not available")
    return runners


def run_bench(bundle: str | Path, streams: list[int], repeats: int = 20, threads: int = 2,
              baselines: bool = True, compare: list[str | Path] = (), in_graph: str | Path | None = None) -> dict:
    """Measure everything in one run; returns a JSON-ready dict.

    For each number of streams, the configurations take turns in rounds of short bursts
    (:func:`measure_interleaved`), so a slow spell of a shared machine hits all of them alike and the ratios hold.
    ``compare``: other bundles (e.g. trained plain networks) timed end to end, INT8, in the same rounds.
    ``in_graph``: the same model compiled with ``--in-graph`` (uint8 crop in, preprocessing as graph operators),
    timed INT8 in the same rounds at the ``throughput`` policy and width 1 (rows ``in-graph:throughput`` and
    ``in-graph:width-1``), so the two preprocessing paths are compared side by side.
    """
    runtimes = {p: Runtime(bundle, precision=p, threads=threads) for p in ("int8", "fp32")}
    others = {f"compare:{Path(b).name}": Runtime(b, precision="int8", threads=threads) for b in compare}
    graph_rt = Runtime(in_graph, precision="int8", threads=threads) if in_graph is not None else None
    if graph_rt is not None and not graph_rt.in_graph:
        raise ConfigError(f"--in-graph {in_graph} is not an in-graph bundle: compile it with `edge-mimo compile "
                          "--in-graph`")
    manifest = runtimes["int8"].manifest
    spec = runtimes["int8"].spec
    normalize = Normalizer(spec)
    runners = _baseline_runners(manifest, threads) if baselines else {}
    frames_all = camera_frames(shipped_sample("validation").images[: max(streams)])
    result = {"bundle": str(bundle), "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
              "threads": threads, "repeats": repeats, "frame_size": "640x480 BGR",
              "method": "interleaved rounds of 5-call bursts",
              "macs_per_image": {str(n): v for n, v in manifest.macs_per_image.items()}, "runs": []}

    for m in streams:
        frames = frames_all[:m]
        cases, rows = {}, {}
        for precision, runtime in runtimes.items():
            for policy in (*POLICIES, "width-1"):
                call = {"width": 1} if policy == "width-1" else {"policy": policy}
                plan = runtime.plan(m, **call)
                cases[(precision, policy)] = lambda rt=runtime, call=call: rt.infer_many(frames, **call)[0].timing
                rows[(precision, policy)] = {"streams": m, "precision": precision, "policy": policy,
                                             "passes": plan.cost, "widths": sorted({g.width for g in plan.groups})}
        for name, rt in others.items():
            cases[("int8", name)] = lambda rt=rt: rt.infer_many(frames)[0].timing
            planned = rt.plan(m)
            rows[("int8", name)] = {"streams": m, "precision": "int8", "policy": name, "passes": planned.cost,
                                    "widths": sorted({g.width for g in planned.groups}),
                                    "bundle": str(rt.bundle), **_report(rt.manifest)}
        if graph_rt is not None:
            for policy in ("throughput", "width-1"):
                call = {"width": 1} if policy == "width-1" else {"policy": policy}
                planned = graph_rt.plan(m, **call)
                cases[("int8", f"in-graph:{policy}")] = lambda call=call: graph_rt.infer_many(frames, **call)[0].timing
                rows[("int8", f"in-graph:{policy}")] = {
                    "streams": m, "precision": "int8", "policy": f"in-graph:{policy}", "passes": planned.cost,
                    "widths": sorted({g.width for g in planned.groups}), "bundle": str(graph_rt.bundle),
                    "graph_input": list(graph_rt.spec.tensor_shape)}
        for name, run in runners.items():
            precision = "fp32" if "eager" in name else "int8"
            cases[(precision, name)] = lambda run=run: run(normalize(prepare_batch(frames, spec, None)[0]))
            rows[(precision, name)] = {"streams": m, "precision": precision, "policy": name, "passes": m,
                                       "widths": [1]}
        times, returned = measure_interleaved(cases, repeats)
        for key, row in rows.items():
            row.update(summary(times[key], m))
            if key[0] == "int8" and key[1].removeprefix("in-graph:") in (*POLICIES, "width-1"):
                row.update(_stage_shares(returned[key]))
            result["runs"].append(row)
            logger.info("%3d streams  %s  %-26s widths %s  %8.1f frames/s  p50 %.2f ms  p99 %.2f ms", m,
                        row["precision"], row["policy"], row["widths"], row["fps"], row["p50_ms"], row["p99_ms"])
    result["ratios"] = ratios(result["runs"], 8 if 8 in streams else max(streams))
    return result


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
    plain = at.get(("int8", "plain-int8"))
    out["int8_throughput_vs_plain_int8"] = w4 / plain["fps"] if w4 and plain else None
    for policy in (*POLICIES, "width-1"):
        q, f = fps("int8", policy), fps("fp32", policy)
        out[f"int8_vs_fp32_{policy}"] = q / f if q and f else None
    row = at.get(("int8", "throughput"))
    out["preprocess_plus_demux_share"] = row["preprocess_share"] + row["demux_share"] if row else None
    # the two preprocessing paths side by side (in-graph rows only when bench ran with --in-graph)
    for label, prefix in (("numpy", ""), ("in_graph", "in-graph:")):
        w4, w1 = fps("int8", f"{prefix}throughput"), fps("int8", f"{prefix}width-1")
        out[f"{label}_end_to_end_width4_vs_width1"] = w4 / w1 if w4 and w1 else None
        row = at.get(("int8", f"{prefix}throughput"))
        out[f"{label}_outside_passes_share"] = 1.0 - row["inference_share"] if row and "inference_share" in row else None
    w4n, w4g = fps("int8", "throughput"), fps("int8", "in-graph:throughput")
    out["in_graph_vs_numpy_throughput_fps"] = w4g / w4n if w4n and w4g else None
    return out


# The ratios whose direction the design fixes (each > 1 at 8 streams), with what each one says.
DIRECTIONS = {
    "int8_throughput_vs_int8_width1": "superposed (throughput) faster than width 1, end to end",
    "int8_throughput_vs_int8_width1_inference_only": "superposed passes faster than width-1 passes",
    "int8_throughput_vs_torch_eager_width1": "INT8 superposed faster than PyTorch eager",
    "int8_throughput_vs_plain_int8": "superposed faster than a plain WideResNet of the same trunk",
    "int8_vs_fp32_throughput": "INT8 faster than FP32 (throughput)",
    "int8_vs_fp32_width-1": "INT8 faster than FP32 (width 1)",
}


def direction_checks(ratios: dict) -> list[tuple[str, float | None, bool]]:
    """(what the design says, the measured ratio, whether it holds) for each ratio in :data:`DIRECTIONS` measured
    in this run (a ratio that could not be measured, e.g. without baselines, is left out)."""
    return [(claim, ratios[key], ratios[key] > 1) for key, claim in DIRECTIONS.items()
            if ratios.get(key) is not None]

