"""``edge-mimo bench``: the harness's schema, baselines and plots (never its speed)."""

import json

import cv2
import numpy as np

from edge_mimo.bench.frames import camera_frames
from edge_mimo.bench.run import POLICIES, ratios
from edge_mimo.bench.timing import measure_interleaved, summary
from edge_mimo.cli.main import main
from edge_mimo.datasets import shipped_sample


def test_interleaved_measurement_and_summary():
    calls = []
    times, returned = measure_interleaved({"a": lambda: calls.append("a") or 1, "b": lambda: calls.append("b") or 2},
                                          repeats=5, burst=2, warmup=1, pause_s=0)
    # a warm-up round, then rounds of (settle + burst) per configuration: a drifting machine slows both alike
    assert calls == ["a", "b"] + (["a"] * 3 + ["b"] * 3) * 2 + ["a"] * 2 + ["b"] * 2
    assert times["a"].shape == (5,) and (times["b"] >= 0).all() and returned == {"a": [1] * 5, "b": [2] * 5}
    s = summary(times["a"], frames=4)
    assert s["p50_ms"] <= s["p99_ms"] and s["repeats"] == 5


def test_camera_frames_hold_the_garment_in_a_scene():
    images = shipped_sample("validation").images[:3]
    frames = camera_frames(images)
    assert [f.shape for f in frames] == [(480, 640, 3)] * 3
    garment = cv2.resize(images[0, 0], (480, 480), interpolation=cv2.INTER_LINEAR)
    crop = frames[0][:, 80:560, 1].astype(float)
    inside, outside = garment > 60, cv2.resize(images[0, 0], (480, 480), interpolation=cv2.INTER_NEAREST) == 0
    assert np.corrcoef(crop[inside | outside], garment[inside | outside])[0, 1] > 0.5  # the garment is there
    assert crop[outside].mean() > 20  # on a scene, not on the dataset's black


def test_ratios_from_rows():
    rows = [
        {"streams": 8, "precision": "int8", "policy": "throughput", "fps": 300.0, "preprocess_share": 0.1,
         "demux_share": 0.02, "inference_ms": 2.0},
        {"streams": 8, "precision": "int8", "policy": "width-1", "fps": 100.0, "inference_ms": 7.0},
        {"streams": 8, "precision": "fp32", "policy": "throughput", "fps": 200.0},
        {"streams": 8, "precision": "fp32", "policy": "torch-eager-fp32-width-1", "fps": 25.0},
    ]
    r = ratios(rows, 8)
    assert r["int8_throughput_vs_int8_width1"] == 3.0 and r["int8_throughput_vs_int8_width1_inference_only"] == 3.5
    assert r["int8_throughput_vs_torch_eager_width1"] == 12.0
    assert r["int8_vs_fp32_throughput"] == 1.5 and r["int8_vs_fp32_balanced"] is None
    assert abs(r["preprocess_plus_demux_share"] - 0.12) < 1e-12


def test_bench_cli_end_to_end(cpu_bundle, tmp_path):
    out = tmp_path / "bench"
    assert main(["bench", str(cpu_bundle), "--streams", "1,3", "--repeats", "2", "--threads", "1",
                 "-o", str(out)]) == 0
    result = json.loads((out / "bench.json").read_text())
    seen = {(r["streams"], r["precision"], r["policy"]) for r in result["runs"]}
    for m in (1, 3):
        for precision in ("int8", "fp32"):
            assert {(m, precision, p) for p in (*POLICIES, "width-1")} <= seen
    assert (3, "int8", "plain-wrn-int8") in seen and (3, "fp32", "torch-eager-fp32-width-1") in seen
    three = {r["policy"]: r for r in result["runs"] if r["streams"] == 3 and r["precision"] == "int8"}
    assert three["throughput"]["passes"] == 1 and three["robust"]["passes"] == 3
    assert all(r["fps"] > 0 and r["p50_ms"] > 0 for r in result["runs"])
    assert 0 < three["throughput"]["inference_share"] < 1 and 0 < three["width-1"]["inference_share"] < 1
    assert result["ratios"]["streams"] == 3 and result["ratios"]["int8_throughput_vs_int8_width1"] > 0
    for png in ("scaling.png", "operating_points.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
