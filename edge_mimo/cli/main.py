"""``edge-mimo``: one sub-command per stage. Each sub-command module has ``add_parser`` and ``run``."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import signal
import sys
import threading

from .. import __version__
from ..errors import EdgeMimoError
from .check import FIX

COMMANDS = {  # name -> the one-line summary of `edge-mimo --help` (each module's add_parser gives the same help)
    "train": "train a MIMOConv / MIMOFormer / MIMO / MixMo classifier",
    "info": "describe a model or a bundle: architecture, widths, MACs, accuracy",
    "targets": "list deployment targets",
    "compile": "quantize a model to INT8 and write a bundle for a target",
    "build-engines": "build TensorRT engines for this GPU into a TensorRT-target bundle",
    "verify": "check every file of a bundle against the sha256 in its manifest",
    "export-triton": "write a Triton model repository that packs requests into superposed passes "
                     "(docs/serving.md)",
    "triton-server": "start a Triton Inference Server on a model repository written by export-triton",
    "run": "classify live sources (files, RTSP/HTTP, V4L2, GStreamer) with a bundle",
    "bench": "measure the superposition speed-up of a bundle against baselines",
    "eval": "run a bundle through the camera-condition suite (accuracy, flags, OOD AUROC)",
    "twin": "train, compile and bench the equal-cost plain twin of a model; a verdict per width",
    "serve": "serve a bundle over HTTP with Ray Serve; calls are packed into shared passes",
    "check": "show which OpenCV / ONNX Runtime / TensorRT edge-mimo uses, and from where",
}


NEEDS = {"serve": "ray"}  # an optional dependency a command cannot start without (named in the --help listing)


def _importable(module: str) -> bool:
    """Whether ``module`` can be found, without importing it."""
    if module in sys.modules:
        return sys.modules[module] is not None
    return importlib.util.find_spec(module) is not None


def _command(argv: list[str]) -> str | None:
    """The sub-command named in ``argv`` (the first word that is not an option), if any."""
    return next((a for a in argv if not a.startswith("-")), None)


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The ``edge-mimo`` parser. Only the sub-command named in ``argv`` is imported (its dependencies, Ray, OpenCV,
    ONNX Runtime, torch, load only when it runs); the others are listed by their summary. ``argv=None``: all."""
    parser = argparse.ArgumentParser(prog="edge-mimo", description="Superposed (MIMO) classifiers on edge devices.")
    parser.add_argument("--version", action="version", version=f"edge-mimo {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    chosen = _command(argv) if argv is not None else None
    for name, summary in COMMANDS.items():
        if argv is not None and name != chosen:
            missing = NEEDS.get(name)
            sub.add_parser(name, add_help=False, help=summary if not missing or _importable(missing)
                           else f"(unavailable: needs {missing}) {summary}")
            continue
        try:
            module = importlib.import_module(f".{name.replace('-', '_')}", __package__)
        except ModuleNotFoundError as e:  # a lean or broken install: the other commands (``check``) still work
            if e.name not in FIX:
                raise
            _unavailable(sub, name, e.name)
            continue
        module.add_parser(sub)
    return parser


def _unavailable(sub, name: str, missing: str) -> None:
    """A placeholder for a command whose runtime dependency ``missing`` cannot be imported here."""

    def run(args) -> int:
        print(f"edge-mimo {name}: error: this command needs {missing}, which cannot be imported: {FIX[missing]} "
              "(`edge-mimo check` shows what is installed)", file=sys.stderr)
        return 2

    p = sub.add_parser(name, help=f"(unavailable: needs {missing})", add_help=False)
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(run=run)


def configure_logging(quiet: bool) -> None:
    """edge-mimo's progress messages on stderr (warnings only with ``--json``); other libraries' warnings too."""
    logging.basicConfig(format="%(message)s")
    logging.getLogger("edge_mimo").setLevel(logging.WARNING if quiet else logging.INFO)


def _terminated(signum: int, frame) -> None:
    """SIGTERM unwinds like Ctrl-C: temporary directories are removed and cameras closed on the way out."""
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    """Run one ``edge-mimo`` sub-command; returns the exit status (2 with a one-line message for user errors: the
    project's own errors, :class:`EdgeMimoError`; anything else is a bug and shows as one, with its traceback)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(argv).parse_args(argv)
    configure_logging(getattr(args, "json", False))
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminated) if main_thread else None
    try:
        return args.run(args) or 0
    except EdgeMimoError as e:
        print(f"edge-mimo {args.command}: error: {e}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as e:
        if e.name in ("cv2", "onnxruntime"):
            print(f"edge-mimo {args.command}: error: this command needs {e.name}: {FIX[e.name]}", file=sys.stderr)
            return 2
        if e.name in ("torch", "onnx", "onnxscript", "safetensors", "tqdm", "matplotlib"):
            print(
                f"edge-mimo {args.command}: error: this command needs {e.name}: "
                "install the compile extra with `pip install 'edge-mimo[compile]'`",
                file=sys.stderr,
            )
            return 2
        raise
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
