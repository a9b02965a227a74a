"""Serving a bundle with NVIDIA Triton Inference Server (docs/serving.md).

:mod:`.repo` writes a model repository (``edge-mimo export-triton``); :mod:`.backend` is the packing model that
runs inside Triton's Python backend; :mod:`.bls` and :mod:`.engine_model` serve the graphs as Triton models of
their own; :mod:`.server` starts a local tritonserver from the ``nvidia-pytriton`` wheel (tests, benchmark).
Nothing here imports Triton's modules until it runs inside the server.
"""
