"""Calibration faults of issue 11: a calibration-cache entry replaced by a file (item 6), calibration methods that
were the same under other names (item 13)."""

import itertools

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import numpy_helper  # noqa: E402

from edge_mimo.bundle.manifest import sha256_file  # noqa: E402
from edge_mimo.datasets import shipped_sample  # noqa: E402
from edge_mimo.quantize import CalibrationCache, data_hash, quantize_width  # noqa: E402

MEAN, STD = (0.286,), (0.353,)


@pytest.fixture(scope="module")
def calib():
    return shipped_sample("calibration").images[:64]


def test_a_cache_entry_replaced_by_a_plain_file_is_reported_and_recomputed(cpu_bundle, calib, tmp_path):
    graph = cpu_bundle / "fp32" / "width1.onnx"
    cache = CalibrationCache(tmp_path / "cache")
    kw = dict(data_sha256=data_hash(calib), method="minmax", flavour="cpu", cache=cache)
    first = quantize_width(graph, tmp_path / "a.onnx", calib, 1, MEAN, STD, **kw)
    entry = next(p for p in (tmp_path / "cache").iterdir() if not p.name.startswith("."))  # not the HMAC key
    for damage in ("file", "empty directory", "dangling link"):
        if entry.is_dir() and not entry.is_symlink():
            for f in entry.iterdir():
                f.unlink()
            entry.rmdir()
        else:
            entry.unlink()
        if damage == "file":
            entry.write_text("not a cache entry")
        elif damage == "empty directory":
            entry.mkdir()
        else:
            entry.symlink_to(tmp_path / "nowhere")
        again = quantize_width(graph, tmp_path / "b.onnx", calib, 1, MEAN, STD, **kw)
        assert again.cache.startswith("discarded a damaged entry and recalibrated"), (damage, again.cache)
        assert sha256_file(tmp_path / "b.onnx") == sha256_file(tmp_path / "a.onnx")
        assert quantize_width(graph, tmp_path / "c.onnx", calib, 1, MEAN, STD, **kw).cache == "hit"
    assert first.cache == "miss"


def activation_scales(path) -> dict[str, float]:
    model = onnx.load(str(path))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    return {n.input[0]: float(inits[n.input[1]]) for n in model.graph.node
            if n.op_type == "QuantizeLinear" and n.input[0] not in inits and inits[n.input[1]].size == 1}


def test_each_calibration_method_gives_its_own_ranges(cpu_bundle, calib, tmp_path):
    graph = cpu_bundle / "fp32" / "width1.onnx"
    scales, graphs = {}, {}
    for method in ("minmax", "entropy", "percentile"):
        out = tmp_path / f"{method}.onnx"
        info = quantize_width(graph, out, calib, 1, MEAN, STD, data_sha256=data_hash(calib), method=method,
                              flavour="cpu")
        assert info.method == method
        graphs[method], scales[method] = out.read_bytes(), activation_scales(out)
    for a, b in itertools.combinations(graphs, 2):
        assert graphs[a] != graphs[b], f"{a} and {b} give the same graph"
        differ = np.mean([not np.isclose(scales[a][t], scales[b][t], rtol=1e-3) for t in scales[a]])
        assert differ > 0.3, f"{a} and {b} differ on only {differ:.0%} of the activation ranges"
    clipped = np.mean([scales["entropy"][t] < scales["minmax"][t] * 0.999 for t in scales["minmax"]])
    assert clipped > 0.3, f"entropy clips only {clipped:.0%} of the ranges min-max keeps whole"


def test_cache_entries_of_the_old_entropy_settings_are_not_reused(cpu_bundle, calib, tmp_path):
    """An entry made when 'entropy' was min-max in disguise (same tool, method and data) must miss."""
    import onnxruntime

    graph = cpu_bundle / "fp32" / "width1.onnx"
    cache = CalibrationCache(tmp_path / "cache")
    planted = quantize_width(graph, tmp_path / "m.onnx", calib, 1, MEAN, STD, data_sha256=data_hash(calib),
                             method="minmax", flavour="cpu", cache=cache)
    assert planted.cache == "miss"
    minmax = CalibrationCache.key_fields(sha256_file(graph), data_hash(calib), 1, "minmax", "cpu", planted.tool)
    old = dict(minmax, method="entropy", tool=f"onnxruntime {onnxruntime.__version__}")  # the old key of entropy
    cache.store(old, cache.lookup(minmax))
    info = quantize_width(graph, tmp_path / "e.onnx", calib, 1, MEAN, STD, data_sha256=data_hash(calib),
                          method="entropy", flavour="cpu", cache=cache)
    assert info.cache == "miss"
    assert (tmp_path / "e.onnx").read_bytes() != (tmp_path / "m.onnx").read_bytes()
