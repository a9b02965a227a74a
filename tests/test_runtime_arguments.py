"""Runtime arguments and prepared frames that were read leniently, misread, accepted into a later crash, crashed with
foreign exceptions or failed a whole call (issue 11, items 15 and 17; issue 21, item 12)."""

import numpy as np
import pytest

from edge_mimo import Runtime
from edge_mimo.errors import ConfigError, FrameError
from edge_mimo.runtime.preprocess import PreparedFrame, check_roi
from edge_mimo.runtime import InferOptions
from edge_mimo.serving.packing import Request, infer_requests


FRAME = np.random.default_rng(1).integers(0, 256, (120, 160, 3), dtype=np.uint8)


@pytest.mark.parametrize("frames", ["abc", b"abc", None, (f for f in [FRAME]), iter([FRAME]), np.float32(1.0),
                                    np.array(3.0), 42, {FRAME.tobytes()[:3]}])
def test_anything_but_a_list_or_dict_of_frames_is_a_config_error(cpu_runtime, frames):
    with pytest.raises(ConfigError, match="list of frames.*dict") as info:
        cpu_runtime.infer_many(frames)
    assert "pass" in str(info.value)


def test_a_batch_array_of_frames_is_still_one_stream_per_frame(cpu_runtime):
    results = cpu_runtime.infer_many(np.stack([FRAME, FRAME]))
    assert len(results) == 2 and all(r.ok for r in results)


@pytest.mark.parametrize("roi", ["1234", b"1234", "0,0,10,10", (0.5, 0, 10, 10), (0, 0, 10.7, 10), (0, 0, np.inf, 10),
                                 (0, 0, float("nan"), 10), (True, 0, 10, 10), (x for x in (0, 0, 10, 10)),
                                 {0: 0, 1: 0, 2: 10, 3: 10}, (0, 0, 10, 10, 5)])
def test_malformed_regions_of_interest_are_refused_never_truncated(roi):
    with pytest.raises(ConfigError, match="four integers"):
        check_roi(roi)


def test_integer_regions_of_interest_of_any_integer_type_are_accepted():
    assert check_roi((np.int64(1), np.uint16(2), 3, 4)) == (1, 2, 3, 4)
    assert check_roi(np.array([1, 2, 3, 4])) == (1, 2, 3, 4) and check_roi([1, 2, 3, 4]) == (1, 2, 3, 4)


def test_a_region_reaching_outside_the_frame_is_an_error_for_that_stream_not_clipped(cpu_runtime):
    frames = {"a": FRAME, "b": FRAME}
    results = cpu_runtime.infer_many(frames, rois={"a": (100, 50, 100, 100), "b": (60, 20, 100, 100)})
    assert not results["a"].ok and isinstance(results["a"].error, FrameError)
    assert "outside the 160x120 frame" in str(results["a"].error)
    assert results["b"].ok  # exactly inside: 60 + 100 = 160, 20 + 100 = 120


def test_regions_of_interest_given_as_a_generator_are_a_config_error(cpu_runtime):
    with pytest.raises(ConfigError, match="rois must be a dict.*or a list"):
        cpu_runtime.infer_many([FRAME], rois=(r for r in [(0, 0, 10, 10)]))


def test_masked_arrays_are_refused_not_classified_with_their_hidden_values(cpu_runtime):
    masked = np.ma.masked_invalid(np.full((40, 40), np.nan, np.float32))
    result = cpu_runtime.infer_many([masked, FRAME])
    assert not result[0].ok and "masked array" in str(result[0].error) and "filled" in str(result[0].error)
    assert result[1].ok


@pytest.mark.parametrize("width", [2.0, np.float64(4.0), True, "2"])
def test_a_width_that_is_no_integer_is_a_config_error(cpu_runtime, width):
    with pytest.raises(ConfigError, match="width"):
        cpu_runtime.infer_many([FRAME, FRAME], width=width)


def test_a_numpy_integer_width_works(cpu_runtime):
    assert cpu_runtime.infer_many([FRAME, FRAME], width=np.int64(2))[0].width == 2


@pytest.mark.parametrize("threads", [2.5, "2", -1, True])
def test_threads_that_are_no_whole_number_are_a_config_error(cpu_bundle, threads):
    from edge_mimo import Runtime

    with pytest.raises(ConfigError, match="threads must be a whole number"):
        Runtime(cpu_bundle, threads=threads, warmup=False)


# -- issue 21, item 12 --------------------------------------------------------------------------------------------


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
