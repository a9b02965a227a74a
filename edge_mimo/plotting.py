"""What every plot shares: matplotlib without a display, and labels that neither overlap nor leave the axes."""

from __future__ import annotations

LABEL_STEP = 10  # points a label moves up while it overlaps another
MARGIN = 0.15  # share of each axis left free around the points, so labels beside them stay inside


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend (PNG files, no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def separate_labels(fig, labels: list) -> None:
    """Move annotations up until none overlaps another in its axes (points that share a place, e.g. two policies
    at one width, get one label each, stacked)."""
    renderer = fig.canvas.get_renderer()
    placed: dict[object, list] = {}
    for label in sorted(labels, key=lambda t: (t.xy[1], t.xy[0])):
        box = label.get_window_extent(renderer)
        others = placed.setdefault(label.axes, [])
        while any(box.overlaps(other) for other in others):
            label.xyann = (label.xyann[0], label.xyann[1] + LABEL_STEP)
            box = label.get_window_extent(renderer)
        others.append(box)
