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

MODULES = ("numpy", "cv2", "onnxruntime", "tensorrt", "cuda")  # everything the runtime's backends import
REQUIRED = ("numpy", "cv2", "onnxruntime")
TENSORRT_BACKEND = ("tensorrt", "cuda")  # backend="tensorrt" imports both (cuda: cuda-python's runtime bindings)
FIX = {
    "numpy": "pip install numpy",
    "cv2": "pip install opencv-python-headless, or on a Jetson use JetPack's OpenCV (python3-opencv) from a venv "
           "made with --system-site-packages",
    "onnxruntime": "pip install onnxruntime, or on a Jetson NVIDIA's onnxruntime-gpu wheel for JetPack",
    "ray": "install the serve extra: pip install 'edge-mimo[serve]'",
    "tensorrt": "for backend tensorrt: JetPack ships it (python3-libnvinfer, seen from a --system-site-packages "
                "venv); elsewhere pip install tensorrt",
    "cuda": "for backend tensorrt: pip install cuda-python (its CUDA runtime bindings; also on a Jetson)",
}
DISTRIBUTIONS = {  # the pip distributions that can provide each module
    "numpy": ("numpy",),
    "cv2": ("opencv-python", "opencv-python-headless", "opencv-contrib-python", "opencv-contrib-python-headless"),
    "onnxruntime": ("onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino", "onnxruntime-directml"),
    "tensorrt": ("tensorrt", "tensorrt-cu12", "tensorrt-cu12-bindings", "tensorrt-cu13", "tensorrt-cu13-bindings"),
    "cuda": ("cuda-python", "cuda-bindings"),
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


def _distribution(module: str, path: Path) -> str | None:
    """The pip distribution whose files hold ``module`` at ``path`` (None: the system's, e.g. JetPack's)."""
    for name in DISTRIBUTIONS.get(module, (module,)):
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        if Path(dist.locate_file(module)).resolve() == path.resolve():
            return name
    return None


def describe(module: str) -> dict:
    """Version, location, the pip distribution that installed it (None: the system's) and module details."""
    try:
        mod = importlib.import_module(module)
    except ImportError as e:
        return {"module": module, "ok": False, "error": f"{e}: {FIX[module]}"}
    path = Path(mod.__file__).parent if getattr(mod, "__file__", None) else Path(list(mod.__path__)[0])  # namespace
    version = getattr(mod, "__version__", None)
    dist = _distribution(module, path)
    if version is None and dist:
        version = importlib.metadata.version(dist)
    info = {"module": module, "ok": True, "version": version or "?", "path": str(path), "distribution": dist,
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
    ok = {r["module"] for r in report if r["ok"]}
    if ok & set(TENSORRT_BACKEND) and not ok >= set(TENSORRT_BACKEND):
        lacking = next(m for m in TENSORRT_BACKEND if m not in ok)
        print(f"warning: backend tensorrt needs {' and '.join(TENSORRT_BACKEND)}; {lacking} is missing: "
              f"{FIX[lacking]}", file=sys.stderr)
    for r in missing:
        print(f"edge-mimo check: error: {r['module']} is missing: {FIX[r['module']]}", file=sys.stderr)
    return 2 if missing else 0
