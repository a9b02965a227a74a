"""``edge-mimo``: one sub-command per stage. Each sub-command module has ``add_parser`` and ``run``."""

from __future__ import annotations

import argparse
import importlib
import sys

from .. import __version__
from ..errors import EdgeMimoError

COMMANDS = ("train", "info", "targets", "compile", "build-engines", "run", "bench", "eval")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edge-mimo", description="Superposed (MIMO) classifiers on edge devices.")
    parser.add_argument("--version", action="version", version=f"edge-mimo {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        module = importlib.import_module(f".{name.replace('-', '_')}", __package__)
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args) or 0
    except (EdgeMimoError, FileNotFoundError, ValueError) as e:
        print(f"edge-mimo {args.command}: error: {e}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as e:
        if e.name in ("torch", "onnx", "onnxscript", "safetensors"):
            print(
                f"edge-mimo {args.command}: error: this command needs {e.name}: "
                "install the compile extra with `pip install 'edge-mimo[compile]'`",
                file=sys.stderr,
            )
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
