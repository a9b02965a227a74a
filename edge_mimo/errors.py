"""One error hierarchy: every message names the problem and the fix."""


class EdgeMimoError(Exception):
    """Base class of every error edge-mimo raises on purpose."""


class ConfigError(EdgeMimoError, ValueError):
    """A bad option, target profile or model configuration."""


class DataError(EdgeMimoError, ValueError):
    """A dataset, calibration set or validation set that cannot be used."""


class NotFoundError(EdgeMimoError, FileNotFoundError):
    """A file or folder the user named (a model directory, a dataset, a model repository) that is not there."""


class BundleError(EdgeMimoError):
    """A bundle that cannot be loaded."""


class BundleIntegrityError(BundleError):
    """A bundle file is missing, truncated or altered (sha256 mismatch)."""


class BundleVersionError(BundleError):
    """A bundle written by an incompatible (newer) edge-mimo."""


class EngineMismatchError(BundleError):
    """A TensorRT plan built for another GPU architecture or TensorRT version."""


class EngineBuildError(EdgeMimoError):
    """TensorRT could not parse a graph or build an engine from it."""


class ExportError(EdgeMimoError):
    """An exported ONNX graph does not compute what the PyTorch model computes."""


class BackendUnavailableError(EdgeMimoError):
    """The requested backend (TensorRT, a GPU) is not present on this machine."""


class CacheEntryError(EdgeMimoError):
    """An entry of a keyed cache (``keyed_cache.py``: calibration ranges, TensorRT plans) that is damaged,
    doubtful or does not match its key: recomputed, never reused."""


class CalibrationCacheError(CacheEntryError):
    """A calibration cache entry that is corrupt or does not match its key."""


class AccuracyGateError(EdgeMimoError):
    """INT8 lost more accuracy than allowed; compile refuses to write the bundle."""


class FrameError(EdgeMimoError, ValueError):
    """A frame that cannot be classified (None, empty, wrong dtype/shape, NaN). Affects only its stream."""


class StreamError(EdgeMimoError):
    """A camera or video source that cannot be opened or read."""
