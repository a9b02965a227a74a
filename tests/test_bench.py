"""``edge-mimo bench``: the harness's schema, baselines and plots (never its speed)."""

import itertools
import json
import sys

import cv2
import numpy as np

from edge_mimo.camera.frames import camera_frames
from edge_mimo.bench.run import POLICIES, ratios
from edge_mimo.bench.timing import measure_interleaved, summary
from edge_mimo.bundle.manifest import load_manifest
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


def test_quick_bench_end_to_end(cpu_bundle, tmp_path, capsys):
    """`edge-mimo bench --quick` (CI): every configuration measured at 1 and 8 streams, plots written, and at 8 streams
    the ratios point the way the design says: superposition beats width 1 (end to end and in the passes), INT8 beats
    FP32 and PyTorch eager, the superposed bundle beats a plain WideResNet of its trunk. How much is BENCHMARKS'."""
    out = tmp_path / "bench"
    assert main(["bench", str(cpu_bundle), "--quick", "-o", str(out)]) == 0
    assert "check passed: all 6 ratios point the way the design says" in capsys.readouterr().out
    result = json.loads((out / "bench.json").read_text())
    seen = {(r["streams"], r["precision"], r["policy"]) for r in result["runs"]}
    for m in (1, 8):
        for precision in ("int8", "fp32"):
            assert {(m, precision, p) for p in (*POLICIES, "width-1")} <= seen
        assert {(m, "int8", "plain-int8"), (m, "fp32", "torch-eager-fp32-width-1")} <= seen
    assert all(r["repeats"] == 20 and 0 < r["p50_ms"] <= r["p99_ms"] and r["fps"] > 0 for r in result["runs"])
    eight = {r["policy"]: r for r in result["runs"] if r["streams"] == 8 and r["precision"] == "int8"}
    assert [eight[p]["passes"] for p in (*POLICIES, "width-1")] == [2, 4, 8, 8]
    assert [eight[p]["widths"] for p in (*POLICIES, "width-1")] == [[4], [2], [1], [1]]
    for policy in (*POLICIES, "width-1"):
        shares = [eight[policy][f"{stage}_share"] for stage in ("preprocess", "inference", "demux")]
        assert all(0 < share < 1 for share in shares)  # medians of each stage over the median call
    ratios = result["ratios"]
    assert ratios["streams"] == 8
    for key in ("int8_throughput_vs_int8_width1", "int8_throughput_vs_int8_width1_inference_only",
                "int8_throughput_vs_torch_eager_width1", "int8_throughput_vs_plain_int8",
                "int8_vs_fp32_throughput", "int8_vs_fp32_width-1"):
        assert ratios[key] > 1, (key, ratios[key])
    assert 0 < ratios["preprocess_plus_demux_share"] < 1
    for png in ("scaling.png", "operating_points.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"


def test_quick_verdict_names_each_ratio_that_points_the_wrong_way(capsys):
    """The --quick check on hand-made ratios: one inverted ratio fails the run and is named with its value; a ratio
    not measured (no baselines) is left out, not counted as a pass or a miss."""
    from edge_mimo.bench.run import DIRECTIONS
    from edge_mimo.cli.bench import _verdict

    ratios = dict.fromkeys(DIRECTIONS, 1.8) | {"int8_vs_fp32_width-1": 0.93, "int8_throughput_vs_plain_int8": None}
    assert _verdict(ratios, sys.stdout) == 1
    out = capsys.readouterr().out
    assert "check FAILED: INT8 faster than FP32 (width 1): x0.93" in out and out.count("check FAILED") == 1
    assert _verdict(dict(ratios, **{"int8_vs_fp32_width-1": 1.05}), sys.stdout) == 0
    assert "check passed: all 5 ratios" in capsys.readouterr().out


# overlapping labels in the bench plot (issue 11, item 19)
def test_bench_operating_point_labels_never_overlap(cpu_bundle, tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    from edge_mimo.bench.plots import operating_points_plot

    runs = [{"streams": 8, "precision": "int8", "policy": policy, "widths": widths, "fps": fps}
            for policy, widths, fps in (("throughput", [4], 1800.0), ("balanced", [2], 1000.0),
                                        ("robust", [1], 480.0), ("width-1", [1], 478.0))]
    figures = []
    monkeypatch.setattr(plt, "close", lambda fig=None: figures.append(fig))
    operating_points_plot({"runs": runs, "ratios": {"streams": 8}}, load_manifest(cpu_bundle), tmp_path / "op.png")
    assert (tmp_path / "op.png").read_bytes()[:4] == b"\x89PNG"
    fig = figures[0]
    renderer = fig.canvas.get_renderer()
    labels = [t for t in fig.axes[0].texts]
    assert sorted(t.get_text() for t in labels) == ["balanced (n=2)", "robust (n=1)", "throughput (n=4)",
                                                    "width-1 (n=1)"]
    boxes = [t.get_window_extent(renderer) for t in labels]
    for (a, box_a), (b, box_b) in itertools.combinations(zip(labels, boxes), 2):
        assert not box_a.overlaps(box_b), f"{a.get_text()!r} overlaps {b.get_text()!r}"
    plt.close(fig)
