"""INT8 post-training quantization of the per-width graphs, with a calibration cache."""

from .cache import CalibrationCache
from .readers import GroupReader, data_hash
from .ptq import FLAVOURS, METHODS, QuantizeResult, quantize_width

__all__ = ["CalibrationCache", "GroupReader", "data_hash", "FLAVOURS", "METHODS", "QuantizeResult", "quantize_width"]
