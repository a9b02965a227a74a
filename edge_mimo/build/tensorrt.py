"""TensorRT engines from the Q/DQ ONNX graphs (TensorRT 10/11 Python API), built on the device.

Plans are tied to the GPU architecture and TensorRT version that built them, so they are cached in the
bundle under ``engines/<key>/`` with key ``sm<major><minor>-trt<version>`` and refused on any other GPU or
TensorRT version. Plan files are plain serialized engines (no custom header), loadable by trtexec, Triton
and DeepStream. INT8 comes only from the graph's Q/DQ nodes (explicit quantization): the calibrator API was
deprecated in TensorRT 10.1 and removed in 11.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from ..atomic import atomic_write_bytes
from ..bundle.manifest import EngineFile, Manifest, artifact_path, sha256_file, verify_artifacts
from ..bundle.target import TensorRTSettings
from ..errors import BackendUnavailableError, BundleError, EngineMismatchError


def engine_key(compute_capability: str, trt_version: str) -> str:
    """'8.7', '10.3.0' -> 'sm87-trt10.3.0'."""
    return f"sm{compute_capability.replace('.', '')}-trt{trt_version}"


def check_compatible(entry: EngineFile, compute_capability: str, trt_version: str) -> None:
    """Refuse a plan built for another GPU architecture or TensorRT version."""
    if entry.compute_capability != compute_capability or entry.tensorrt != trt_version:
        raise EngineMismatchError(
            f"{entry.file} was built for SM {entry.compute_capability} with TensorRT "
            f"{entry.tensorrt}, this machine has SM {compute_capability} with TensorRT {trt_version}: "
            "run `edge-mimo build-engines BUNDLE` on this machine to build matching engines"
        )


def find_engine(engines: Sequence[EngineFile], compute_capability: str, trt_version: str) -> EngineFile | None:
    """The plan among one width's ``engines`` for this machine, or None when none was built here yet."""
    for entry in engines:
        if entry.compute_capability == compute_capability and entry.tensorrt == trt_version:
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


def build_engine(onnx_path: Path, plan_path: Path, width: int, input_shape: tuple[int, int, int],
                 settings: TensorRTSettings,
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
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, settings.workspace_mib << 20)
    config.builder_optimization_level = settings.builder_optimization_level
    if not strongly_typed:  # TensorRT 10 without strong typing still needs the INT8 flag for Q/DQ graphs
        config.set_flag(trt.BuilderFlag.INT8)

    sizes = (settings.batch.min, settings.batch.opt, settings.batch.max)
    if settings.dla_core >= 0:  # DLA runs static shapes only
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = settings.dla_core
        if settings.gpu_fallback:
            config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
        sizes = (settings.batch.opt,) * 3
    profile = builder.create_optimization_profile()
    name = network.get_input(0).name
    profile.set_shape(name, *[(b, width, *input_shape) for b in sizes])
    config.add_optimization_profile(profile)

    cache_bytes = timing_cache.read_bytes() if timing_cache and timing_cache.exists() else b""
    config.set_timing_cache(config.create_timing_cache(cache_bytes), ignore_mismatch=False)

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT failed to build an engine from {onnx_path.name} (see the log above)")
    atomic_write_bytes(plan_path, bytes(serialized))
    if timing_cache is not None:
        atomic_write_bytes(timing_cache, bytes(config.get_timing_cache().serialize()))


def build_bundle_engines(bundle: str | Path, log=print) -> list[EngineFile]:
    """Build (or reuse) one plan per width for this machine and record them in the bundle's manifest."""
    bundle = Path(bundle)
    manifest = Manifest.load(bundle)
    if manifest.target is None or manifest.target.tensorrt is None:
        name = manifest.target.name if manifest.target else None
        raise BackendUnavailableError(
            f"{bundle} was compiled for target {name!r} (ONNX Runtime): "
            "compile it for a TensorRT target (e.g. --target jetson-orin) to build engines")
    cc, version = device_identity()
    key = engine_key(cc, version)
    shape = (manifest.input.channels, manifest.input.height, manifest.input.width)
    timing_cache = artifact_path(bundle, f"engines/{key}/timing.cache")
    built = []
    for n in manifest.widths:
        if find_engine(manifest.artifacts[n].engines, cc, version):
            continue
        graph = manifest.artifacts[n].int8
        if graph is None:
            raise BundleError(f"{bundle} has no INT8 graph for width {n}, which TensorRT engines are built from: "
                              "recompile the bundle for a TensorRT target")
        source = graph.file
        verify_artifacts(bundle, manifest, only=[source])
        rel = f"engines/{key}/width{n}.plan"
        start = time.time()
        build_engine(artifact_path(bundle, source), artifact_path(bundle, rel), n, shape, manifest.target.tensorrt,
                     timing_cache)
        entry = EngineFile(rel, sha256_file(artifact_path(bundle, rel)), cc, version, source,
                           round(time.time() - start, 1))
        manifest.artifacts[n].engines.append(entry)
        manifest.files[rel] = entry.sha256
        built.append(entry)
        log(f"built {rel} in {entry.build_seconds} s")
    if built:
        manifest.files[f"engines/{key}/timing.cache"] = sha256_file(timing_cache)
        manifest.save(bundle)
    return built
