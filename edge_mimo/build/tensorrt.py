"""TensorRT engines from the Q/DQ ONNX graphs (TensorRT 10/11 Python API), built on the device.

Plans are tied to the GPU architecture and TensorRT version that built them, so they are cached in the
bundle under ``engines/<key>/`` with key ``sm<major><minor>-trt<version>`` and refused on any other GPU or
TensorRT version. Plan files are plain serialized engines (no custom header), loadable by trtexec, Triton
and DeepStream. INT8 comes only from the graph's Q/DQ nodes (explicit quantization): the calibrator API was
deprecated in TensorRT 10.1 and removed in 11.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from ..atomic import atomic_write_bytes
from ..bundle.manifest import MANIFEST_FILE, artifact_path, load_manifest, sha256_file, verify_artifacts
from ..errors import BackendUnavailableError, EngineMismatchError


def engine_key(compute_capability: str, trt_version: str) -> str:
    """'8.7', '10.3.0' -> 'sm87-trt10.3.0'."""
    return f"sm{compute_capability.replace('.', '')}-trt{trt_version}"


def check_compatible(entry: dict, compute_capability: str, trt_version: str) -> None:
    """Refuse a plan built for another GPU architecture or TensorRT version."""
    if entry.get("compute_capability") != compute_capability or entry.get("tensorrt") != trt_version:
        raise EngineMismatchError(
            f"{entry.get('file')} was built for SM {entry.get('compute_capability')} with TensorRT "
            f"{entry.get('tensorrt')}, this machine has SM {compute_capability} with TensorRT {trt_version}: "
            "run `edge-mimo build-engines BUNDLE` on this machine to build matching engines"
        )


def find_engine(manifest: dict, width: int, compute_capability: str, trt_version: str) -> dict | None:
    """The manifest's plan for this width and machine, or None when none was built here yet."""
    for entry in manifest["artifacts"][str(width)].get("engines", []):
        if entry.get("compute_capability") == compute_capability and entry.get("tensorrt") == trt_version:
            return entry
    return None


def device_identity() -> tuple[str, str]:
    """(compute capability, TensorRT version) of this machine; BackendUnavailableError without TensorRT/GPU."""
    try:
        import tensorrt as trt

        from ..runtime.tensorrt_backend import compute_capability, gpu_available
    except ImportError as e:
        raise BackendUnavailableError(
            f"TensorRT is not installed ({e}): engines are built on the device; install `edge-mimo[tensorrt]` there"
        ) from e
    if not gpu_available():
        raise BackendUnavailableError("no CUDA GPU is visible: build engines on the device that will run them")
    return compute_capability(), trt.__version__


def build_engine(onnx_path: Path, plan_path: Path, width: int, input_shape: tuple[int, int, int], settings: dict,
                 timing_cache: Path | None = None) -> None:
    """Build one plan for ``width`` from a Q/DQ ONNX graph with the target's TensorRT settings."""
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    strongly_typed = hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED")
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if strongly_typed else 0
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {onnx_path.name}: {errors}")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(settings["workspace_mib"]) << 20)
    config.builder_optimization_level = int(settings.get("builder_optimization_level", 3))
    if not strongly_typed:  # TensorRT 10 without strong typing still needs the INT8 flag for Q/DQ graphs
        config.set_flag(trt.BuilderFlag.INT8)

    batch = settings["batch"]
    dla_core = int(settings.get("dla_core", -1))
    if dla_core >= 0:  # DLA runs static shapes only
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = dla_core
        if settings.get("gpu_fallback", True):
            config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
        batch = {"min": batch["opt"], "opt": batch["opt"], "max": batch["opt"]}
    profile = builder.create_optimization_profile()
    name = network.get_input(0).name
    profile.set_shape(name, *[(batch[k], width, *input_shape) for k in ("min", "opt", "max")])
    config.add_optimization_profile(profile)

    cache_bytes = timing_cache.read_bytes() if timing_cache and timing_cache.exists() else b""
    config.set_timing_cache(config.create_timing_cache(cache_bytes), ignore_mismatch=False)

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT failed to build an engine from {onnx_path.name} (see the log above)")
    atomic_write_bytes(plan_path, bytes(serialized))
    if timing_cache is not None:
        atomic_write_bytes(timing_cache, bytes(config.get_timing_cache().serialize()))


def build_bundle_engines(bundle: str | Path, log=print) -> list[dict]:
    """Build (or reuse) one plan per width for this machine and record them in the bundle's manifest."""
    bundle = Path(bundle)
    manifest = load_manifest(bundle)
    if manifest["target"].get("backend") != "tensorrt":
        raise BackendUnavailableError(
            f"{bundle} was compiled for target {manifest['target'].get('name')!r} (ONNX Runtime): "
            "compile it for a TensorRT target (e.g. --target jetson-orin) to build engines")
    cc, version = device_identity()
    key = engine_key(cc, version)
    model = manifest["model"]
    shape = (model["in_channels"], model["image_size"], model["image_size"])
    timing_cache = artifact_path(bundle, f"engines/{key}/timing.cache")
    built = []
    for n in manifest["widths"]:
        if find_engine(manifest, n, cc, version):
            continue
        source = manifest["artifacts"][str(n)]["int8"]["file"]
        verify_artifacts(bundle, manifest, only=[source])
        rel = f"engines/{key}/width{n}.plan"
        start = time.time()
        build_engine(artifact_path(bundle, source), artifact_path(bundle, rel), n, shape,
                     manifest["target"]["tensorrt"], timing_cache)
        entry = {"file": rel, "sha256": sha256_file(artifact_path(bundle, rel)), "compute_capability": cc,
                 "tensorrt": version, "source": source, "build_seconds": round(time.time() - start, 1)}
        manifest["artifacts"][str(n)].setdefault("engines", []).append(entry)
        manifest["files"][rel] = entry["sha256"]
        built.append(entry)
        log(f"built {rel} in {entry['build_seconds']} s")
    if built:
        manifest["files"][f"engines/{key}/timing.cache"] = sha256_file(timing_cache)
        atomic_write_bytes(bundle / MANIFEST_FILE, (json.dumps(manifest, indent=2) + "\n").encode())
    return built
