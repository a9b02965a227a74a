"""``edge-mimo triton-server``: run Triton Inference Server on a model repository (the nvidia-pytriton binary)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ..errors import ConfigError, NotFoundError


def add_parser(sub) -> None:
    """Register ``edge-mimo triton-server``."""
    p = sub.add_parser("triton-server",
                       help="start a Triton Inference Server on a model repository written by export-triton",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                       description="Start the tritonserver of the nvidia-pytriton wheel (CPU, on 127.0.0.1) with "
                                   "the Python backend, on a repository written by `edge-mimo export-triton`; it "
                                   "runs until Ctrl-C. On a GPU server, run NVIDIA's Triton container instead "
                                   "(docs/serving.md).")
    p.add_argument("repository", type=Path, help="model repository (edge-mimo export-triton -o REPO)")
    p.add_argument("--http-port", type=int, default=8000)
    p.add_argument("--grpc-port", type=int, default=8001)
    p.add_argument("--metrics-port", type=int, default=8002)
    p.add_argument("--python", type=Path,
                   help="python of the server environment (default: .venv-triton beside this .venv, made by "
                        "scripts/setup.sh)")
    p.add_argument("--log", type=Path, help="write the server's log to this file (default: a temporary file)")
    p.set_defaults(run=run)


def run(args) -> int:
    """Start the server, print its endpoints, and keep it up until Ctrl-C or SIGTERM; returns the exit status."""
    from ..serving.triton.server import LocalTriton

    for name in ("http_port", "grpc_port", "metrics_port"):
        if not 1 <= getattr(args, name) <= 65535:
            raise ConfigError(f"--{name.replace('_', '-')} must be a port number 1..65535, got {getattr(args, name)}")
    if not (args.repository / "").is_dir():
        raise NotFoundError(f"{args.repository} is not a folder: write a model repository with "
                            "`edge-mimo export-triton BUNDLE -o REPO`")
    server = LocalTriton(args.repository, python=args.python, http_port=args.http_port, grpc_port=args.grpc_port,
                         metrics_port=args.metrics_port, log=args.log)
    with server:
        print(f"tritonserver ready: HTTP {server.http_url}, gRPC {server.grpc_url}, metrics {server.metrics_url} "
              f"(log: {server.log_path}); Ctrl-C stops it", flush=True)
        try:
            while server.process.poll() is None:
                time.sleep(0.5)
        except KeyboardInterrupt:
            return 0
    print(f"tritonserver exited with status {server.process.returncode}:\n{server.log_tail()}")
    return 1
