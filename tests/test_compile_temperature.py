"""Temperature scaling and the uncertainty threshold, checked against references computed here by hand: a known
temperature recovered from synthetic logits whose labels were drawn at that temperature, and metrics of the raw
(T = 1) prediction recomputed from the logits, never from the temperature under test."""

import numpy as np
import pytest

from edge_mimo.compile.evaluate import FLAG_RATE, width_report
from edge_mimo.metrics import ece, entropy, fit_temperature, nll, softmax

K = 10


def drawn_at(temperature: float, m: int = 20000, seed: int = 0):
    """Logits [m, K] and labels drawn from softmax(logits / temperature): ``temperature`` is the NLL-optimal one."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 3.0, (m, K))
    p = softmax(logits, temperature)
    labels = (p.cumsum(1) > rng.random((m, 1))).argmax(1)
    return logits, labels


@pytest.mark.parametrize("true_t", [0.5, 1.6, 3.0])
def test_fit_temperature_recovers_the_temperature_the_labels_were_drawn_at(true_t):
    logits, labels = drawn_at(true_t)
    assert fit_temperature(logits, labels) == pytest.approx(true_t, rel=0.06)


def test_fit_temperature_minimises_nll_against_a_grid():
    logits, labels = drawn_at(2.2, m=4000, seed=1)
    t = fit_temperature(logits, labels)
    grid = np.exp(np.linspace(-1.5, 2.0, 351))
    best = grid[np.argmin([nll(softmax(logits, g), labels) for g in grid])]
    assert t == pytest.approx(best, rel=0.02)
    assert nll(softmax(logits, t), labels) <= min(nll(softmax(logits, g), labels) for g in grid) + 1e-6


def test_width_report_scores_raw_and_calibrated_int8_independently():
    """Overconfident INT8 logits (labels drawn at T = 2): the temperature is fitted on INT8 (what is deployed), not
    on FP32 (here calibrated as it is); the report's raw INT8 NLL/ECE are those of softmax(logits) computed here, the
    calibrated ones those of softmax(logits / 2), and calibration strictly improves both."""
    q, labels = drawn_at(2.0, m=6000, seed=2)
    fp = q / 2 + np.random.default_rng(3).normal(0, 0.05, q.shape)  # FP32 calibrated at T = 1: fitting on it is wrong
    r = width_report(fp, q, labels)
    assert r.temperature == pytest.approx(2.0, rel=0.08)
    raw, cal = softmax(q), softmax(q, r.temperature)
    assert r.int8.nll == pytest.approx(nll(raw, labels), rel=1e-9)
    assert r.int8.ece == pytest.approx(ece(raw, labels), rel=1e-9)
    assert r.int8_calibrated.nll == pytest.approx(nll(cal, labels), rel=1e-9)
    assert r.int8_calibrated.nll < r.int8.nll - 0.05  # a real gain, not equality at T = 1
    assert r.int8_calibrated.ece < r.int8.ece - 0.02
    assert r.fp32.accuracy == pytest.approx(float((fp.argmax(1) == labels).mean()))
    assert r.drop_points == pytest.approx(100 * ((fp.argmax(1) == labels).mean() - (q.argmax(1) == labels).mean()))


def test_uncertainty_threshold_is_the_quantile_of_calibrated_normalised_entropy():
    q, labels = drawn_at(0.5, m=5000, seed=4)  # a 90 % quantile of about 0.45: under the absolute ceiling
    r = width_report(q, q, labels)
    h = entropy(softmax(q, r.temperature)) / np.log(K)
    assert r.uncertainty.entropy_threshold == pytest.approx(np.quantile(h, 1 - FLAG_RATE), rel=1e-9)
    assert r.uncertainty.flag_rate == pytest.approx(FLAG_RATE, abs=0.002)
    kept = h <= r.uncertainty.entropy_threshold
    correct = q.argmax(1) == labels
    assert r.uncertainty.accuracy_kept == pytest.approx(correct[kept].mean())
    assert r.uncertainty.accuracy_flagged == pytest.approx(correct[~kept].mean())
    assert r.uncertainty.accuracy_kept > r.uncertainty.accuracy_flagged + 0.1
    # the threshold is not the raw (T = 1) one: the fitted temperature is far from 1 here
    raw = np.quantile(entropy(softmax(q)) / np.log(K), 1 - FLAG_RATE)
    assert abs(raw - r.uncertainty.entropy_threshold) > 0.02


def test_uncertainty_threshold_never_exceeds_the_absolute_ceiling():
    """A weak model's 90 % entropy quantile (0.54 of the maximum here) is capped: more than 10 % are flagged."""
    from edge_mimo.compile.evaluate import MAX_CERTAIN_ENTROPY

    q, labels = drawn_at(0.7, m=5000, seed=4)
    r = width_report(q, q, labels)
    h = entropy(softmax(q, r.temperature)) / np.log(K)
    assert np.quantile(h, 1 - FLAG_RATE) > MAX_CERTAIN_ENTROPY == r.uncertainty.entropy_threshold
    assert r.uncertainty.flag_rate == pytest.approx(float((h > MAX_CERTAIN_ENTROPY).mean()))
    assert r.uncertainty.flag_rate > FLAG_RATE
