"""The Fashion-MNIST calibration and validation samples shipped with edge-mimo (recipe: make_samples.py)."""
