"""The bundle's human-readable report and operating-point plot."""

from __future__ import annotations

from pathlib import Path

from ..bundle.manifest import Manifest
from ..plotting import MARGIN, pyplot, separate_labels


def write_plot(path: Path, manifest: Manifest, title: str) -> None:
    """Accuracy (FP32 and INT8) against MMAC per image, one point per width, as a PNG."""
    fig = plot(manifest, title)
    fig.savefig(path, dpi=120)
    pyplot().close(fig)


def plot(manifest: Manifest, title: str):
    """The figure of :func:`write_plot` (its labels placed: none overlaps another or leaves the figure)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 4))
    widths = manifest.widths
    xs = [manifest.macs_per_image[n] / 1e6 for n in widths]
    for precision, marker in (("fp32", "o"), ("int8", "s")):
        ys = [100 * getattr(manifest.accuracy[n], precision).accuracy for n in widths]
        ax.plot(xs, ys, marker=marker, label=precision.upper())
    tops = [100 * max(manifest.accuracy[n].fp32.accuracy, manifest.accuracy[n].int8.accuracy) for n in widths]
    labels = [ax.annotate(f"n={n}", (x, y), textcoords="offset points", xytext=(5, 5), fontsize=8)
              for n, x, y in zip(widths, xs, tops)]  # one label per width, above the higher of its two points
    ax.margins(MARGIN)
    ax.set_xlabel("MMAC per image")
    ax.set_ylabel("validation accuracy (%)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    separate_labels(fig, labels)
    return fig


def render(manifest: Manifest) -> str:
    """report.md for a bundle written by this compile (every section present)."""
    q, target, val = manifest.quantization, manifest.target, manifest.validation
    lines = [
        f"# edge-mimo bundle: {manifest.model.arch} N={manifest.model.capacity} for {target.name}",
        "",
        f"- created {manifest.created} by edge-mimo {manifest.edge_mimo_version}",
        f"- backend {target.backend}; INT8 flavour `{q.flavour}` by {q.tool}, calibration "
        f"{q.method} on {q.calibration_images} images (data sha256 {q.calibration_sha256[:12]}…)",
        f"- validation: {val.source} ({val.images} images)",
        f"- engines: {manifest.engines_note}",
        "",
        "| width | MMAC/image | FP32 acc | INT8 acc | drop (pts) | FP32 NLL | INT8 NLL | INT8 ECE | T | ECE after T "
        "| uncertain if entropy > | accuracy on kept / on flagged frames |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for n in manifest.widths:
        a = manifest.accuracy[n]
        u = a.uncertainty
        flagged = "-" if u.accuracy_flagged is None else f"{100 * u.accuracy_flagged:.1f}%"
        kept = "-" if u.accuracy_kept is None else f"{100 * u.accuracy_kept:.1f}%"
        lines.append(
            f"| {n} | {manifest.macs_per_image[n] / 1e6:.1f} | {100 * a.fp32.accuracy:.2f}% "
            f"| {100 * a.int8.accuracy:.2f}% | {a.drop_points:+.2f} | {a.fp32.nll:.3f} "
            f"| {a.int8.nll:.3f} | {a.int8.ece:.4f} | {a.temperature:.3f} "
            f"| {a.int8_calibrated.ece:.4f} | {u.entropy_threshold:.3f} "
            f"| {kept} / {flagged} |"
        )
    lines += ["", "![operating points](operating_points.png)", ""]
    return "\n".join(lines)
