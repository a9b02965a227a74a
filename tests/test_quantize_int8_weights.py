"""The INT8 graphs' weights, not only their activations: every Conv of the FP32 graph gets S8 weights, per output
channel, symmetric (zero point 0), that dequantize back to the FP32 weights within half a quantization step. The
reference is the FP32 graph's own initializers."""

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from edge_mimo.datasets import shipped_sample
from edge_mimo.export import export_width
from edge_mimo.models.weights import load_model
from edge_mimo.quantize import quantize_width

from .support.tiny import tiny_model_dir

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def fp32_graph(tmp_path_factory):
    root = tmp_path_factory.mktemp("int8w")
    return export_width(load_model(tiny_model_dir(root)), 2, root / "w2.onnx")


def conv_weights(path) -> list[np.ndarray]:
    """The FP32 weights [O, I, kh, kw] of every Conv, as the graph holds them, sorted by shape and size."""
    model = onnx.load(path)
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    found = [inits[n.input[1]] for n in model.graph.node if n.op_type == "Conv" and n.input[1] in inits]
    return sorted(found, key=lambda w: (w.shape, float(np.abs(w).sum())))


def dequantized_conv_weights(path) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """(int8 weights, scale, zero point, dequantized) of every Conv's weight input in a Q/DQ graph, in graph order
    sorted like :func:`conv_weights` (the quantizer reorders nodes and renames some outputs; random weights of one
    shape differ in size far more than quantization moves them)."""
    model = onnx.load(path)
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}
    out = []
    for conv in (n for n in model.graph.node if n.op_type == "Conv"):
        dq = producer.get(conv.input[1])
        assert dq is not None and dq.op_type == "DequantizeLinear", f"{conv.name}: float weights"
        q, scale = inits[dq.input[0]], inits[dq.input[1]]
        zp = inits[dq.input[2]] if len(dq.input) > 2 else np.zeros_like(scale, np.int8)
        axis = next((a.i for a in dq.attribute if a.name == "axis"), 1)
        assert axis == 0
        deq = (q.astype(np.float32) - zp.reshape(-1, 1, 1, 1)) * scale.reshape(-1, 1, 1, 1)
        out.append((q, scale, zp, deq))
    return sorted(out, key=lambda t: (t[3].shape, float(np.abs(t[3]).sum())))


@pytest.mark.parametrize("flavour", ["cpu", "tensorrt"])
def test_conv_weights_are_s8_per_channel_symmetric_and_dequantize_to_the_fp32_weights(fp32_graph, tmp_path,
                                                                                      flavour):
    out = tmp_path / f"w2.{flavour}.onnx"
    quantize_width(fp32_graph, out, shipped_sample("calibration").images[:32], 2, (0.286,), (0.353,),
                   data_sha256="d", flavour=flavour)
    want, got = conv_weights(fp32_graph), dequantized_conv_weights(out)
    assert len(got) == len(want) > 10
    for w, (q, scale, zp, deq) in zip(want, got):
        assert q.dtype == np.int8 and zp.dtype == np.int8 and not zp.any(), flavour  # S8, symmetric
        assert scale.shape == (w.shape[0],), (scale.shape, w.shape)  # one scale per output channel
        assert deq.shape == w.shape
        step = scale.reshape(-1, 1, 1, 1)
        assert np.all(np.abs(deq - w) <= step / 2 + 1e-7), flavour  # the nearest grid point: real quantization
        # each channel uses its range: the largest |weight| maps near 127 (not a shared, coarser per-tensor scale)
        peak = np.abs(q).reshape(len(q), -1).max(1)
        live = np.abs(w).reshape(len(w), -1).max(1) > 0
        assert np.all(peak[live] >= 126), peak
