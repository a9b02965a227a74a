"""INT8 post-training quantization, one flavour per backend.

- ``cpu``: what runs fastest on ONNX Runtime's CPU provider: U8 activations, S8 per-channel weights, QDQ
  format (ORT fuses the Q/DQ pairs into integer kernels at load), after ORT's pre-processing (shape
  inference, BatchNorm folding where a Conv precedes it).
- ``tensorrt``: TensorRT's explicit quantization: symmetric S8 Q/DQ (zero point 0) for activations and
  per-channel S8 weights. NVIDIA ModelOpt's ONNX PTQ places the Q/DQ nodes by TensorRT's rules and is used
  when it is installed; otherwise ONNX Runtime's quantizer with symmetric settings. The manifest records which.
"""

from __future__ import annotations

import importlib.util
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.calibrate import create_calibrator, save_tensors_data
from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry
from onnxruntime.quantization.shape_inference import quant_pre_process

from ..bundle.manifest import sha256_file
from ..bundle.names import INPUT_NAME
from ..errors import CalibrationCacheError, ConfigError
from .cache import CalibrationCache
from .readers import GroupReader, calibration_groups

log = logging.getLogger(__name__)

METHODS = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
           "percentile": CalibrationMethod.Percentile}
# Calibrator settings per method. ONNX Runtime's entropy default (a 128-bin histogram for 128 quantized bins) leaves
# the KL search a single candidate, the full range: min-max under another name. 1024 bins give it 448 candidate
# clipping ranges (TensorRT's KL calibration uses 2048; 1024 takes a quarter of the time at this model size).
CALIBRATOR_OPTIONS = {"minmax": {}, "entropy": {"num_bins": 1024, "num_quantized_bins": 128}, "percentile": {}}

# Operators ONNX Runtime's quantizer can quantize, less the normalisations, which edge-mimo keeps in float: ONNX
# Runtime's CPU provider has no INT8 LayerNorm, so quantizing them only adds Q/DQ pairs around a float op (measured on MIMOFormer: the same accuracy within 0.3 points and speed within 5 %), and their 1-D weights
# make ORT's per-channel quantizer print a warning per node. MIMOFormer's projections, MLP and FAVOR+ feature maps
# (MatMul, Add, Mul, Conv) run as ORT QLinear kernels; its LayerNorms, the FAVOR+ normaliser (Div, ReduceSum) and the
# token pooling (ReduceMean) stay float between DequantizeLinear and QuantizeLinear.
FLOAT_OPS = frozenset({"LayerNormalization", "InstanceNormalization", "Softmax"})
QUANTIZED_OPS = sorted((set(QLinearOpsRegistry) | set(QDQRegistry)) - FLOAT_OPS)

