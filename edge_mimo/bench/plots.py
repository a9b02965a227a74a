"""Scaling and operating-point plots of a benchmark result (PNG, matplotlib Agg)."""

from __future__ import annotations

from pathlib import Path

from ..bundle.manifest import Manifest
from .run import POLICIES

LABEL_STEP = 10  # points a label moves up while it overlaps another


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def scaling_plot(result: dict, path: Path) -> None:
    """INT8 frames/s against the number of streams, one line per policy (and width 1)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for policy in (*POLICIES, "width-1"):
        rows = sorted((r for r in result["runs"] if r["precision"] == "int8" and r["policy"] == policy),
                      key=lambda r: r["streams"])
        ax.plot([r["streams"] for r in rows], [r["fps"] for r in rows], marker="o", label=policy)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("streams per infer_many call")
    ax.set_ylabel("frames/s (INT8, end to end)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _separate(fig, labels: list) -> None:
    """Move annotations up until none overlaps another (policies at one width share a point's accuracy)."""
    renderer = fig.canvas.get_renderer()
    placed = []
    for label in sorted(labels, key=lambda t: (t.xy[1], t.xy[0])):
        box = label.get_window_extent(renderer)
        while any(box.overlaps(other) for other in placed):
            label.xyann = (label.xyann[0], label.xyann[1] + LABEL_STEP)
            box = label.get_window_extent(renderer)
        placed.append(box)


def operating_points_plot(result: dict, manifest: Manifest, path: Path) -> None:
    """Validation accuracy (bundle report, INT8) against frames/s, one point per policy, at the ratio streams."""
    plt = _pyplot()
    streams = result["ratios"]["streams"]
    fig, ax = plt.subplots(figsize=(6, 4))
    labels = []
    for r in result["runs"]:
        if r["streams"] != streams or r["precision"] != "int8" or r["policy"] not in (*POLICIES, "width-1"):
            continue
        width = max(r["widths"])  # the pass width most frames got
        report = manifest.accuracy.get(width)
        if report is None:  # a bundle without a compile report (early schema-1 bundles)
            continue
        acc = 100 * report.int8.accuracy
        ax.scatter(r["fps"], acc)
        labels.append(ax.annotate(f"{r['policy']} (n={width})", (r["fps"], acc), textcoords="offset points",
                                  xytext=(5, 4), fontsize=8))
    ax.set_xlabel(f"frames/s at {streams} streams (INT8)")
    ax.set_ylabel("validation accuracy (%)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    _separate(fig, labels)
    fig.savefig(path, dpi=120)
    plt.close(fig)
