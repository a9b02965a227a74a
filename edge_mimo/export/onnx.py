"""Export one ONNX graph per superposition width.

The graph for width n takes ``images`` [B, n, C, H, W] (float32, normalised) and returns ``logits``
[B, N/n, n, classes] (per-replica logits), with a dynamic batch. Replication is folded into the binding
weights (see ``KeyBinding.weight``), so every graph holds one plain 1x1 ``Conv`` for binding + superposition,
BatchNorms that follow a convolution are folded into it by the exporter, and the rest (pre-activation
BatchNorms on the residual stream) become 1x1 depthwise convolutions, so quantized graphs stay integer.

The exporter is PyTorch's torch.export-based one (``dynamo=True``; the TorchScript exporter is deprecated).
Checked against the TorchScript exporter on every model family and width (torch 2.13, onnxscript 0.7): the
same operators once global average pooling, which torch.export decomposes into a ReduceMean, is written back
as GlobalAveragePool (:func:`mean_to_global_average_pool`; otherwise the INT8 graph keeps a float island
there); every reshape constant apart from the batch (MIMO and MixMo lose the shape arithmetic the
TorchScript exporter left in them); INT8 graphs integer end to end on ONNX Runtime; outputs equal PyTorch's
to within 6e-6 at batch 1, 2 and 5.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from ..bundle.names import INPUT_NAME, OUTPUT_NAME
from ..models.base import SuperposedClassifier

OPSET = 18


class _SkipTorchvisionNotice(logging.Filter):
    """The exporter's operator registry notes that it skips torchvision's operators: no model here uses them."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("torchvision is not installed")


@contextlib.contextmanager
def _exporter_notices() -> Iterator[None]:
    """Hide two notices about torch's own internals during an export, and nothing else."""
    registry = logging.getLogger("torch.onnx._internal.exporter._registration")
    notice = _SkipTorchvisionNotice()
    registry.addFilter(notice)
    try:
        with warnings.catch_warnings():
            # torch.export deep-copies torch's own deprecated pytree LeafSpec (torch 2.13): not a call of ours
            warnings.filterwarnings("ignore", r"`isinstance\(treespec, LeafSpec\)` is deprecated", FutureWarning)
            yield
    finally:
        registry.removeFilter(notice)


def export_width(model: SuperposedClassifier, width: int, path: str | Path) -> Path:
    """Write the width-``width`` graph of ``model`` to ``path`` and check it with the ONNX checker."""
    model.check_width(width)
    cfg = model.config
    dummy = torch.zeros(2, width, cfg.in_channels, cfg.image_size, cfg.image_size)
    path = Path(path)
    binding = getattr(model, "binding", None)
    frozen = binding.freeze() if binding is not None else contextlib.nullcontext()
    with torch.no_grad(), frozen, _exporter_notices():
        program = torch.onnx.export(
            model.eval(), (dummy,), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
            dynamic_shapes=({0: torch.export.Dim("batch")},), opset_version=OPSET, dynamo=True, verbose=False,
        )
    graph = program.model_proto
    mean_to_global_average_pool(graph)
    prelu_to_leaky_relu(graph)
    batchnorm_to_depthwise_conv(graph)
    onnx.checker.check_model(graph)
    onnx.save(graph, str(path))
    return path


def _constants(model: onnx.ModelProto):
    """``name -> float64 array or None``: initializers, also behind the Identity nodes the exporter writes for
    deduplicated constants (identical freshly initialised slopes or BatchNorm statistics)."""
    inits = {i.name: i for i in model.graph.initializer}
    aliases = {n.output[0]: n.input[0] for n in model.graph.node if n.op_type == "Identity"}

    def constant(name: str) -> np.ndarray | None:
        while name in aliases:
            name = aliases[name]
        return numpy_helper.to_array(inits[name]).astype(np.float64) if name in inits else None

    return constant


