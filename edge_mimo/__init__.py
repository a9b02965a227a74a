"""edge-mimo: superposed (MIMO) image classifiers on edge devices."""

__version__ = "0.1.0"
