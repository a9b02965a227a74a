"""One preprocessing and packing path: the compile gate's figures are the runtime's figures."""

import json

import numpy as np
import pytest

from edge_mimo.datasets import shipped_sample
from edge_mimo.runtime.batching import frame_logits, model_inputs, spec_for, width_groups
from edge_mimo.runtime.preprocess import Normalizer, prepare_frame


@pytest.mark.parametrize("width", [1, 2, 4])
def test_compile_report_is_what_the_runtime_measures(cpu_bundle, cpu_runtime, width):
    """The bundle's INT8 validation accuracy (written by compile) equals the accuracy of Runtime.infer_many on
    the same images at that width, to the frame: the gate scores the shipped path."""
    manifest = json.loads((cpu_bundle / "manifest.json").read_text())
    val = shipped_sample("validation")
    results = cpu_runtime.infer_many(list(val.images[:, 0]), width=width)
    measured = np.mean(np.array([r.class_index for r in results]) == val.labels)
    assert measured == pytest.approx(manifest["accuracy"][str(width)]["int8"]["accuracy"], abs=1e-12)


def test_model_inputs_are_the_runtimes_preprocessing():
    from edge_mimo.models.config import default_fashion_mnist_config

    cfg = default_fashion_mnist_config()
    spec = spec_for(cfg)
    images = shipped_sample("calibration").images[:16]
    expected = Normalizer(spec)(np.stack([prepare_frame(img[0], spec) for img in images]))
    assert np.array_equal(model_inputs(images, spec), expected)
    # colour datasets (CHW RGB) come back in the model's channel order, unchanged by the BGR round trip
    rgb = np.random.default_rng(0).integers(0, 256, (3, 3, 8, 8), dtype=np.uint8)
    spec3 = spec_for(type(cfg)(in_channels=3, image_size=8, mean=(0.0,) * 3, std=(1 / 255,) * 3, num_classes=10))
    assert np.allclose(model_inputs(rgb, spec3), rgb.astype(np.float32))


def test_frame_logits_average_a_frames_replicas():
    x = np.arange(5, dtype=np.float32)[:, None, None, None] * np.ones((1, 1, 1, 1), np.float32)

    def run(n, groups):  # replica r of a slot reports frame id + 10 r
        return np.stack([groups[:, :, 0, 0, :1] + 10 * r for r in range(4 // n)], 1)

    logits = frame_logits(run, x, 2, capacity=4)
    assert np.allclose(logits[:, 0], np.arange(5) + 5)  # mean of +0 and +10 for every frame
    assert width_groups(x, 2)[:, :, 0, 0, 0].tolist() == [[0, 1], [2, 3], [4, 4]]
