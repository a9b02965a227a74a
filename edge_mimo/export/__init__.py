"""Per-width ONNX graphs of a superposed classifier (needs torch and onnx)."""

from .onnx import INPUT_NAME, OUTPUT_NAME, export_width, max_abs_difference

__all__ = ["INPUT_NAME", "OUTPUT_NAME", "export_width", "max_abs_difference"]
