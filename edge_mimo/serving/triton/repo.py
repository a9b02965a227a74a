"""Write a Triton model repository for a bundle: the packing model and, optionally, one engine model per width.

``REPO/<name>/``: the packing model (Python backend). ``1/model.py`` is a one-line adapter importing
:class:`~edge_mimo.serving.triton.backend.TritonPythonModel`; ``1/bundle/`` is a copy of the bundle (or the
config names the bundle's absolute path, ``copy_bundle=False``), sha256-checked when Triton loads the model.

``REPO/<name>_width<n>/`` (``engine_models=True``): each width's graph as a model of its own, which the packing
model calls through BLS: ``tensorrt_plan`` with ``cc_model_filenames`` per compute capability (a TensorRT
bundle with plans from ``edge-mimo build-engines``), ``onnxruntime_onnx`` (the INT8 ONNX, or FP32 when the bundle
has no INT8), or ``python`` (ONNX Runtime inside Triton's Python backend: what runs on a server without the
TensorRT and ONNX Runtime backends, such as the one the tests start).
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from ...atomic import atomic_entries, check_replaceable
from ...bundle.manifest import Manifest, verify_artifacts
from ...bundle.names import INPUT_NAME, OUTPUT_NAME
from ...errors import ConfigError
from ...runtime.runtime import MAX_GROUPS_PER_RUN, MAX_THREADS
from ...runtime.scheduler import InferOptions
from .backend import INPUT, MODEL_NAME, OUTPUTS
from .pbtxt import Enum, string_parameters, to_pbtxt

log = logging.getLogger(__name__)

PLATFORMS = ("auto", "tensorrt", "onnxruntime", "python")
CONFIG = "config.pbtxt"
# The sane range of each numeric option (docs/serving.md): beyond it Triton refuses the config, or the export or the
# server runs out of memory. option -> (lowest, highest, what it counts).
LIMITS: dict[str, tuple[int, int, str]] = {
    "instances": (1, 64, "packing model instances, each a Python process holding the bundle"),
    "queue_delay_us": (0, 1_000_000, "microseconds the dynamic batcher waits; longer only delays the answers"),
    "threads": (0, MAX_THREADS, "ONNX Runtime threads per instance, 0: its choice"),
    "max_batch_frames": (1, 1024, "frames Triton hands to one execution"),
}
PACKING_MODEL_PY = '''"""Triton Python-backend adapter of an edge-mimo packing model (`edge-mimo export-triton`).

