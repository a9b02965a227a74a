"""Accuracy of ONNX graphs on ONNX Runtime, temperature and the uncertainty threshold per width."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from ..bundle.manifest import Metrics, Uncertainty, WidthAccuracy
from ..bundle.names import INPUT_NAME
from ..metrics import entropy, fit_temperature, softmax, summary
from ..runtime.batching import frame_logits

FLAG_RATE = 0.10  # share of validation frames flagged `uncertain`
MAX_CERTAIN_ENTROPY = 0.5  # normalised entropy above which a frame is always `uncertain`, whatever the model


def onnx_frame_logits(path: str | Path, x: np.ndarray, width: int, capacity: int, threads: int = 2) -> np.ndarray:
    """Replica-averaged logits [M, K] of model inputs ``x`` (:func:`edge_mimo.runtime.batching.model_inputs`)
    through the ONNX graph at ``path``, packed as the runtime packs them."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return frame_logits(lambda n, g: session.run(None, {INPUT_NAME: g})[0], x, width, capacity)


def width_report(fp32: np.ndarray, int8: np.ndarray, labels: np.ndarray,
                 fp32_max_abs_diff_vs_torch: float | None = None) -> WidthAccuracy:
    """Metrics of FP32 and INT8 replica-averaged logits [M, K], the INT8 drop, temperature and threshold.

    The temperature is fitted on the INT8 prediction (what is deployed), and kept at 1 when it would raise the
    validation ECE. ``entropy_threshold`` is the normalised predictive entropy above which a frame is flagged
    uncertain: the (1 - FLAG_RATE) quantile on validation data, so about 10% of in-distribution frames are
    flagged, but never above MAX_CERTAIN_ENTROPY (a weak model flags more than 10%).
    """
    k = fp32.shape[-1]
    fp_mean, q_mean = fp32, int8
    fp_metrics, q_metrics = summary(softmax(fp_mean), labels), summary(softmax(q_mean), labels)
    temperature = fit_temperature(q_mean, labels)
    if summary(softmax(q_mean, temperature), labels)["ece"] > q_metrics["ece"]:
        temperature = 1.0  # the fit made validation calibration worse: not applied
    calibrated = softmax(q_mean, temperature)
    h = entropy(calibrated) / np.log(k)
    threshold = min(float(np.quantile(h, 1 - FLAG_RATE)), MAX_CERTAIN_ENTROPY)
    correct = calibrated.argmax(-1) == labels
    kept = h <= threshold
    return WidthAccuracy(
        fp32=Metrics(**fp_metrics), int8=Metrics(**q_metrics),
        drop_points=100.0 * (fp_metrics["accuracy"] - q_metrics["accuracy"]), temperature=temperature,
        int8_calibrated=Metrics(**summary(calibrated, labels)),
        uncertainty=Uncertainty(entropy_threshold=threshold, flag_rate=float((~kept).mean()),
                                accuracy_kept=float(correct[kept].mean()) if kept.any() else None,
                                accuracy_flagged=float(correct[~kept].mean()) if (~kept).any() else None),
        fp32_max_abs_diff_vs_torch=fp32_max_abs_diff_vs_torch,
    )
