"""Issue 21, item 3: calibration-cache entries altered with their checksum recomputed, malformed entries that passed
the checksum, a FIFO meta.json, and cache roots that cannot be written: recomputed or skipped, never reused."""

import hashlib
import json
import logging
import os
import threading

import pytest

from edge_mimo.bundle.manifest import sha256_file
from edge_mimo.datasets import shipped_sample
from edge_mimo.keyed_cache import cache_secret, entry_mac
from edge_mimo.quantize import CalibrationCache, data_hash, quantize_width

MEAN, STD = (0.286,), (0.353,)


@pytest.fixture(scope="module")
def calib():
    return shipped_sample("calibration").images[:32]


@pytest.fixture
def setup(cpu_bundle, calib, tmp_path):
    """A cache holding width 1's entry, the fresh INT8 graph's bytes, and a function quantizing again."""
    graph = cpu_bundle / "fp32" / "width1.onnx"
    cache = CalibrationCache(tmp_path / "cache")
    kw = dict(data_sha256=data_hash(calib), method="minmax", flavour="cpu", cache=cache)
    first = quantize_width(graph, tmp_path / "fresh.onnx", calib, 1, MEAN, STD, **kw)
    assert first.cache == "miss"
    fields = CalibrationCache.key_fields(sha256_file(graph), kw["data_sha256"], 1, "minmax", "cpu", first.tool)

    def again(name="again.onnx"):
        info = quantize_width(graph, tmp_path / name, calib, 1, MEAN, STD, **kw)
        return info.cache, (tmp_path / name).read_bytes() == (tmp_path / "fresh.onnx").read_bytes()

    return cache, cache.entry(fields), fields, again


def scaled(ranges: dict, factor: float) -> dict:
    for entry in ranges["data"].values():
        for bound in ("lowest", "highest"):
            entry[bound]["data"] = [v * factor for v in entry[bound]["data"]]
    return ranges


def test_ranges_altered_with_their_checksum_recomputed_are_not_reused(setup):
    cache, entry, fields, again = setup
    ranges = entry / "ranges.json"
    ranges.write_text(json.dumps(scaled(json.loads(ranges.read_text()), 0.1)))  # INT8 accuracy fell to 75.8 %
    meta = json.loads((entry / "meta.json").read_text())
    digest = sha256_file(ranges)
    for forged in ({"key": fields, "sha256": digest}, {**meta, "sha256": digest},
                   {"key": fields, "hmac": hashlib.sha256(ranges.read_bytes()).hexdigest()}):
        (entry / "meta.json").write_text(json.dumps(forged))
        status, same = again()
        assert status.startswith("discarded a damaged entry") and same, status
        ranges.write_text(json.dumps(scaled(json.loads(ranges.read_text()), 0.1)))


def _resign(cache: CalibrationCache, entry, fields, ranges: dict) -> None:
    """Write ranges and a valid HMAC (the cache's own key): only validation can refuse them."""
    data = json.dumps(ranges).encode()
    (entry / "ranges.json").write_bytes(data)
    mac = entry_mac(cache_secret(cache.root, create=False), fields, data)
    (entry / "meta.json").write_text(json.dumps({"key": fields, "hmac": mac}))


@pytest.mark.parametrize("damage", ["other graph", "nan", "inverted", "wrong type", "empty"])
def test_signed_but_malformed_ranges_are_recomputed(setup, damage):
    cache, entry, fields, again = setup
    ranges = json.loads((entry / "ranges.json").read_text())
    name = next(iter(ranges["data"]))
    if damage == "other graph":
        ranges["data"]["tensor_of_another_graph"] = ranges["data"].pop(name)
    elif damage == "nan":
        ranges["data"][name]["lowest"]["data"] = [float("nan")]
    elif damage == "inverted":
        low = ranges["data"][name]["lowest"]
        ranges["data"][name]["lowest"], ranges["data"][name]["highest"] = ranges["data"][name]["highest"], low
    elif damage == "wrong type":
        ranges["data"][name] = "wide"
    else:
        ranges["data"] = {}
    _resign(cache, entry, fields, ranges)
    status, same = again()
    assert status.startswith("discarded a damaged entry") and same, status
    assert again("third.onnx")[0] == "hit"  # the recomputed entry is good


@pytest.mark.parametrize("meta", [b"[" * 200000, b'["key"]', b'{"key": "w1", "hmac": 5}', b"\xff\xfe", b"{}" * 40000])
def test_malformed_meta_json_is_recomputed(setup, meta):
    cache, entry, fields, again = setup
    (entry / "meta.json").write_bytes(meta)
    status, same = again()
    assert status.startswith("discarded a damaged entry") and same, status


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_a_fifo_meta_json_does_not_block(setup):
    cache, entry, fields, again = setup
    (entry / "meta.json").unlink()
    os.mkfifo(entry / "meta.json")
    result = []
    t = threading.Thread(target=lambda: result.append(again()), daemon=True)
    t.start()
    t.join(60)
    assert result and result[0][0].startswith("discarded a damaged entry") and result[0][1], result


@pytest.mark.parametrize("root", ["file", "/proc/edge-mimo-calibration"])
def test_a_cache_root_that_cannot_be_written_is_skipped_with_a_warning(cpu_bundle, calib, tmp_path, root, caplog):
    if root == "file":
        root = tmp_path / "cache"
        root.write_text("a file, not a folder")
    graph = cpu_bundle / "fp32" / "width1.onnx"
    with caplog.at_level(logging.WARNING, logger="edge_mimo"):
        info = quantize_width(graph, tmp_path / "q.onnx", calib, 1, MEAN, STD, data_sha256=data_hash(calib),
                              method="minmax", flavour="cpu", cache=CalibrationCache(root))
    assert info.cache == "miss" and (tmp_path / "q.onnx").is_file()
    assert "compiling without it" in caplog.text