Needs edge-mimo in the server's Python environment (`pip install edge-mimo`, numpy < 2 for Triton 2.51's stub).
"""

from edge_mimo.serving.triton.backend import TritonPythonModel  # noqa: F401
'''
ENGINE_MODEL_PY = '''"""Triton Python-backend adapter: one edge-mimo width run by ONNX Runtime (`edge-mimo export-triton`)."""

from edge_mimo.serving.triton.engine_model import TritonPythonModel  # noqa: F401
'''


@dataclass(frozen=True)
class ExportOptions:
    """How to write the repository (see :func:`export_repository`)."""

    name: str = "edge_mimo"
    copy_bundle: bool = True
    engine_models: bool = False
    platform: str = "auto"
    policy: str = "throughput"
    budget_ms: float | None = None
    threads: int | None = None
    queue_delay_us: int = 2000
    max_batch_frames: int | None = None  # default: 8 x capacity
    instances: int = 1
    overwrite: bool = False


def export_repository(bundle: str | Path, repo: str | Path, options: ExportOptions = ExportOptions()) -> list[Path]:
    """Write the packing model (and engine models) for ``bundle`` into the repository ``repo``; their folders.

    All or nothing: every check runs before anything is written, the models are written in a staging folder beside
    ``repo`` and swapped in together; a failure (Ctrl-C included) leaves ``repo`` as it was.
    """
    _check(options)
    bundle, repo = Path(bundle).resolve(), Path(repo)
    manifest = Manifest.load(bundle)
    verify_artifacts(bundle, manifest)
    platform, widths = "", {}
    if options.engine_models:
        platform = engine_platform(manifest, options.platform)
        widths = {n: f"{options.name}_width{n}" for n in sorted(manifest.widths)}
    _check_targets(repo, [*widths.values(), options.name], options.overwrite)
    engines: dict[str, dict] = {}
    with atomic_entries(repo) as stage:
        for n, model in widths.items():
            files, max_batch = _write_engine_model(bundle, manifest, n, platform, stage / model)
            engines[str(n)] = {"model": model, "files": files, "max_batch": max_batch}
        _write_packing_model(bundle, manifest, stage / options.name, options, engines)
    return [repo / model for model in (*widths.values(), options.name)]


def _check(options: ExportOptions) -> None:
    InferOptions(options.policy, options.budget_ms)
    if options.platform not in PLATFORMS:
        raise ConfigError(f"engine platform {options.platform!r} is unknown: choose one of {', '.join(PLATFORMS)}")
    if not MODEL_NAME.fullmatch(options.name):
        raise ConfigError(f"model name {options.name!r} must be letters, digits, '_' or '-': e.g. edge_mimo")
    for option, (low, high, what) in LIMITS.items():
        value = getattr(options, option)
        if value is not None and not (isinstance(value, int) and not isinstance(value, bool) and low <= value <= high):
            raise ConfigError(f"--{option.replace('_', '-')} {value!r} is out of range: give a whole number in "
                              f"{low}..{high} ({what})")


def _check_targets(repo: Path, models: list[str], overwrite: bool) -> None:
    """Refuse, before anything is written, a repository that is not a folder and model folders that exist
    without ``overwrite`` or that are not models (no config.pbtxt)."""
    if os.path.lexists(repo) and not repo.is_dir():
        raise ConfigError(f"{repo} is not a folder: give a model repository folder (new or existing) with -o")
    for model in models:
        target = repo / model
        if os.path.lexists(target):
            if not overwrite:
                raise ConfigError(f"{target} exists: pass --force to replace it, or choose another repository or "
                                  "--name")
            check_replaceable(target, CONFIG)


def engine_platform(manifest: Manifest, platform: str = "auto") -> str:
    """'auto': TensorRT plans when the bundle has some for every width, else ONNX Runtime."""
    has_plans = all(manifest.artifacts[n].engines for n in manifest.widths)
    if platform == "auto":
        return "tensorrt" if has_plans else "onnxruntime"
    if platform == "tensorrt" and not has_plans:
        raise ConfigError("the bundle has no TensorRT plan for every width: run `edge-mimo build-engines BUNDLE` "
                          "on the device first, or pass --platform onnxruntime")
    return platform


def _write_packing_model(bundle: Path, manifest: Manifest, target: Path, options: ExportOptions,
                         engines: dict[str, dict]) -> None:
    """The packing model's folder ``target`` (its name is the model's)."""
    capacity = manifest.model.capacity
    max_batch = options.max_batch_frames or 8 * capacity
    preferred = [k for k in range(capacity, max_batch + 1, capacity)]
    params: dict[str, object] = {"policy": options.policy, "bundle": "bundle" if options.copy_bundle else str(bundle)}
    if options.budget_ms is not None:
        params["budget_ms"] = str(options.budget_ms)
    if options.threads is not None:
        params["threads"] = str(options.threads)
    if engines:
        params["engine_models"] = engines
    outputs = [{"name": name, "data_type": Enum(dtype),
                "dims": [manifest.model.num_classes] if name == "probabilities" else [1]}
               for name, dtype, _, _ in OUTPUTS]
    config = {
        "name": target.name, "backend": "python", "max_batch_size": max_batch,
        "input": [{"name": INPUT, "data_type": Enum("TYPE_UINT8"), "dims": [-1, -1, 3], "allow_ragged_batch": True}],
        "output": outputs,
        "instance_group": [{"count": options.instances, "kind": Enum("KIND_CPU")}],
        "dynamic_batching": {"preferred_batch_size": preferred,
                             "max_queue_delay_microseconds": options.queue_delay_us},
        "parameters": string_parameters(params),
    }
    (target / "1").mkdir(parents=True)
    (target / "1" / "model.py").write_text(PACKING_MODEL_PY)
    if options.copy_bundle:
        shutil.copytree(bundle, target / "1" / "bundle")
        verify_artifacts(target / "1" / "bundle", manifest)
    (target / CONFIG).write_text(to_pbtxt(config), encoding="utf-8")


def _write_engine_model(bundle: Path, manifest: Manifest, n: int, platform: str,
                        target: Path) -> tuple[dict[str, str], int]:
    """One width's model folder ``target``; returns ({file in 1/: its bundle artifact}, max batch) for the sha256
    check."""
    m, inp = manifest.model, manifest.input
    arts = manifest.artifacts[n]
    config: dict = {"name": target.name}
    if platform == "tensorrt":
        plans = {e.compute_capability: e for e in arts.engines}
        if len(plans) < len(arts.engines):
            log.warning("width %d has plans of several TensorRT versions for one GPU architecture: exporting the "
                        "last listed of each", n)
        files = {f"{Path(e.file).parent.name}.plan": e.file for e in plans.values()}
        config["platform"] = "tensorrt_plan"
        config["cc_model_filenames"] = [{"key": cc, "value": f"{Path(e.file).parent.name}.plan"}
                                        for cc, e in plans.items()]
        max_batch = manifest.target.tensorrt.batch.max if manifest.target and manifest.target.tensorrt else 1
    else:
        graph = arts.int8 or arts.fp32
        files = {"model.onnx": graph.file}
        if platform == "onnxruntime":
            config["platform"] = "onnxruntime_onnx"
        else:
            config["backend"] = "python"
        max_batch = MAX_GROUPS_PER_RUN  # the most groups the runtime passes to one backend call
    config.update({
        "max_batch_size": max_batch,
        "input": [{"name": INPUT_NAME, "data_type": Enum("TYPE_UINT8"), "dims": [n, *inp.crop, 3]} if inp.in_graph
                  else {"name": INPUT_NAME, "data_type": Enum("TYPE_FP32"),
                        "dims": [n, inp.channels, inp.height, inp.width_px]}],  # the manifest's input contract
        "output": [{"name": OUTPUT_NAME, "data_type": Enum("TYPE_FP32"),
                    "dims": [m.capacity // n, n, m.num_classes]}],
        "instance_group": [{"count": 1, "kind": Enum("KIND_GPU" if platform == "tensorrt" else "KIND_CPU")}],
    })
    (target / "1").mkdir(parents=True)
    for name, artifact in files.items():
        shutil.copy2(bundle / artifact, target / "1" / name)
    if platform == "python":
        (target / "1" / "model.py").write_text(ENGINE_MODEL_PY)
    (target / CONFIG).write_text(to_pbtxt(config), encoding="utf-8")
    return files, max_batch
