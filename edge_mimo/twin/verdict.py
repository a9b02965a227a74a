"""Superposition against its equal-cost plain twin, per width: the deltas a user weighs, and a verdict."""

from __future__ import annotations

# What "pays" means, per width: accuracy (clean and on camera frames) within this many points of the twin,
# OOD AUROC not more than this below it, and frames/s at least this share of the twin's (or, when not measured,
# MACs per frame at most the twin's plus 5 %).
MAX_ACCURACY_LOSS = 1.0
MAX_AUROC_LOSS = 0.005
MIN_SPEED_SHARE = 0.95


def compare(mimo: dict, twin: dict, fps: dict[str, float] | None = None) -> list[dict]:
    """One row per policy of the superposed model: its deltas against the twin's single operating point.

    ``mimo`` / ``twin``: :func:`~edge_mimo.twin.assess.assess_bundle` results; ``fps``: frames/s keyed by the
    superposed model's policy names and ``"twin"`` (optional: speed is measured on a quiet machine only).
    """
    twin_cam = twin["camera"]["throughput"]
    twin_acc, twin_macs = twin["clean"]["throughput"], twin["macs_per_frame"][1]
    rows = []
    for policy, cam in mimo["camera"].items():
        width = cam["width"]
        row = {
            "policy": policy, "width": width, "replicas": mimo["capacity"] // width,
            "cost_ratio": mimo["macs_per_frame"][width] / twin_macs,
            "accuracy_delta": 100 * (mimo["clean"][policy] - twin_acc),
            "camera_delta": 100 * (cam["accuracy"] - twin_cam["accuracy"]),
            "auroc_delta": (cam["auroc"] - twin_cam["auroc"]) if cam["auroc"] is not None
            and twin_cam["auroc"] is not None else None,
            "size_ratio": mimo["int8_bytes"][width] / twin["int8_bytes"][1],
            "speed_ratio": fps[policy] / fps["twin"] if fps and policy in fps and "twin" in fps else None,
        }
        row["misses"] = _misses(row)
        row["pays"] = not row["misses"]
        rows.append(row)
    return rows


def _misses(row: dict) -> list[str]:
    misses = []
    if row["accuracy_delta"] < -MAX_ACCURACY_LOSS:
        misses.append(f"clean accuracy {row['accuracy_delta']:+.2f} points")
    if row["camera_delta"] < -MAX_ACCURACY_LOSS:
        misses.append(f"camera-frame accuracy {row['camera_delta']:+.2f} points")
    if row["auroc_delta"] is not None and row["auroc_delta"] < -MAX_AUROC_LOSS:
        misses.append(f"OOD AUROC {row['auroc_delta']:+.3f}")
    if row["speed_ratio"] is not None:
        if row["speed_ratio"] < MIN_SPEED_SHARE:
            misses.append(f"{row['speed_ratio']:.2f}x the twin's frames/s")
    elif row["cost_ratio"] > 1.05:
        misses.append(f"{row['cost_ratio']:.1f}x the twin's MACs per frame")
    return misses


def markdown(rows: list[dict], title: str) -> str:
    """The verdict table."""
    def num(v, fmt):
        return "n/a" if v is None else format(v, fmt)

    lines = [f"### {title}", "",
             "| policy (width x replicas) | MACs/frame vs twin | clean Δ (points) | camera Δ (points) | AUROC Δ "
             "| frames/s vs twin | INT8 graph size vs twin | verdict |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        verdict = "**pays**" if r["pays"] else "does not pay: " + "; ".join(r["misses"])
        lines.append(f"| {r['policy']} ({r['width']} x {r['replicas']}) | {r['cost_ratio']:.2f}x "
                     f"| {r['accuracy_delta']:+.2f} | {r['camera_delta']:+.2f} | {num(r['auroc_delta'], '+.3f')} "
                     f"| {num(r['speed_ratio'], '.2f')}{'x' if r['speed_ratio'] is not None else ''} "
                     f"| {r['size_ratio']:.2f}x | {verdict} |")
    return "\n".join(lines)
