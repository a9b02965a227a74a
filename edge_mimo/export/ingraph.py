"""Preprocessing inside the graph: a uint8 crop in, the model's logits out (``compile --in-graph``).

The prepended operators (float32, never quantized: they are added after quantization):

    images uint8 [B, n, S_h, S_w, 3] (BGR, NHWC: the crop as the camera gives it)
      -> Cast(float)                    TensorRT's rule: a uint8 network input feeds a Cast directly
      -> Reshape [B*n, S_h, S_w, 3] -> Transpose [B*n, 3, S_h, S_w]
      -> AveragePool k_h x k_w, stride k  exact area averaging: S = k * model size
      -> Conv 1x1 (3 -> C)              colour (BT.601 grey, or BGR -> RGB) and normalisation (x/255 - mean)/std
      -> Reshape [B, n, C, H, W]        the exported model's input, then the model (FP32 or its INT8 Q/DQ graph)

Averaging and a 1x1 convolution are both linear, so pooling first (on 3 channels) then converting computes
exactly ``Normalizer(prepare_frame(crop))`` up to the uint8 rounding the numpy path does after its colour
conversion and resize (within 1/255 of a pixel before normalisation). The weights are OpenCV's BGR2GRAY ones
(0.114, 0.587, 0.299), which the numpy path uses. Built with ``onnx.helper`` and ``onnx.compose.merge_models``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, compose, helper, numpy_helper

from ..bundle.names import INPUT_NAME

BT601_BGR = (0.114, 0.587, 0.299)  # OpenCV's COLOR_BGR2GRAY weights, in B, G, R order
PREFIX = "pre_"


def colour_weights(color: str, mean, std) -> tuple[np.ndarray, np.ndarray]:
    """The 1x1 conv (weight [C, 3, 1, 1], bias [C]) taking BGR 0..255 pixels to the normalised model input."""
    std = np.asarray(std, np.float64)
    mean = np.asarray(mean, np.float64)
    if color == "gray":
        w = np.asarray([BT601_BGR], np.float64)  # [1, 3]
    else:
        w = np.eye(3)[::-1].copy()  # RGB out of BGR in
    w = w / (255.0 * std[:, None])
    return w.reshape(len(std), 3, 1, 1).astype(np.float32), (-mean / std).astype(np.float32)


def preprocessing_graph(width: int, channels: int, height: int, width_px: int, factor: int, color: str,
                        mean, std, opset: int) -> onnx.ModelProto:
    """The preprocessing as its own model: ``images`` uint8 [B, n, S_h, S_w, 3] -> float [B, n, C, H, W]."""
    sh, sw = factor * height, factor * width_px
    weight, bias = colour_weights(color, mean, std)
    p = PREFIX
    inits = [
        numpy_helper.from_array(np.asarray([-1, sh, sw, 3], np.int64), p + "flat_shape"),
        numpy_helper.from_array(np.asarray([-1, width, channels, height, width_px], np.int64), p + "group_shape"),
        numpy_helper.from_array(weight, p + "colour_weight"),
        numpy_helper.from_array(bias, p + "colour_bias"),
    ]
    nodes = [
        helper.make_node("Cast", [INPUT_NAME], [p + "pixels"], name=p + "cast", to=TensorProto.FLOAT),
        helper.make_node("Reshape", [p + "pixels", p + "flat_shape"], [p + "nhwc"], name=p + "flatten"),
        helper.make_node("Transpose", [p + "nhwc"], [p + "nchw"], name=p + "to_nchw", perm=[0, 3, 1, 2]),
        helper.make_node("AveragePool", [p + "nchw"], [p + "area"], name=p + "area_resize",
                         kernel_shape=[factor, factor], strides=[factor, factor]),
        helper.make_node("Conv", [p + "area", p + "colour_weight", p + "colour_bias"], [p + "normalised"],
                         name=p + "colour_normalise", kernel_shape=[1, 1]),
        helper.make_node("Reshape", [p + "normalised", p + "group_shape"], [p + "model_input"], name=p + "group"),
    ]
    graph = helper.make_graph(
        nodes, "edge_mimo_preprocess",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.UINT8, ["batch", width, sh, sw, 3])],
        [helper.make_tensor_value_info(p + "model_input", TensorProto.FLOAT,
                                       ["batch", width, channels, height, width_px])],
        inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def prepend_preprocessing(path: str | Path, out: str | Path, width: int, channels: int, height: int,
                          width_px: int, factor: int, color: str, mean, std) -> Path:
    """Rewrite the graph at ``path`` (FP32 or INT8, input ``images`` float [B, n, C, H, W]) to take the uint8
    crop; written to ``out`` (may be ``path``) and checked with the ONNX checker."""
    model = onnx.load(str(path))
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    pre = preprocessing_graph(width, channels, height, width_px, factor, color, mean, std, opset)
    # the model's own names keep their names; its input becomes an inner tensor fed by the preprocessing
    inner = compose.add_prefix(model, "model_", rename_inputs=True, rename_outputs=False,
                               rename_initializers=False, rename_nodes=False, rename_edges=False,
                               rename_value_infos=False, rename_functions=False)
    pre.ir_version = inner.ir_version
    extra = [o for o in inner.opset_import if o.domain not in ("", "ai.onnx")]
    pre.opset_import.extend(extra)
    merged = compose.merge_models(pre, inner, io_map=[(PREFIX + "model_input", "model_" + INPUT_NAME)])
    merged.producer_name, merged.producer_version = model.producer_name, model.producer_version
    onnx.checker.check_model(merged)
    onnx.save(merged, str(out))
    return Path(out)
