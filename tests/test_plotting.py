"""Plots a user reads: labels that neither overlap nor leave the figure."""

from itertools import combinations

from edge_mimo.bundle import load_manifest
from edge_mimo.compile.report import plot
from edge_mimo.plotting import pyplot, separate_labels


def boxes(fig, labels) -> list:
    renderer = fig.canvas.get_renderer()
    return [label.get_window_extent(renderer) for label in labels]


def test_labels_of_points_in_one_place_are_stacked_apart():
    fig, ax = pyplot().subplots()
    labels = [ax.annotate(name, (1.0, 1.0), textcoords="offset points", xytext=(5, 5))
              for name in ("robust (n=1)", "width-1 (n=1)", "balanced (n=1)")]
    assert all(a.overlaps(b) for a, b in combinations(boxes(fig, labels), 2))  # as drawn: one on the other
    separate_labels(fig, labels)
    assert not any(a.overlaps(b) for a, b in combinations(boxes(fig, labels), 2))
    pyplot().close(fig)


def test_bundle_plot_labels_each_width_once_inside_the_figure(cpu_bundle):
    """FP32 and INT8 of a width lie almost on one another: one label per width, none clipped by the figure edge
    (the widest-cost width sits at the right edge of the data)."""
    manifest = load_manifest(cpu_bundle)
    fig = plot(manifest, "t")
    labels = fig.axes[0].texts
    assert sorted(t.get_text() for t in labels) == sorted(f"n={n}" for n in manifest.widths)
    figure = fig.bbox
    for box in boxes(fig, labels):
        assert figure.x0 <= box.x0 and box.x1 <= figure.x1 and figure.y0 <= box.y0 and box.y1 <= figure.y1, box
    assert not any(a.overlaps(b) for a, b in combinations(boxes(fig, labels), 2))
    pyplot().close(fig)
