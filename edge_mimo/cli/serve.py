"""``edge-mimo serve``: a bundle behind Ray Serve (HTTP and Ray handles) until Ctrl-C or SIGTERM.

Ray is imported only in :func:`run`, after the environment that keeps a local Ray on loopback is set.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import logging
import os
import signal
import socket
import threading

from ..engines import BACKENDS
from ..engines.device import device_identity
from ..errors import BackendUnavailableError, ConfigError
from ..runtime import POLICIES
from ..serving.packing import DEFAULT_MAX_PIXELS

if importlib.util.find_spec("ray") is None:  # the CLI then lists this command as needing Ray, as if imported here
    raise ModuleNotFoundError("No module named 'ray'", name="ray")

EXPOSURE = ("What listens where: with a loopback --host and no --address, Ray's own servers (GCS, raylet, object "
            "manager, workers, agents, HTTP proxy) listen on 127.0.0.1 only and the dashboard is off; Ray Serve "
            "still opens one inter-deployment gRPC port per replica (random ports, two with one replica) on every "
            "interface, which Ray 2.60 offers no option to bind: firewall the machine on an untrusted network. "
            "With any other --host, or with --address, Ray's servers listen on every interface.")


def add_parser(sub) -> None:
    """Register ``edge-mimo serve``."""
    p = sub.add_parser("serve", help="serve a bundle over HTTP with Ray Serve; calls are packed into shared passes",
                       epilog=EXPOSURE)
    p.add_argument("bundle", help="bundle directory written by `edge-mimo compile` (on every node of the cluster)")
    p.add_argument("--address", help="join this Ray cluster (e.g. ray://head:10001 or auto); default: a local one")
    p.add_argument("--host", default="127.0.0.1", help="HTTP address (default: loopback only; 0.0.0.0: every interface)")
    p.add_argument("--port", type=int, default=8000, help="HTTP port (default 8000)")
    p.add_argument("--replicas", type=int, default=1, help="replicas, each with its own copy of the model")
    p.add_argument("--min-replicas", type=int, help="autoscale between --min-replicas and --max-replicas instead")
    p.add_argument("--max-replicas", type=int)
    p.add_argument("--num-cpus", type=float, default=1.0, help="CPUs Ray reserves per replica (default 1)")
    p.add_argument("--threads", type=int, help="ONNX Runtime threads per replica (default: --num-cpus)")
    p.add_argument("--max-batch-size", type=int, help="calls classified together (a multiple of the capacity; "
                                                      "default 4 x capacity)")
    p.add_argument("--batch-wait-ms", type=float, default=5.0,
                   help="how long a batch's first call waits for others (default 5)")
    p.add_argument("--policy", default="throughput", choices=POLICIES, help="policy of calls that name none")
    p.add_argument("--backend", default="auto", choices=BACKENDS)
    p.add_argument("--max-body-mb", type=float, default=16.0,
                   help="largest HTTP body accepted, in MiB (default 16; larger: 413)")
    p.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                   help=f"most pixels of an image, read from its header before decoding (default {DEFAULT_MAX_PIXELS}"
                        " = 4096x4096; more: 400)")
    p.add_argument("--body-timeout-s", type=float, default=10.0,
                   help="seconds a client may take to send its body (default 10; slower: 408)")
    p.set_defaults(run=run)


def check_listen(host: str, port: int) -> None:
    """ConfigError unless ``port`` is a port number that ``host`` can listen on now (before Ray starts)."""
    if not 1 <= port <= 65535:
        raise ConfigError(f"--port must be a port number 1..65535, got {port}")
    try:
        with socket.create_server((host, port)):
            pass
    except OSError as e:
        raise ConfigError(f"cannot listen on {host}:{port} ({e.strerror or e}): choose a free --port, or a --host "
                          "address of this machine") from None


def check_backend(backend: str, address: str | None) -> None:
    """ConfigError naming the fix when a local Ray is asked for TensorRT that this machine lacks."""
    if backend == "tensorrt" and not address:
        try:
            device_identity()
        except BackendUnavailableError as e:
            raise ConfigError(f"--backend tensorrt: {e}") from None


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine's loopback interface (localhost, 127.x, ::1)."""
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run(args) -> int:
    """Deploy, print the route, wait for Ctrl-C / SIGTERM, then shut down what this command started."""
    if not args.address and is_loopback(args.host):
        # Ray then takes 127.0.0.1 as the node address and binds its servers there (read when ray is imported)
        os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    import ray
    from ray import serve

    from ..serving.ray_serve import APP_NAME, ROUTE, ServeOptions, build_app

    options = ServeOptions(replicas=args.replicas, min_replicas=args.min_replicas, max_replicas=args.max_replicas,
                           num_cpus=args.num_cpus, threads=args.threads, max_batch_size=args.max_batch_size,
                           batch_wait_ms=args.batch_wait_ms, policy=args.policy, backend=args.backend,
                           max_body_mb=args.max_body_mb, max_pixels=args.max_pixels,
                           body_timeout_s=args.body_timeout_s)
    app = build_app(args.bundle, options)  # a bad bundle or option fails here, before Ray starts
    check_backend(args.backend, args.address)
    check_listen(args.host, args.port)
    # "local": a Ray of our own, even where RAY_ADDRESS names a cluster (whose Serve we would shut down on exit)
    ray.init(address=args.address or "local", include_dashboard=False, logging_level=logging.WARNING,
             configure_logging=False)
    stop = threading.Event()  # after ray.init, which installs its own SIGTERM handler
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        serve.start(http_options={"host": args.host, "port": args.port})
        serve.run(app, name=APP_NAME, route_prefix=ROUTE)
        url = f"http://{args.host}:{args.port}{ROUTE}"
        print(f"serving {args.bundle} at {url}: POST an encoded image, e.g. "
              f"curl --data-binary @frame.jpg '{url}?policy=robust' (Ctrl-C to stop)", flush=True)
        stop.wait()
    finally:
        if args.address:  # someone else's cluster: remove only this application
            serve.delete(APP_NAME)
        else:
            serve.shutdown()
        ray.shutdown()
        for s, handler in previous.items():
            signal.signal(s, handler)
    print("stopped", flush=True)
    return 0
