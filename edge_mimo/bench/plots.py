"""Scaling and operating-point plots of a benchmark result (PNG, matplotlib Agg)."""

from __future__ import annotations

from pathlib import Path

from ..runtime.scheduler import POLICIES


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


def operating_points_plot(result: dict, manifest: dict, path: Path) -> None:
    """Validation accuracy (bundle report, INT8) against frames/s, one point per policy, at the ratio streams."""
    plt = _pyplot()
    streams = result["ratios"]["streams"]
    fig, ax = plt.subplots(figsize=(6, 4))
    for r in result["runs"]:
        if r["streams"] != streams or r["precision"] != "int8" or r["policy"] not in (*POLICIES, "width-1"):
            continue
        width = max(r["widths"])  # the pass width most frames got
        acc = 100 * manifest["accuracy"][str(width)]["int8"]["accuracy"]
        ax.scatter(r["fps"], acc)
        ax.annotate(f"{r['policy']} (n={width})", (r["fps"], acc), textcoords="offset points", xytext=(5, 4),
                    fontsize=8)
    ax.set_xlabel(f"frames/s at {streams} streams (INT8)")
    ax.set_ylabel("validation accuracy (%)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
