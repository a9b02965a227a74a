"""Prometheus metrics of the live loop, scraped over HTTP on 127.0.0.1 during runs over real video files."""

import collections
import threading
import urllib.request

import pytest

from edge_mimo import live
from edge_mimo.errors import ConfigError
from edge_mimo.streams import StreamMux

from .test_live import numbered, records, start_run, stop_run, wait_for  # noqa: F401 (fixture)

prometheus_client = pytest.importorskip("prometheus_client")
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from edge_mimo.live.prometheus import LiveMetrics  # noqa: E402

pytestmark = pytest.mark.slow


def scrape(port: int) -> dict[tuple, float]:
    """{(sample name, sorted labels): value} from http://127.0.0.1:PORT/metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples, name, **labels) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def test_library_metrics_match_the_results(cpu_runtime, numbered):
    metrics = LiveMetrics()
    port = metrics.serve(0)
    seen = collections.Counter()
    passes = collections.Counter()
    calls = []
    scraped_during = threading.Event()

    def on_result(frame, result):
        seen[frame.stream] += 1

    def on_batch(frames, results):
        calls.append(len(results))
        for width, n in next(iter(results.values())).timing.passes.items():
            passes[width] += n

    def on_step():  # before this step's health update: a scrape sees the counts of the steps before
        if not scraped_during.is_set() and sum(seen.values()) >= 4:
            during = scrape(port)
            assert value(during, "edge_mimo_stream_state", stream="a", edge_mimo_stream_state="live") == 1.0
            assert value(during, "edge_mimo_results_total", stream="a") == seen["a"]
            scraped_during.set()

    try:
        with StreamMux({"a": numbered["a"], "b": numbered["b"]}) as mux:
            live.run(cpu_runtime, mux, on_result, on_batch=on_batch, on_step=on_step, metrics=metrics,
                     gather_ms=20, poll=0.1, duration=60)
            metrics.update(mux.health())  # the last state changes came after the last step
            samples = scrape(port)
        assert scraped_during.is_set()
        for name in ("a", "b"):
            assert value(samples, "edge_mimo_results_total", stream=name) == seen[name] > 0
            assert value(samples, "edge_mimo_errors_total", stream=name) == 0
            assert value(samples, "edge_mimo_latency_seconds_count", stream=name) == seen[name]
            assert value(samples, "edge_mimo_stream_state", stream=name, edge_mimo_stream_state="ended") == 1.0
            assert value(samples, "edge_mimo_captured_frames", stream=name) == 60
            assert 0 <= value(samples, "edge_mimo_uncertain_rate", stream=name) <= 1
        assert {w: value(samples, "edge_mimo_passes_total", width=str(w)) for w in passes} == dict(passes)
        assert value(samples, "edge_mimo_infer_seconds_count") == len(calls)
        metrics.update({"a": mux.health()["a"]})  # b removed: its series go
        assert value(scrape(port), "edge_mimo_results_total", stream="b") is None
        assert value(scrape(port), "edge_mimo_results_total", stream="a") == seen["a"]
    finally:
        metrics.close()


def test_serving_on_a_taken_port_names_the_fix():
    first = LiveMetrics()
    port = first.serve(0)
    try:
        with pytest.raises(ConfigError, match="choose a free port"):
            LiveMetrics().serve(port)
    finally:
        first.close()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_run_metrics_port_scraped_during_a_run_match_the_json_lines(cpu_bundle, numbered, tmp_path):
    port = free_port()
    proc, out, err = start_run(cpu_bundle, "--source", f"a={numbered['a']}", "--source", f"b={numbered['b']}",
                               "--loop", "--duration", "120", "--metrics-port", str(port), tmp_path=tmp_path)
    try:
        def scraped_results():
            try:
                samples = scrape(port)
            except OSError:
                return None
            return samples if (value(samples, "edge_mimo_results_total", stream="b") or 0) >= 5 else None

        assert wait_for(lambda: scraped_results() is not None), err.read_text()
        during = scrape(port)
        assert value(during, "edge_mimo_stream_state", stream="a", edge_mimo_stream_state="live") == 1.0
        assert value(during, "edge_mimo_capture_fps", stream="a") > 0
        lines = records(out)
        # a batch's JSON lines are flushed before its results are counted: the counts never run ahead of them
        for name in ("a", "b"):
            mine = [r for r in lines if r["stream"] == name]
            assert 0 < value(during, "edge_mimo_results_total", stream=name) <= len(mine)
            assert value(during, "edge_mimo_uncertain_total", stream=name) <= sum(r["uncertain"] for r in mine)
        assert sum(value(during, "edge_mimo_passes_total", width=str(w)) or 0 for w in (1, 2, 4)) > 0
    finally:
        rc = stop_run(proc)
    assert rc == 0, err.read_text()
    assert f"metrics on http://127.0.0.1:{port}/metrics" in err.read_text()
