"""Shipped calibration and validation samples (see make_samples.py and README.md)."""
