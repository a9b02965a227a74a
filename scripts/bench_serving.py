"""Serving benchmark: concurrent clients classifying camera frames through one bundle, in process and behind servers.

    .venv/bin/python scripts/bench_serving.py BUNDLE [--targets inprocess,direct,ray-http,ray-handle,triton]
        [--clients 1,8,32] [--seconds 5] [--threads 1] [--max-batch-size 16] [--batch-wait-ms 5] [-o bench_serving.json]

Every client is a thread that sends one PNG-encoded 320x240 camera frame at a time and waits for its result
(closed loop). Targets:

- ``inprocess``: the clients call into one Runtime through a tiny in-process batcher that gathers calls exactly as
  Ray Serve's ``@serve.batch`` does (up to ``--max-batch-size`` calls, waiting ``--batch-wait-ms`` after the first)
  and runs them with ``edge_mimo.serving.packing.infer_requests``: the same packing, no server.
- ``direct``: each client calls ``Runtime.infer`` on its own frame (no packing; calls take turns on the backend).
- ``ray-http``: ``edge-mimo serve``'s deployment on a local Ray instance, the PNG POSTed over HTTP (keep-alive).
- ``ray-handle``: the same deployment, the decoded frame sent through a Ray ``DeploymentHandle``.
- ``triton``: ``edge-mimo export-triton``'s packing model on a local tritonserver (``.venv-triton``, made by
  scripts/setup.sh), the decoded frame sent as a uint8 tensor over gRPC; Triton's dynamic batcher gathers up to
  ``--max-batch-size`` frames for ``--batch-wait-ms``.

Per target and client count: frames/s, p50 / p99 request latency, the widths the frames were classified at, and
the share of the p50 latency the server adds over ``inprocess`` at the same client count. Prints a markdown table
and writes JSON. Another target: subclass ``Target`` and add it to ``TARGETS``. Figures are only meaningful on a
quiet machine: the JSON records whether an ``edge-mimo train`` job was running.
"""

from __future__ import annotations

import argparse
import collections
import http.client
import json
import os
import platform
import queue
import socket
import subprocess
import threading
import time
from concurrent.futures import Future
from pathlib import Path

import cv2
import numpy as np

from edge_mimo import Runtime
from edge_mimo.camera.frames import camera_frames
from edge_mimo.datasets import shipped_sample
from edge_mimo.serving.packing import Request, decode_image, infer_requests


