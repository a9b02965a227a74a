"""Accuracy of ONNX graphs on ONNX Runtime, temperature and the uncertainty threshold per width."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from ..bundle.names import INPUT_NAME
from ..metrics import entropy, fit_temperature, softmax, summary
from ..packing import pack_groups, unpack_groups
from ..quantize.calibration import normalize

FLAG_RATE = 0.10  # share of validation frames flagged `uncertain`


def onnx_replica_logits(path: str | Path, images: np.ndarray, width: int, mean, std, batch: int = 64,
                        threads: int = 2) -> np.ndarray:
    """Per-replica logits [M, R, K] of uint8 ``images`` through the ONNX graph at ``path``."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    groups, _ = pack_groups(normalize(images, mean, std), width)
    outs = [session.run(None, {INPUT_NAME: groups[i : i + batch]})[0] for i in range(0, len(groups), batch)]
    return unpack_groups(np.concatenate(outs), len(images))


def width_report(fp32: np.ndarray, int8: np.ndarray, labels: np.ndarray) -> dict:
    """Metrics of FP32 and INT8 replica logits [M, R, K], the INT8 drop, temperature and threshold.

    The temperature is fitted on the INT8 prediction (what is deployed). ``entropy_threshold`` is the
    normalised predictive entropy above which a frame is flagged uncertain: the (1 - FLAG_RATE) quantile on
    validation data, so about 10% of in-distribution frames are flagged.
    """
    k = fp32.shape[-1]
    fp_mean, q_mean = fp32.mean(1), int8.mean(1)
    fp_metrics, q_metrics = summary(softmax(fp_mean), labels), summary(softmax(q_mean), labels)
    temperature = fit_temperature(q_mean, labels)
    calibrated = softmax(q_mean, temperature)
    h = entropy(calibrated) / np.log(k)
    threshold = float(np.quantile(h, 1 - FLAG_RATE))
    correct = calibrated.argmax(-1) == labels
    kept = h <= threshold
    return {
        "fp32": fp_metrics, "int8": q_metrics,
        "drop_points": 100.0 * (fp_metrics["accuracy"] - q_metrics["accuracy"]),
        "temperature": temperature,
        "int8_calibrated": summary(calibrated, labels),
        "uncertainty": {"entropy_threshold": threshold, "flag_rate": float((~kept).mean()),
                        "accuracy_kept": float(correct[kept].mean()),
                        "accuracy_flagged": float(correct[~kept].mean()) if (~kept).any() else None},
    }
