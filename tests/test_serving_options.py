"""Issue 21, item 8: `edge-mimo serve` options that gave tracebacks, some after Ray had started: refused first."""

import importlib.util
import socket
import subprocess
import sys

import pytest


@pytest.mark.parametrize("options", [["--num-cpus", "inf"], ["--num-cpus", "nan"], ["--num-cpus", "1e9"],
                                     ["--port", "70000"], ["--port", "-1"], ["--threads", "-1"],
                                     ["--threads", "1000000"], ["--host", "no-such-host.invalid"],
                                     ["--max-pixels", "0"], ["--max-body-mb", "inf"], ["--body-timeout-s", "0"]])
def test_bad_serve_options_are_one_line_before_ray_starts(cpu_bundle, options):
    proc = subprocess.run([sys.executable, "-m", "edge_mimo.cli.main", "serve", str(cpu_bundle), *options],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "Ray" not in proc.stderr and "ray" not in proc.stdout, proc.stderr


def test_a_port_in_use_is_refused_before_ray_starts(cpu_bundle):
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        proc = subprocess.run([sys.executable, "-m", "edge_mimo.cli.main", "serve", str(cpu_bundle), "--port",
                               str(port)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "cannot listen" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed here")
def test_backend_tensorrt_without_tensorrt_is_one_line_before_ray_starts(cpu_bundle):
    proc = subprocess.run([sys.executable, "-m", "edge_mimo.cli.main", "serve", str(cpu_bundle), "--backend",
                           "tensorrt"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "TensorRT is not installed" in proc.stderr and "onnxruntime" in proc.stderr, proc.stderr
    assert "ray" not in (proc.stderr + proc.stdout).lower().replace("array", ""), proc.stderr
