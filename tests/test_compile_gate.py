"""The INT8 accuracy gate per width, and the export-vs-PyTorch check, against known drops.

The pipeline runs for real on a tiny random model (export, quantization, evaluation, gate, bundle); only the logits
the gate scores are replaced by synthetic ones whose drop per width is known by construction (a given number of
validation frames turned wrong at one width), so a gate that looks at the wrong width, or at one width for all,
names the wrong widths."""

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

import edge_mimo.compile.pipeline as pipeline
import edge_mimo.export as export
from edge_mimo.compile.pipeline import CompileOptions, compile_bundle
from edge_mimo.errors import AccuracyGateError, ExportError

from .conftest import manifest_json
from .support.tiny import ExportOnce, tiny_model_dir

torch.set_num_threads(2)
VAL = 400  # validation images: one frame is 0.25 points
WIDTHS = [1, 2, 4]
EVALUATED: list[str] = []


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("gate")
    return tiny_model_dir(root), ExportOnce(export.export_width, root), root / "cache"


def compile_with_drops(tmp_path, monkeypatch, tiny, wrong: dict[int, int], **kw):
    """Compile the tiny model at WIDTHS with the gate seeing FP32 logits that are all right and INT8 logits with
    ``wrong[n]`` frames wrong at width n (a drop of exactly 100 * wrong[n] / VAL points)."""
    model_dir, export_once, cache = tiny
    monkeypatch.setattr(export, "export_width", export_once)
    real_report = pipeline.width_report
    seen = []

    def report(fp32, int8, labels, **k):
        n = WIDTHS[len(seen)]  # widths are evaluated in increasing order
        seen.append(n)
        k_classes = fp32.shape[-1]
        good = 6.0 * np.eye(k_classes)[labels] + np.random.default_rng(n).normal(0, 0.5, fp32.shape)
        bad = good.copy()
        rows = np.arange(wrong.get(n, 0))
        bad[rows] = 6.0 * np.eye(k_classes)[(labels[rows] + 1) % k_classes]  # confidently wrong
        return real_report(good, bad, labels, **k)

    monkeypatch.setattr(pipeline, "width_report", report)
    real_logits = pipeline.onnx_frame_logits

    def logits(path, *a, **k):  # which graphs are scored: both the FP32 and the INT8 one of each width
        EVALUATED.append(f"{Path(path).parent.name}/{Path(path).name}")
        return real_logits(path, *a, **k)

    EVALUATED.clear()
    monkeypatch.setattr(pipeline, "onnx_frame_logits", logits)
    opts = CompileOptions(model=str(model_dir), widths=WIDTHS, calibration_size=64, validation_size=VAL,
                          output=tmp_path / "bundle", cache_dir=cache, **kw)
    try:
        return compile_bundle(opts)
    finally:
        assert seen == WIDTHS


@pytest.mark.parametrize("broken", [2, 4])
def test_one_broken_width_alone_fails_the_gate_and_is_named(tmp_path, monkeypatch, tiny, broken):
    """Width ``broken`` loses 2 points, the others 0.25: only it fails the 1-point gate, and the message says so."""
    wrong = {n: 1 for n in WIDTHS} | {broken: 8}
    with pytest.raises(AccuracyGateError) as e:
        compile_with_drops(tmp_path, monkeypatch, tiny, wrong)
    message = str(e.value)
    assert f"width {broken}: -2.00 points" in message, message
    assert [f"width {n}:" in message for n in WIDTHS] == [n == broken for n in WIDTHS], message
    assert not (tmp_path / "bundle").exists()


def test_drops_under_the_bar_pass_and_each_width_records_its_own_drop(tmp_path, monkeypatch, tiny):
    wrong = {1: 0, 2: 2, 4: 3}  # 0, 0.5 and 0.75 points
    bundle, manifest = compile_with_drops(tmp_path, monkeypatch, tiny, wrong)
    loaded = manifest_json(bundle)
    assert loaded["validation"]["gate_failed"] == []
    graphs = [loaded["artifacts"][str(n)][p]["file"] for n in WIDTHS for p in ("fp32", "int8")]
    assert sorted(EVALUATED) == sorted(graphs)
    for n in WIDTHS:
        assert loaded["accuracy"][str(n)]["drop_points"] == pytest.approx(100 * wrong[n] / VAL), n
        assert loaded["accuracy"][str(n)]["fp32"]["accuracy"] == 1.0


def test_allow_drop_writes_the_bundle_and_records_only_the_failing_width(tmp_path, monkeypatch, tiny):
    wrong = {1: 0, 2: 0, 4: 20}  # 5 points at width 4 only
    bundle, manifest = compile_with_drops(tmp_path, monkeypatch, tiny, wrong, allow_drop=True)
    assert manifest.validation.gate_failed == (4,) and manifest.validation.allowed_drop
    assert manifest_json(bundle)["accuracy"]["4"]["drop_points"] == pytest.approx(5.0)


def test_a_larger_max_drop_lets_the_same_drop_through(tmp_path, monkeypatch, tiny):
    bundle, manifest = compile_with_drops(tmp_path, monkeypatch, tiny, {4: 8}, max_drop_points=2.5)
    assert manifest.validation.gate_failed == () and not manifest.validation.allowed_drop


def test_an_export_that_differs_from_pytorch_is_refused_naming_the_width(tmp_path, monkeypatch, tiny):
    """The width-2 graph is written with one weight changed (a broken exporter): compile stops at the check, names
    width 2, and writes nothing. The other widths' graphs are untouched and pass it."""
    model_dir, export_once, cache = tiny

    def broken_export(model, n, path):
        export_once(model, n, path)
        if n == 2:
            graph = onnx.load(path)
            for init in graph.graph.initializer:
                arr = numpy_helper.to_array(init)
                if arr.dtype == np.float32 and arr.ndim == 4 and arr.size > 16:
                    init.CopyFrom(numpy_helper.from_array(arr * 1.5 + 0.1, init.name))
                    break
            onnx.save(graph, path)
        return path

    monkeypatch.setattr(export, "export_width", broken_export)
    opts = CompileOptions(model=str(model_dir), widths=WIDTHS, calibration_size=64, validation_size=VAL,
                          output=tmp_path / "bundle", cache_dir=cache)
    with pytest.raises(ExportError, match="width-2 ONNX graph differs from PyTorch"):
        compile_bundle(opts)
    assert not (tmp_path / "bundle").exists()


def test_a_drop_of_exactly_max_drop_passes(tmp_path, monkeypatch, tiny):
    """"Compile fails if a width loses *more than* --max-drop points": 4 frames of 400 are exactly 1.00 point."""
    bundle, manifest = compile_with_drops(tmp_path, monkeypatch, tiny, {2: 4})
    assert manifest.validation.gate_failed == ()
    assert manifest_json(bundle)["accuracy"]["2"]["drop_points"] == pytest.approx(1.0)
