"""Start a real Triton Inference Server on this machine, from the ``nvidia-pytriton`` wheel (CPU, loopback).

The wheel ships a ``tritonserver`` binary (2.51), the Python backend and one Python-backend stub per Python
version. :class:`LocalTriton` lays out a backend directory with the stub of the server environment's Python,
starts the server on free loopback ports with that environment first on ``PATH`` (the stub imports numpy and
edge_mimo from it), waits until it is ready and stops it on exit. The server and its stubs die with the process
that started them, even when it is killed (SIGKILL: no exit handler runs). Used by the tests and the serving
benchmark; in production run NVIDIA's Triton container instead (docs/serving.md).

The server environment must hold numpy < 2 (the 2.51 stub returns empty outputs under numpy 2), OpenCV 4.x,
onnxruntime and edge_mimo: ``scripts/setup.sh`` makes it as ``.venv-triton``.
"""

from __future__ import annotations

import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from ...errors import BackendUnavailableError

MIN_GLIBC = (2, 35)
MACHINES = ("x86_64", "aarch64")
# Runs in the child before it becomes tritonserver: Linux's parent-death signal (prctl(2) PR_SET_PDEATHSIG, kept
# across execve) kills the server when the thread that started it dies, even by SIGKILL; its Python-backend stubs
# then exit on their own (they watch their parent). Exits if that parent is already gone. argv: parent pid, command.
LAUNCHER = ("import ctypes, os, signal, sys; ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL); "
            "os.getppid() == int(sys.argv[1]) or sys.exit(1); os.execv(sys.argv[2], sys.argv[2:])")
SETUP_FIX = "run `bash scripts/setup.sh` (it makes .venv-triton), or pass the python of an environment with " \
            "nvidia-pytriton, numpy<2, opencv-python-headless<5, onnxruntime and edge-mimo"


def platform_problem() -> str | None:
    """Why this machine cannot run the wheel's tritonserver binary, or None when it can."""
    if platform.system() != "Linux" or platform.machine() not in MACHINES:
        return f"tritonserver from nvidia-pytriton runs on Linux {'/'.join(MACHINES)}, this is " \
               f"{platform.system()} {platform.machine()}"
    libc, version = platform.libc_ver()
    if libc != "glibc" or tuple(int(x) for x in version.split(".")[:2]) < MIN_GLIBC:
        return f"tritonserver from nvidia-pytriton needs glibc >= {'.'.join(map(str, MIN_GLIBC))}, this has " \
               f"{libc or 'no glibc'} {version}"
    return None


