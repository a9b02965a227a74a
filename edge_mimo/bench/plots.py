"""Scaling and operating-point plots of a benchmark result (PNG, matplotlib Agg)."""

from __future__ import annotations

from pathlib import Path

from ..bundle.manifest import Manifest
from ..plotting import MARGIN, pyplot, separate_labels
from ..runtime.scheduler import POLICIES

def scaling_plot(result: dict, path: Path) -> None:
    """INT8 frames/s against the number of streams, one line per policy (and width 1)."""
    plt = pyplot()
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


def operating_points_plot(result: dict, manifest: Manifest, path: Path) -> None:
    """Accuracy (each bundle's report, INT8) against frames/s and against MMAC per frame, at the ratio streams:
    one point per policy of the bundle, one per ``--compare`` bundle (e.g. plain networks)."""
    plt = pyplot()
    streams = result["ratios"]["streams"]
    validation = manifest.validation.source if manifest.validation else "validation"
    points = []  # (label, fps, mmac, accuracy %)
    for r in result["runs"]:
        if r["streams"] != streams or r["precision"] != "int8":
            continue
        if r["policy"] in (*POLICIES, "width-1"):
            width = max(r["widths"])  # the pass width most frames got
            if width not in manifest.accuracy or width not in manifest.macs_per_image:
                continue  # a bundle without a compile report (early schema-1 bundles)
            acc, macs = manifest.accuracy[width].int8.accuracy, manifest.macs_per_image[width]
            label = f"{r['policy']} (n={width})"
        elif r["policy"].startswith("compare:"):
            acc, macs = r["accuracy"]["1"]["int8"]["accuracy"], r["macs_per_image"]["1"]
            label = r["policy"].removeprefix("compare:")
        else:
            continue
        points.append((label, r["fps"], macs / 1e6, 100 * acc))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    labels = []
    for ax, x, name in ((axes[0], 1, f"frames/s at {streams} streams (INT8, end to end)"),
                        (axes[1], 2, "MMAC per frame")):
        for point in points:
            ax.scatter(point[x], point[3], color="C1" if ":" in point[0] or "plain" in point[0] else "C0")
            labels.append(ax.annotate(point[0], (point[x], point[3]), textcoords="offset points", xytext=(6, 4),
                                      fontsize=8))
        ax.margins(MARGIN)
        ax.set_xlabel(name)
        ax.set_ylabel(f"accuracy (%, INT8, {validation})")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    separate_labels(fig, labels)
    fig.savefig(path, dpi=120)
    plt.close(fig)
