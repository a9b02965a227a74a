"""The headline claims of README and BENCHMARKS, measured afresh on the installed data (slow; CI runs them).

Figures are compared with what the shipped model recorded (``edge_mimo/default_model/training.json``) or with the
documented bars, never with numbers copied from today's model: a retrained model passes if it keeps its promises.
"""

import json

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from edge_mimo import Runtime
from edge_mimo.datasets import shipped_sample
from edge_mimo.metrics import ece, softmax
from edge_mimo.models.default import DEFAULT_MODEL_DIR

from .conftest import manifest_json, needs_fashion_mnist

pytestmark = pytest.mark.slow


def recorded_test() -> dict:
    return json.loads((DEFAULT_MODEL_DIR / "training.json").read_text())["test"]


@pytest.fixture(scope="module")
def test_set_bundle(tmp_path_factory):
    """`edge-mimo compile --target cpu --m 4 --val fashion-mnist`, the BENCHMARKS command: FP32 and INT8 measured
    on the 10,000 installed Fashion-MNIST test images."""
    from edge_mimo.compile.pipeline import CompileOptions, compile_bundle

    out = tmp_path_factory.mktemp("test-set") / "cpu"
    compile_bundle(CompileOptions(validation_set="fashion-mnist", output=out))
    return manifest_json(out)


@needs_fashion_mnist
def test_shipped_model_scores_its_recorded_test_accuracy(test_set_bundle):
    """The shipped weights, re-measured on the 10,000 test images (the FP32 ONNX export, checked against PyTorch to
    1e-3 during compile): the accuracy training.json records for each width, to within 20 images."""
    assert test_set_bundle["validation"]["images"] == 10000
    for n, want in recorded_test().items():
        got = test_set_bundle["accuracy"][n]["fp32"]
        assert got["accuracy"] == pytest.approx(want["accuracy"], abs=0.002), n
        assert got["nll"] == pytest.approx(want["nll"], abs=0.01), n


@needs_fashion_mnist
def test_int8_is_within_half_a_point_of_fp32_per_width_on_the_test_set(test_set_bundle):
    for n in map(str, test_set_bundle["widths"]):
        assert test_set_bundle["accuracy"][n]["drop_points"] <= 0.5, (n, test_set_bundle["accuracy"][n])


def classify(runtime, images: np.ndarray, policy: str) -> list:
    """4 streams a call, as a 4-camera robot would: throughput runs width 4, balanced 2 x 2, robust 1 x 4."""
    return [r for i in range(0, len(images), 4) for r in runtime.infer_many(list(images[i : i + 4]), policy=policy)]


@pytest.mark.parametrize("policy", ["throughput", "balanced", "robust"])
def test_uncertainty_claims_on_the_shipped_validation_data(cpu_bundle, cpu_runtime, policy):
    """Per policy, on the 3,000 shipped validation garments and the 1,797 shipped digits (out of distribution): frames
    not flagged `uncertain` are more accurate than flagged ones; entropy tells digits from garments (AUROC >= 0.85
    for every policy, and the camera suite's bar for the robust one) and flags digits more often than garments;
    temperature scaling does not worsen ECE (to its 0.001 resolution on 3,000 frames, see test_compile)."""
    from edge_mimo.camera.suite import GOALS

    runtime = cpu_runtime
    val = shipped_sample("validation")
    garments = classify(runtime, val.images[:, 0], policy)
    digits = classify(runtime, shipped_sample("digits-ood").images[:, 0], policy)
    correct = np.array([r.class_index for r in garments]) == val.labels
    flagged = np.array([r.uncertain for r in garments])
    assert 0.05 < flagged.mean() < 0.2  # about the 10 % chosen at compile time
    assert correct[~flagged].mean() > correct[flagged].mean()
    is_digit = np.r_[np.zeros(len(garments)), np.ones(len(digits))]
    floor = GOALS["min_auroc_robust"] if policy == "robust" else 0.85
    assert roc_auc_score(is_digit, [r.entropy for r in garments + digits]) >= floor
    assert np.mean([r.uncertain for r in digits]) > 2 * flagged.mean()

    # The raw (unscaled) probabilities come from a second Runtime whose temperatures are all 1, the scale from
    # manifest.json as written: scaled must be softmax(log(raw) / T) (log(raw) is the mean logits up to a constant),
    # with T not 1 for some width, so a runtime that ignored T, or a fit that returned 1, fails here.
    scaled = np.stack([r.probabilities for r in garments])
    written = {int(n): t for n, t in manifest_json(cpu_bundle)["temperature"].items()}
    assert any(abs(t - 1.0) > 0.01 for t in written.values()), written
    with Runtime(cpu_bundle, threads=2) as unscaled:
        unscaled.temperature = dict.fromkeys(unscaled.temperature, 1.0)
        raw = np.stack([r.probabilities for r in classify(unscaled, val.images[:, 0], policy)])
    temperature = np.array([written[r.width] for r in garments])[:, None]
    np.testing.assert_allclose(scaled, softmax(np.log(raw) / temperature), atol=1e-4)
    assert ece(scaled, val.labels) <= ece(raw, val.labels) + 0.001