def _server_env_info(python: Path) -> tuple[Path, str]:
    """(the pytriton package folder, 'major.minor') of the environment whose interpreter is ``python``."""
    code = ("import ctypes, importlib.util, sys; s = importlib.util.find_spec('pytriton'); v = '%d.%d' % "
            "sys.version_info[:2]; ctypes.CDLL(f'libpython{v}.so.1.0'); "
            "print(s.submodule_search_locations[0] if s else ''); print(v)")
    try:
        out = subprocess.run([str(python), "-P", "-c", code], capture_output=True, text=True, check=True,
                             timeout=60).stdout.split("\n")
    except subprocess.CalledProcessError as e:
        if "libpython" in e.stderr:  # the stub links the shared CPython library
            raise BackendUnavailableError(f"the Python-backend stub needs the shared library of {python}'s Python "
                                          f"({e.stderr.strip().splitlines()[-1]}): install it (Debian: "
                                          "libpython3.x), or build that Python with --enable-shared") from None
        raise BackendUnavailableError(f"{python} failed ({e.stderr.strip()[-300:]}): {SETUP_FIX}") from None
    except (OSError, subprocess.SubprocessError) as e:
        raise BackendUnavailableError(f"cannot run the Triton server environment's python {python} ({e}): "
                                      f"{SETUP_FIX}") from None
    if not out[0]:
        raise BackendUnavailableError(f"{python} has no nvidia-pytriton (which ships tritonserver): {SETUP_FIX}")
    return Path(out[0]), out[1]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalTriton:
    """A tritonserver process serving ``repository`` on 127.0.0.1; a context manager (started on enter).

    ``python``: the interpreter of the server environment (default: ``.venv-triton`` beside this checkout's
    ``.venv``, i.e. next to ``sys.prefix``). Ports are picked free unless given. ``log``: a file for the
    server's output (default: a temporary file, shown in errors). The server lives as long as the thread that
    called :meth:`start` (Linux's parent-death signal): start it from a thread that outlives it, e.g. the main one.
    """

    def __init__(self, repository: str | Path, python: str | Path | None = None, http_port: int | None = None,
                 grpc_port: int | None = None, metrics_port: int | None = None, log: str | Path | None = None,
                 ready_timeout_s: float = 90.0) -> None:
        if problem := platform_problem():
            raise BackendUnavailableError(f"{problem}: run Triton's container instead (docs/serving.md)")
        self.repository = Path(repository).resolve()
        self.python = Path(python) if python else Path(sys.prefix).parent / ".venv-triton" / "bin" / "python"
        if not self.python.exists():
            raise BackendUnavailableError(f"no Triton server environment at {self.python}: {SETUP_FIX}")
        self.http_port, self.grpc_port, self.metrics_port = (p or free_port()
                                                             for p in (http_port, grpc_port, metrics_port))
        self.ready_timeout_s = ready_timeout_s
        self._log_path = Path(log) if log else None
        self._tmp: tempfile.TemporaryDirectory | None = None
        self.process: subprocess.Popen | None = None

    @property
    def http_url(self) -> str:
        """host:port of the HTTP endpoint (``tritonclient.http``)."""
        return f"127.0.0.1:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        """host:port of the gRPC endpoint (``tritonclient.grpc``)."""
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        """The Prometheus metrics page (``nv_inference_count``, ``nv_inference_exec_count``, ...)."""
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def _backends(self, root: Path, server: Path, py: str) -> Path:
        """A backend directory holding the Python backend with the stub built for Python ``py``."""
        stub = server / "python_backend_stubs" / py / "triton_python_backend_stub"
        if not stub.is_file():
            raise BackendUnavailableError(f"nvidia-pytriton has no Python-backend stub for Python {py}: "
                                          f"make the server environment with Python 3.8 to 3.13")
        backends = root / "backends"
        shutil.copytree(server / "backends", backends, ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy2(stub, backends / "python" / stub.name)
        return backends

    def start(self) -> "LocalTriton":
        """Start the server and wait until it is ready (BackendUnavailableError with its log if it is not)."""
        package, py = _server_env_info(self.python)
        server = package / "tritonserver"
        self._tmp = tempfile.TemporaryDirectory(prefix="edge-mimo-triton-")
        root = Path(self._tmp.name)
        backends = self._backends(root, server, py)
        self._log_path = self._log_path or root / "tritonserver.log"
        libs = [str(server / "lib"), str(package.parent / "nvidia_pytriton.libs")]
        env = dict(os.environ, PATH=f"{self.python.parent}{os.pathsep}{os.environ.get('PATH', '')}",
                   LD_LIBRARY_PATH=os.pathsep.join(libs + [os.environ.get("LD_LIBRARY_PATH", "")]).rstrip(os.pathsep))
        cmd = [str(server / "bin" / "tritonserver"), f"--model-repository={self.repository}",
               f"--backend-directory={backends}", "--http-address=127.0.0.1", f"--http-port={self.http_port}",
               "--grpc-address=127.0.0.1", f"--grpc-port={self.grpc_port}", "--metrics-address=127.0.0.1",
               f"--metrics-port={self.metrics_port}", "--allow-gpu-metrics=false", "--allow-cpu-metrics=false",
               "--exit-on-error=true", "--strict-readiness=true", "--exit-timeout-secs=10"]
        with open(self._log_path, "wb") as log:
            self.process = subprocess.Popen([sys.executable, "-I", "-S", "-c", LAUNCHER, str(os.getpid()), *cmd],
                                            stdout=log, stderr=subprocess.STDOUT, env=env,
                                            start_new_session=True)
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout_s
        url = f"http://{self.http_url}/v2/health/ready"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                tail = self.log_tail()
                self.stop()
                raise BackendUnavailableError(f"tritonserver exited with status {self.process.returncode} before "
                                              f"it was ready:\n{tail}")
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.25)
        tail = self.log_tail()
        self.stop()
        raise BackendUnavailableError(f"tritonserver was not ready within {self.ready_timeout_s:.0f} s:\n{tail}")

    @property
    def log_path(self) -> Path | None:
        """The file the server's output goes to (None before start)."""
        return self._log_path

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the server's log."""
        try:
            return "\n".join(self._log_path.read_text(errors="replace").splitlines()[-lines:])
        except (OSError, AttributeError):
            return "(no log)"

    def stop(self, timeout_s: float = 30.0) -> int | None:
        """Stop the server (SIGTERM, then SIGKILL after ``timeout_s``); returns its exit status."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        status = self.process.returncode if self.process else None
        if self._tmp is not None:
            if self._log_path and self._log_path.is_relative_to(Path(self._tmp.name)):
                self._log_path = None  # gone with the temporary directory
            self._tmp.cleanup()
            self._tmp = None
        return status

    def __enter__(self) -> "LocalTriton":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
