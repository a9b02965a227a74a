"""``edge-mimo check``: which OpenCV, ONNX Runtime and TensorRT the runtime uses, and where they come from.

On a Jetson, JetPack's OpenCV (with GStreamer, for CSI cameras) and NVIDIA's onnxruntime-gpu must stay the ones
imported: this says if a pip wheel shadows them (see the README's "Install" section for the lean install).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import re
import sys
from pathlib import Path

MODULES = ("numpy", "cv2", "onnxruntime", "tensorrt")
REQUIRED = ("numpy", "cv2", "onnxruntime")
FIX = {
    "numpy": "pip install numpy",
    "cv2": "pip install opencv-python-headless, or on a Jetson use JetPack's OpenCV (python3-opencv) from a venv "
           "made with --system-site-packages",
    "onnxruntime": "pip install onnxruntime, or on a Jetson NVIDIA's onnxruntime-gpu wheel for JetPack",
    "ray": "install the serve extra: pip install 'edge-mimo[serve]'",
    "tensorrt": "optional: pip install 'edge-mimo[tensorrt]' on an NVIDIA device (JetPack ships it)",
}


def add_parser(sub) -> None:
    """Register ``edge-mimo check``."""
    p = sub.add_parser("check", help="show which OpenCV / ONNX Runtime / TensorRT edge-mimo uses, and from where")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(run=run)


def locations(module: str) -> list[str]:
    """Every copy of ``module`` on ``sys.path``, in import order (the first one is imported)."""
    found = []
    for entry in sys.path:
        base = Path(entry or ".")
        if (base / module / "__init__.py").is_file() or any(base.glob(f"{module}.*.so")) or (
                base / f"{module}.py").is_file():
            found.append(str((base / module).resolve()))
    return found


def describe(module: str) -> dict:
    """Version, location, the pip distribution that installed it (None: the system's) and module details."""
    try:
        mod = importlib.import_module(module)
    except ImportError as e:
        return {"module": module, "ok": False, "error": f"{e}: {FIX[module]}"}
    dists = importlib.metadata.packages_distributions().get(module, [])
    info = {"module": module, "ok": True, "version": getattr(mod, "__version__", "?"),
            "path": str(Path(mod.__file__).parent), "distribution": dists[0] if dists else None,
            "copies": locations(module)}
    if module == "cv2":
        info["gstreamer"] = bool(re.search(r"GStreamer:\s+YES", mod.getBuildInformation()))
    if module == "onnxruntime":
        info["providers"] = mod.get_available_providers()
    return info


def run(args) -> int:
    """Print where each runtime dependency comes from; returns 2 when a required one is missing."""
    report = [describe(m) for m in MODULES]
    missing = [r for r in report if not r["ok"] and r["module"] in REQUIRED]
    shadowed = [r for r in report if r["ok"] and len(r["copies"]) > 1]
    if args.json:
        print(json.dumps(report, indent=2))
    for r in report if not args.json else ():
        if not r["ok"]:
            print(f"{r['module']:<12} missing ({r['error']})")
            continue
        origin = f"pip {r['distribution']}" if r["distribution"] else "system / not pip"
        extra = (f", GStreamer {'yes' if r['gstreamer'] else 'no'}" if "gstreamer" in r else "") + (
            f", providers {', '.join(r['providers'])}" if "providers" in r else "")
        print(f"{r['module']:<12} {r['version']:<10} {origin:<34} {r['path']}{extra}")
    for r in shadowed:
        print(f"warning: {r['module']} at {r['copies'][0]} ({r['distribution'] or 'system'}) shadows "
              f"{', '.join(r['copies'][1:])}: to use the latter (e.g. JetPack's), "
              + (f"pip uninstall {r['distribution']}" if r["distribution"] else "remove the first from the path"),
              file=sys.stderr)
    for r in missing:
        print(f"edge-mimo check: error: {r['module']} is missing: {FIX[r['module']]}", file=sys.stderr)
    return 2 if missing else 0
