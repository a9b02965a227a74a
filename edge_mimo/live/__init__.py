"""The live loop and its parts: classify a :class:`~edge_mimo.streams.StreamMux`'s freshest frames together.

- ``loop.py``: :func:`run` (what ``edge-mimo run`` and the examples call) and its :class:`Summary`.
- ``sources.py``: ``[NAME=]URI`` specs and the sources file re-read while the loop runs.
- ``stats.py``: per-stream rates and counts for status lines.
- ``prometheus.py``: :class:`~edge_mimo.live.prometheus.LiveMetrics`, Prometheus metrics of a run
  (``edge-mimo[metrics]``; imported on its own, never by this package).
- ``mosaic.py``: predictions drawn on frames, all streams tiled into one video (OpenCV).

``from edge_mimo import live; live.run(runtime, mux, on_result)``. Torch-free.
"""

from .loop import OnBatch, OnResult, Summary, run

__all__ = ["run", "Summary", "OnResult", "OnBatch"]
