"""Baselines measured beside the superposed bundle: a plain WideResNet in INT8, and PyTorch eager FP32."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort

from ..bundle.manifest import Manifest
from ..bundle.names import INPUT_NAME
from ..engines import session_options
from ..models.config import WEIGHTS_FILE


def plain_int8_runner(manifest: Manifest, workdir: Path, calibration: np.ndarray, threads: int) -> Callable:
    """The bundle's network without superposition (a plain WRN with its trunk, or a capacity-1 MIMOFormer of its
    size), exported and INT8-quantized like the bundle.

    Its weights are randomly initialised: it is a speed baseline only (its accuracy is not measured).
    Returns ``run(x)`` for normalised inputs [M, C, H, W].
    """
    import torch  # the compile extra; ImportError tells the caller to skip this baseline

    from ..export import export_width
    from ..models import plain_equivalent
    from ..quantize import quantize_width  # onnx: the compile extra

    torch.manual_seed(0)
    cfg = manifest.model
    model = plain_equivalent(cfg).eval()
    fp32, int8 = workdir / "plain_fp32.onnx", workdir / "plain_int8.onnx"
    export_width(model, 1, fp32)
    quantize_width(fp32, int8, calibration, 1, cfg.mean, cfg.std, data_sha256="bench",
                   flavour=manifest.quantization.flavour if manifest.quantization else "cpu")
    session = ort.InferenceSession(str(int8), session_options(threads), providers=["CPUExecutionProvider"])
    return lambda x: session.run(None, {INPUT_NAME: x[:, None]})[0]


def torch_eager_runner(manifest: Manifest, threads: int) -> Callable | None:
    """The bundle's source model in PyTorch eager FP32 at width 1, or None when torch or the weights are absent."""
    try:
        import torch

        from ..models.weights import load_model
    except ImportError:
        return None
    source = Path(manifest.model_source or "")
    if not manifest.model_source or not (source / WEIGHTS_FILE).is_file():
        return None
    torch.set_num_threads(threads)
    model = load_model(source)

    def run(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model(torch.from_numpy(x[:, None])).numpy()

    return run
