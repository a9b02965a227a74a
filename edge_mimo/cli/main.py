"""``edge-mimo``: one sub-command per stage. Each sub-command module has ``add_parser`` and ``run``."""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
import sys
import threading

from .. import __version__
from ..errors import EdgeMimoError
from .check import FIX

COMMANDS = ("train", "info", "targets", "compile", "build-engines", "verify", "export-triton", "run", "bench", "eval",
            "twin", "serve", "check")


def build_parser() -> argparse.ArgumentParser:
    """The ``edge-mimo`` parser with one sub-parser per command."""
    parser = argparse.ArgumentParser(prog="edge-mimo", description="Superposed (MIMO) classifiers on edge devices.")
    parser.add_argument("--version", action="version", version=f"edge-mimo {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
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
    """Run one ``edge-mimo`` sub-command; returns the exit status (2 with a one-line message for user errors)."""
    args = build_parser().parse_args(argv)
    configure_logging(getattr(args, "json", False))
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminated) if main_thread else None
    try:
        return args.run(args) or 0
    except (EdgeMimoError, FileNotFoundError, ValueError) as e:
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