class Target:
    """A way to classify one encoded frame. ``call`` runs in many client threads at once and returns the
    superposition width the frame was classified at (an error raises)."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args

    def start(self) -> None:
        """Load or connect before the clock starts."""

    def call(self, body: bytes) -> int:
        raise NotImplementedError

    def stop(self) -> None:
        """Release what ``start`` took."""


class Direct(Target):
    def start(self) -> None:
        self.runtime = Runtime(self.args.bundle, threads=self.args.threads)

    def call(self, body: bytes) -> int:
        result = self.runtime.infer(decode_image(body), policy=self.args.policy)
        if not result.ok:
            raise result.error
        return result.width

    def stop(self) -> None:
        self.runtime.close()


class InProcess(Direct):
    """A batcher thread: the first waiting call opens a batch, which closes when full or ``batch_wait_ms`` later."""

    def start(self) -> None:
        super().start()
        self.calls: queue.Queue = queue.Queue()
        self.running = True
        self.worker = threading.Thread(target=self._batches, daemon=True)
        self.worker.start()

    def _batches(self) -> None:
        while self.running:
            try:
                batch = [self.calls.get(timeout=0.1)]
            except queue.Empty:
                continue
            deadline = time.perf_counter() + self.args.batch_wait_ms / 1e3
            while len(batch) < self.args.max_batch_size and (left := deadline - time.perf_counter()) > 0:
                try:
                    batch.append(self.calls.get(timeout=left))
                except queue.Empty:
                    break
            for (_, future), result in zip(batch, infer_requests(self.runtime, [r for r, _ in batch])):
                future.set_result(result)

    def call(self, body: bytes) -> int:
        future: Future = Future()
        self.calls.put((Request(decode_image(body), self.args.policy), future))
        result = future.result(timeout=60)
        if not result.ok:
            raise result.error
        return result.width

    def stop(self) -> None:
        self.running = False
        self.worker.join()
        super().stop()


class _Ray:
    """One local Ray instance and deployment shared by the Ray targets, torn down at the end of the run."""

    handle = url = None

    @classmethod
    def up(cls, args: argparse.Namespace) -> None:
        if cls.handle is not None:
            return
        import ray
        from ray import serve

        from edge_mimo.serving.ray_serve import ROUTE, ServeOptions, deploy

        ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        options = ServeOptions(num_cpus=args.threads, threads=args.threads, max_batch_size=args.max_batch_size,
                               batch_wait_ms=args.batch_wait_ms, policy=args.policy)
        cls.handle, cls.url = deploy(args.bundle, options), ("127.0.0.1", port, ROUTE)

    @classmethod
    def down(cls) -> None:
        if cls.handle is not None:
            import ray
            from ray import serve

            serve.shutdown()
            ray.shutdown()
            cls.handle = None


class RayHttp(Target):
    def start(self) -> None:
        _Ray.up(self.args)
        self.local = threading.local()

    def call(self, body: bytes) -> int:
        host, port, route = _Ray.url
        if not hasattr(self.local, "conn"):
            self.local.conn = http.client.HTTPConnection(host, port, timeout=60)
        self.local.conn.request("POST", route, body)
        response = self.local.conn.getresponse()
        answer = json.loads(response.read())
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}: {answer.get('error')}")
        return answer["width"]


class RayHandle(Target):
    def start(self) -> None:
        _Ray.up(self.args)

    def call(self, body: bytes) -> int:
        result = _Ray.handle.classify.remote(decode_image(body)).result(timeout_s=60)
        if not result.ok:
            raise result.error
        return result.width


class Triton(Target):
    """The packing model on a local tritonserver; each client thread has its own gRPC connection."""

    def start(self) -> None:
        import tempfile

        from edge_mimo.serving.triton.repo import ExportOptions, export_repository
        from edge_mimo.serving.triton.server import LocalTriton

        self.tmp = tempfile.TemporaryDirectory(prefix="bench-triton-")
        repo = Path(self.tmp.name) / "repo"
        export_repository(self.args.bundle, repo, ExportOptions(
            copy_bundle=False, policy=self.args.policy, threads=self.args.threads,
            queue_delay_us=round(self.args.batch_wait_ms * 1e3), max_batch_frames=self.args.max_batch_size))
        self.server = LocalTriton(repo).start()
        self.local, self.clients = threading.local(), []

    def call(self, body: bytes) -> int:
        import tritonclient.grpc as grpcclient

        if not hasattr(self.local, "client"):
            self.local.client = grpcclient.InferenceServerClient(self.server.grpc_url)
            self.clients.append(self.local.client)
        frame = decode_image(body)[None]
        tensor = grpcclient.InferInput("image", list(frame.shape), "UINT8")
        tensor.set_data_from_numpy(frame)
        return int(self.local.client.infer("edge_mimo", [tensor], client_timeout=60).as_numpy("width")[0, 0])

    def stop(self) -> None:
        for client in self.clients:
            client.close()
        self.server.stop()
        self.tmp.cleanup()


TARGETS: dict[str, type[Target]] = {"inprocess": InProcess, "direct": Direct, "ray-http": RayHttp,
                                     "ray-handle": RayHandle, "triton": Triton}


def load(target: Target, bodies: list[bytes], clients: int, seconds: float, warmup: float = 1.0) -> dict:
    """``clients`` closed-loop client threads for ``warmup`` + ``seconds``; statistics of the measured part."""
    start = time.perf_counter()
    measure_from, stop_at = start + warmup, start + warmup + seconds
    latencies: list[list[float]] = [[] for _ in range(clients)]
    widths: list[collections.Counter] = [collections.Counter() for _ in range(clients)]
    errors: list[BaseException] = []

    def client(k: int) -> None:
        i = k
        try:
            while (t0 := time.perf_counter()) < stop_at:
                width = target.call(bodies[i % len(bodies)])
                if t0 >= measure_from:
                    latencies[k].append(time.perf_counter() - t0)
                    widths[k][width] += 1
                i += clients
        except BaseException as e:  # reported after the run
            errors.append(e)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(f"{len(errors)} client(s) failed, first: {errors[0]!r}")
    ms = np.concatenate([np.asarray(x) for x in latencies]) * 1e3
    used = sum(widths, collections.Counter())
    return {"clients": clients, "calls": len(ms), "fps": len(ms) / seconds, "p50_ms": float(np.median(ms)),
            "p99_ms": float(np.percentile(ms, 99)), "widths": {str(w): used[w] for w in sorted(used)},
            "mean_width": sum(w * c for w, c in used.items()) / max(1, len(ms))}


def training_running() -> bool:
    """Whether an ``edge-mimo train`` job shares this machine (its figures would then be unreliable)."""
    return subprocess.run(["pgrep", "-f", "edge-mimo train"], capture_output=True).returncode == 0


def table(rows: list[dict]) -> str:
    lines = ["| target | clients | frames/s | p50 ms | p99 ms | mean width | widths (frames) | server adds (p50) |",
             "|---|---:|---:|---:|---:|---:|---|---:|"]
    for r in rows:
        adds = f"{r['server_share']:.0%}" if r.get("server_share") is not None else "-"
        widths = ", ".join(f"{w}: {c}" for w, c in r["widths"].items())
        lines.append(f"| {r['target']} | {r['clients']} | {r['fps']:.0f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | "
                     f"{r['mean_width']:.2f} | {widths} | {adds} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundle")
    p.add_argument("--targets", default="inprocess,direct,ray-http,ray-handle", help=f"from {', '.join(TARGETS)}")
    p.add_argument("--clients", default="1,8,32", help="client counts, comma-separated")
    p.add_argument("--seconds", type=float, default=5.0, help="measured seconds per target and client count")
    p.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads (and Ray CPUs) of the one runtime")
    p.add_argument("--max-batch-size", type=int, default=16)
    p.add_argument("--batch-wait-ms", type=float, default=5.0)
    p.add_argument("--policy", default="throughput")
    p.add_argument("-o", "--output", default="bench_serving.json")
    args = p.parse_args()
    names = args.targets.split(",")
    unknown = set(names) - set(TARGETS)
    if unknown:
        p.error(f"unknown targets {sorted(unknown)}: choose from {', '.join(TARGETS)}")
    busy = training_running()
    if busy:
        print("warning: an `edge-mimo train` job is running: these figures check the harness, they are not results")
    images = shipped_sample("validation").images[:64]
    bodies = [cv2.imencode(".png", f)[1].tobytes() for f in camera_frames(images, (320, 240))]

    rows = []
    try:
        for name in names:
            target = TARGETS[name](args)
            target.start()
            try:
                for clients in map(int, args.clients.split(",")):
                    rows.append({"target": name, **load(target, bodies, clients, args.seconds)})
                    print(f"{name:<11} {clients:>3} clients: {rows[-1]['fps']:.0f} frames/s", flush=True)
            finally:
                target.stop()
    finally:
        _Ray.down()
    base = {r["clients"]: r["p50_ms"] for r in rows if r["target"] == "inprocess"}
    for r in rows:
        if r["target"] not in ("inprocess", "direct") and r["clients"] in base:
            r["server_share"] = 1 - base[r["clients"]] / r["p50_ms"]
    print(table(rows))
    Path(args.output).write_text(json.dumps(
        {"bundle": args.bundle, "machine": platform.platform(), "cpus": os.cpu_count(),
         "training_running": busy, "options": {k: v for k, v in vars(args).items() if k != "output"}, "rows": rows},
        indent=2))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
