"""Issue 21, item 12: Runtime arguments and prepared frames that were misread, accepted into a later crash, or
failed a whole call."""

import numpy as np
import pytest

from edge_mimo import Runtime
from edge_mimo.errors import ConfigError
from edge_mimo.runtime.preprocess import PreparedFrame
from edge_mimo.runtime import InferOptions
from edge_mimo.serving.packing import Request, infer_requests


@pytest.mark.parametrize("budget", [True, False, np.bool_(True), float("nan"), float("inf"), np.float32("inf"),
                                    float("-inf"), 0, -1, "5"])
def test_a_budget_that_is_no_positive_finite_number_is_refused_alike_by_runtime_and_servers(cpu_runtime, budget):
    """One check (InferOptions): a budget the runtime refuses, the servers refuse too, with the same message."""
    with pytest.raises(ConfigError, match="budget_ms must be a number > 0") as by_runtime:
        cpu_runtime.plan(4, budget_ms=budget)
    with pytest.raises(ConfigError) as by_type:
        InferOptions(budget_ms=budget)
    served = infer_requests(cpu_runtime, [Request(np.zeros((28, 28), np.uint8), budget_ms=budget)])[0]
    assert str(by_runtime.value) == str(by_type.value) == str(served.error)


@pytest.mark.parametrize("budget", [np.float32(5), np.int64(5), 5, 2.5])
def test_numpy_numbers_are_budgets_like_python_ones(cpu_runtime, budget):
    assert cpu_runtime.plan(4, budget_ms=budget).cost == cpu_runtime.plan(4, budget_ms=float(budget)).cost
    assert infer_requests(cpu_runtime, [Request(np.zeros((28, 28), np.uint8), budget_ms=budget)])[0].ok


def test_a_policy_is_checked_once_alike_everywhere(cpu_runtime):
    with pytest.raises(ConfigError, match="unknown policy 'fast'") as by_runtime:
        cpu_runtime.infer_many([np.zeros((28, 28), np.uint8)], policy="fast")
    served = infer_requests(cpu_runtime, [Request(np.zeros((28, 28), np.uint8), policy="fast")])[0]
    assert str(served.error) == str(by_runtime.value)


@pytest.mark.parametrize("threads", [1_000_000, 1025, -1, True, 2.0])
def test_absurd_thread_counts_are_refused_before_onnx_runtime_sees_them(cpu_bundle, threads):
    with pytest.raises(ConfigError, match="threads"):
        Runtime(cpu_bundle, threads=threads)


def test_a_damaged_prepared_frame_fails_alone(cpu_runtime):
    frame = np.full((28, 28), 120, np.uint8)
    good = cpu_runtime.prepare(frame)
    spec = cpu_runtime.spec
    bad = [PreparedFrame(None, spec), PreparedFrame(np.zeros((3, 5, 5), np.uint8), spec),
           PreparedFrame(np.full(good.tensor.shape, np.nan, np.float32), spec),
           PreparedFrame(good.tensor.astype(np.uint16) * 200, spec), PreparedFrame("pixels", spec)]
    results = cpu_runtime.infer_many([good, *bad, good])
    assert results[0].ok and results[-1].ok
    assert all(not r.ok and "prepared frame" in str(r.error) for r in results[1:-1]), results


def test_prepare_never_returns_a_view_of_the_callers_buffer(cpu_runtime):
    buffer = np.full((28, 28), 200, np.uint8)  # already at model size
    prepared = cpu_runtime.prepare(buffer)
    before = cpu_runtime.infer_many([prepared])[0]
    buffer[:] = 0  # the camera reuses its buffer
    assert not np.shares_memory(prepared.tensor, buffer)
    after = cpu_runtime.infer_many([prepared])[0]
    assert (before.class_name, before.confidence) == (after.class_name, after.confidence)


@pytest.mark.parametrize("dtype", [">u2", ">f4", ">f8"])
def test_big_endian_frames_are_classified_like_native_ones(cpu_runtime, dtype):
    rng = np.random.default_rng(0)
    native = rng.random((40, 40)).astype(np.dtype(dtype).newbyteorder("="))
    if native.dtype.kind == "u":
        native = (native * 65535).astype(np.uint16)
    swapped = native.astype(dtype)
    a, b = (cpu_runtime.infer_many([f], width=1)[0] for f in (native, swapped))
    assert a.ok and b.ok and (a.class_name, a.confidence) == (b.class_name, b.confidence)