FLAVOURS = {
    "cpu": dict(activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, extra_options={}),
    "tensorrt": dict(activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                     # Biases stay float: TensorRT fuses them into its INT8 kernels and parses no INT32 DQ.
                     extra_options={"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False}),
}


def modelopt_available() -> bool:
    """True when NVIDIA ModelOpt is installed (TensorRT-flavour PTQ then uses it)."""
    return importlib.util.find_spec("modelopt") is not None


def _tool(flavour: str) -> str:
    if flavour == "tensorrt" and modelopt_available():
        from importlib.metadata import version

        return f"nvidia-modelopt {version('nvidia-modelopt')}"
    return f"onnxruntime {onnxruntime.__version__}"


def _quantize_modelopt(fp32: Path, out: Path, images: np.ndarray, width: int, mean, std, method: str) -> None:
    """TensorRT-flavour PTQ with NVIDIA ModelOpt (``modelopt.onnx.quantization.quantize``)."""
    from modelopt.onnx.quantization import quantize

    groups = calibration_groups(images, width, mean, std)
    quantize(onnx_path=str(fp32), quantize_mode="int8", calibration_data={INPUT_NAME: groups},
             calibration_method={"minmax": "max", "entropy": "entropy"}.get(method, "max"),
             output_path=str(out))


def calibrate(graph: Path, reader: GroupReader, method: str, ranges: Path) -> None:
    """Tensor ranges of ``graph`` over ``reader``'s groups by ``method``, saved as ONNX Runtime's calibration cache."""
    with tempfile.TemporaryDirectory() as tmp:
        calibrator = create_calibrator(graph, augmented_model_path=str(Path(tmp) / "augmented.onnx"),
                                       calibrate_method=METHODS[method], extra_options=CALIBRATOR_OPTIONS[method])
        calibrator.collect_data(reader)
        save_tensors_data(calibrator.compute_data(), ranges)


def _tensor_names(graph: Path) -> set[str]:
    """Every tensor a calibrator may give a range: the graph's inputs, initializers and node outputs."""
    g = onnx.load(str(graph), load_external_data=False).graph
    return {v.name for v in g.input} | {t.name for t in g.initializer} | {o for n in g.node for o in n.output}


@dataclass(frozen=True)
class QuantizeResult:
    """What :func:`quantize_width` did, for the manifest's ``quantization`` section."""

    flavour: str
    method: str
    tool: str
    calibration_images: int
    cache: str  # "hit", "miss", "off", or what was wrong with a discarded entry
    per_channel: bool = True

    @property
    def symmetric_activations(self) -> bool:
        return self.flavour == "tensorrt"


def quantize_width(
    fp32: str | Path, out: str | Path, images: np.ndarray, width: int, mean, std, *,
    data_sha256: str, method: str = "minmax", flavour: str = "cpu",
    cache: CalibrationCache | None = None,
) -> QuantizeResult:
    """Quantize the width-``width`` graph ``fp32`` into ``out``; returns what was done (for the manifest)."""
    if method not in METHODS:
        raise ConfigError(f"calibration method {method!r} is unknown: choose one of {', '.join(METHODS)}")
    if flavour not in FLAVOURS:
        raise ConfigError(f"quantization flavour {flavour!r} is unknown: choose one of {', '.join(FLAVOURS)}")
    fp32, out = Path(fp32), Path(out)
    tool = _tool(flavour)
    done = dict(flavour=flavour, method=method, tool=tool, calibration_images=int(len(images)))
    if tool.startswith("nvidia-modelopt"):
        _quantize_modelopt(fp32, out, images, width, mean, std, method)
        return QuantizeResult(**done, cache="not used (ModelOpt calibrates itself)")

    settings = "".join(f" {k}={v}" for k, v in CALIBRATOR_OPTIONS[method].items())  # entries of other settings miss
    fields = CalibrationCache.key_fields(sha256_file(fp32), data_sha256, width, method, flavour, tool + settings)
    ranges, status = None, "off"
    spec = FLAVOURS[flavour]
    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
        if cache is not None:
            try:
                ranges = cache.lookup(fields, _tensor_names(pre))
                status = "hit" if ranges else "miss"
            except CalibrationCacheError as e:
                cache.discard(fields)
                log.warning("%s: recalibrating", e)
                status = f"discarded a damaged entry and recalibrated: {e}"
        fresh = Path(tmp) / "ranges.json"
        if ranges is None:
            calibrate(pre, GroupReader(images, width, mean, std), method, fresh)
        quantize_static(
            str(pre), str(out),
            calibration_data_reader=None,
            quant_format=QuantFormat.QDQ, per_channel=True, calibrate_method=METHODS[method],
            op_types_to_quantize=QUANTIZED_OPS,
            activation_type=spec["activation_type"], weight_type=spec["weight_type"],
            extra_options=dict(spec["extra_options"]),
            calibration_cache_path=str(ranges or fresh),
        )
        if cache is not None and ranges is None:
            cache.store(fields, fresh)
    return QuantizeResult(**done, cache=status)