def mean_to_global_average_pool(model: onnx.ModelProto) -> int:
    """Rewrite ReduceMean over the height and width of a 4-D map, kept dims, as GlobalAveragePool (returns how many).

    torch.export decomposes adaptive average pooling to 1x1 into a mean; the quantizers leave ReduceMean in
    float between a dequantize and a quantize, while GlobalAveragePool has integer kernels.
    """
    constant = _constants(model)
    rank = {v.name: len(v.type.tensor_type.shape.dim) for v in (*model.graph.input, *model.graph.value_info)}
    count = 0
    for i, node in enumerate(model.graph.node):
        axes = constant(node.input[1]) if node.op_type == "ReduceMean" and len(node.input) == 2 else None
        keepdims = next((a.i for a in node.attribute if a.name == "keepdims"), 1)
        if axes is None or rank.get(node.input[0]) != 4 or not keepdims or sorted(axes.ravel() % 4) != [2, 3]:
            continue
        pool = onnx.helper.make_node("GlobalAveragePool", [node.input[0]], list(node.output), name=node.name)
        model.graph.node[i].CopyFrom(pool)
        count += 1
    _drop_unused(model)
    return count


def prelu_to_leaky_relu(model: onnx.ModelProto) -> int:
    """Rewrite PRelu nodes with one shared slope as LeakyRelu (the same function; returns how many).

    ONNX Runtime runs PRelu as a slow float broadcast between quantized convolutions, while LeakyRelu has fused
    integer kernels (QLinearLeakyRelu) and TensorRT runs both natively.
    """
    constant = _constants(model)
    count = 0
    for i, node in enumerate(model.graph.node):
        slope = constant(node.input[1]) if node.op_type == "PRelu" else None
        if slope is None or slope.size != 1:
            continue
        leaky = onnx.helper.make_node("LeakyRelu", [node.input[0]], list(node.output), name=node.name,
                                      alpha=float(slope.reshape(())))
        model.graph.node[i].CopyFrom(leaky)
        count += 1
    _drop_unused(model)
    return count


def batchnorm_to_depthwise_conv(model: onnx.ModelProto) -> int:
    """Rewrite inference BatchNormalization nodes as the 1x1 depthwise Conv computing the same affine map.

    The quantizers leave BatchNormalization in float, between a dequantize and a quantize, which breaks ONNX
    Runtime's integer NHWC chain (layout transposes around each); a depthwise Conv is quantized like the others.
    """
    constant = _constants(model)
    count = 0
    for i, node in enumerate(model.graph.node):
        params = [constant(name) for name in node.input[1:5]] if node.op_type == "BatchNormalization" else [None]
        if any(p is None for p in params) or len(node.output) != 1:
            continue
        eps = next((a.f for a in node.attribute if a.name == "epsilon"), 1e-5)
        gamma, beta, mean, var = params
        scale = gamma / np.sqrt(var + eps)
        weight, bias = f"{node.name}.dw_weight", f"{node.name}.dw_bias"
        model.graph.initializer.extend([
            numpy_helper.from_array(scale.astype(np.float32).reshape(-1, 1, 1, 1), weight),
            numpy_helper.from_array((beta - mean * scale).astype(np.float32), bias),
        ])
        conv = onnx.helper.make_node("Conv", [node.input[0], weight, bias], list(node.output), name=node.name,
                                     group=len(scale), kernel_shape=[1, 1])
        model.graph.node[i].CopyFrom(conv)
        count += 1
    _drop_unused(model)
    return count


def _drop_unused(model: onnx.ModelProto) -> None:
    """Remove Identity nodes nothing reads any more, then initializers nothing reads."""
    outputs = {o.name for o in model.graph.output}
    while True:
        used = {name for node in model.graph.node for name in node.input} | outputs
        dead = [n for n in model.graph.node if n.op_type == "Identity" and n.output[0] not in used]
        if not dead:
            break
        for node in dead:
            model.graph.node.remove(node)
    keep = [init for init in model.graph.initializer if init.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)


def max_abs_difference(model: SuperposedClassifier, path: str | Path, inputs: np.ndarray) -> float:
    """Largest |ONNX Runtime - PyTorch| over the logits of ``inputs`` [B, n, C, H, W] (float32)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    got = session.run([OUTPUT_NAME], {INPUT_NAME: inputs.astype(np.float32)})[0]
    with torch.no_grad():
        want = model.eval()(torch.from_numpy(inputs.astype(np.float32))).numpy()
    return float(np.abs(got - want).max())
