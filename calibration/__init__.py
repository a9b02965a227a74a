"""Samples shipped with edge-mimo: Fashion-MNIST calibration and validation images, out-of-distribution digits
(installed as ``edge_mimo.calibration``; recipe: make_samples.py)."""
