"""TensorRT plans: built on the device from the bundle's Q/DQ ONNX graphs, kept in the bundle or a cache.

A plan is tied to the GPU architecture and TensorRT version that built it, so it is filed under the key
``sm<major><minor>-trt<version>`` and refused on any other GPU or TensorRT version. Plan files are plain
serialized engines (no custom header), loadable by trtexec, Triton and DeepStream. INT8 comes only from the
graph's Q/DQ nodes (explicit quantization): the calibrator API was deprecated in TensorRT 10.1, removed in 11.

Plans live in one of two places:

- the bundle, under ``engines/<key>/width<n>.plan`` and recorded in its manifest, only when asked
  (:func:`build_bundle_engines`, whose caller saves the manifest: ``edge-mimo build-engines BUNDLE``, or a
  compile on a machine with TensorRT);
- a cache directory (:class:`PlanCache`, ``~/.cache/edge-mimo/engines`` by default), where the runtime builds
  the plans it needs on first load, so that loading never writes into a bundle (it may be read-only).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path

from ..atomic import atomic_write_bytes
from ..bundle.manifest import EngineFile, Manifest, artifact_path, sha256_file, verify_artifacts
from ..bundle.names import TIMING_CACHE_FILE, engine_dir, plan_file
from ..bundle.target import TensorRTSettings
from ..errors import BackendUnavailableError, BundleError, CacheEntryError, EngineBuildError, EngineMismatchError
from ..keyed_cache import key_digest, read_json
from .base import DEFAULT_PLAN_CACHE
from .device import device_identity, tensorrt

logger = logging.getLogger(__name__)


def engine_key(compute_capability: str, trt_version: str) -> str:
    """'8.7', '10.3.0' -> 'sm87-trt10.3.0'."""
    return f"sm{compute_capability.replace('.', '')}-trt{trt_version}"


def check_compatible(entry: EngineFile, compute_capability: str, trt_version: str) -> None:
    """Refuse a plan built for another GPU architecture or TensorRT version."""
    if entry.compute_capability != compute_capability or entry.tensorrt != trt_version:
        raise EngineMismatchError(
            f"{entry.file} was built for SM {entry.compute_capability} with TensorRT {entry.tensorrt}, "
            f"this machine has SM {compute_capability} with TensorRT {trt_version}: "
            "run `edge-mimo build-engines BUNDLE` on this machine to build matching engines"
        )


def find_engine(engines: Sequence[EngineFile], compute_capability: str, trt_version: str) -> EngineFile | None:
    """The plan among one width's ``engines`` for this machine, or None when none was built here yet."""
    for entry in engines:
        if entry.compute_capability == compute_capability and entry.tensorrt == trt_version:
            return entry
    return None


def build_plan(onnx_path: Path, plan_path: Path, width: int, input_shape: tuple[int, int, int],
               settings: TensorRTSettings, timing_cache: Path | None = None) -> None:
    """Build one plan for ``width`` from a Q/DQ ONNX graph with a target's ``[tensorrt]`` settings.

    ``input_shape``: (C, H, W) of one image ((S_h, S_w, 3) for an in-graph bundle). ``timing_cache`` is read if it exists and rewritten after the build.
    """
    trt = tensorrt()
    log = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(log)
    strongly_typed = hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED")
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if strongly_typed else 0
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, log)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineBuildError(f"TensorRT could not parse {onnx_path.name} ({errors}): recompile the bundle "
                               "for a TensorRT target with this edge-mimo")

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
        raise EngineBuildError(f"TensorRT failed to build an engine from {onnx_path.name}: see the TensorRT "
                               "log above (a larger workspace_mib in the target profile may help)")
    atomic_write_bytes(plan_path, bytes(serialized))
    if timing_cache is not None:
        atomic_write_bytes(timing_cache, bytes(config.get_timing_cache().serialize()))


def _input_shape(manifest: Manifest) -> tuple[int, int, int]:
    """One frame's input: (C, H, W), or (S_h, S_w, 3) for an in-graph bundle's uint8 crop."""
    if manifest.input.in_graph:
        return (*manifest.input.crop, 3)
    return manifest.input.channels, manifest.input.height, manifest.input.width_px


def _tensorrt_settings(bundle: Path, manifest: Manifest) -> TensorRTSettings:
    """The bundle's TensorRT builder settings; a bundle compiled for ONNX Runtime is refused."""
    if manifest.target is None or manifest.target.tensorrt is None:
        name = manifest.target.name if manifest.target else None
        raise BackendUnavailableError(
            f"{bundle} was compiled for target {name!r} (ONNX Runtime): "
            "compile it for a TensorRT target (e.g. --target jetson-orin) to build engines")
    return manifest.target.tensorrt


def _int8_graph(bundle: Path, manifest: Manifest, width: int) -> str:
    """The bundle-relative INT8 graph plans of ``width`` are built from."""
    graph = manifest.artifacts[width].int8
    if graph is None:
        raise BundleError(f"{bundle} has no INT8 graph for width {width}, which TensorRT engines are built from: "
                          "recompile the bundle for a TensorRT target")
    return graph.file


def build_bundle_engines(bundle: str | Path, manifest: Manifest | None = None) -> tuple[Manifest, list[EngineFile]]:
    """Build (or reuse) one plan per width for this machine into the bundle; returns the manifest with the plans
    recorded (``manifest``, changed in place, else the bundle's) and the entries of the plans built (empty when
    all existed). The caller saves the manifest (``manifest.save(bundle)``): the plan files without it are
    not part of the bundle.

    This writes into the bundle: it is the explicit step (``edge-mimo build-engines``, or a compile on a machine
    with TensorRT); the runtime itself builds into a :class:`PlanCache`.
    """
    bundle = Path(bundle)
    manifest = Manifest.load(bundle) if manifest is None else manifest
    settings = _tensorrt_settings(bundle, manifest)
    cc, version = device_identity()
    key = engine_key(cc, version)
    timing_rel = f"{engine_dir(key)}/{TIMING_CACHE_FILE}"
    timing_cache = artifact_path(bundle, timing_rel)
    built = []
    for n in manifest.widths:
        if find_engine(manifest.artifacts[n].engines, cc, version):
            continue
        source = _int8_graph(bundle, manifest, n)
        verify_artifacts(bundle, manifest, only=[source])
        rel = plan_file(key, n)
        start = time.time()
        build_plan(artifact_path(bundle, source), artifact_path(bundle, rel), n, _input_shape(manifest), settings,
                   timing_cache)
        entry = EngineFile(rel, sha256_file(artifact_path(bundle, rel)), cc, version, source,
                           round(time.time() - start, 1))
        manifest.artifacts[n].engines.append(entry)
        manifest.files[rel] = entry.sha256
        built.append(entry)
        logger.info("built %s in %s s", rel, entry.build_seconds)
    if built:
        manifest.files[timing_rel] = sha256_file(timing_cache)
    return manifest, built


MAX_RECORD_BYTES = 64 << 10


class PlanCache:
    """Plans built outside bundles, one file per (source graph, width, TensorRT settings, GPU, TensorRT version).

    Entry ``<root>/<key>/width<n>-<digest>.plan`` with a ``.json`` beside it (its record) holding the fields hashed
    into ``digest`` (:func:`~edge_mimo.keyed_cache.key_digest`) and the plan's sha256; an entry whose record is
    missing, unreadable (read as :mod:`edge_mimo.keyed_cache` reads: bounded, no links, no FIFOs) or does not
    match is rebuilt, never reused.
    """

    def __init__(self, root: str | Path = DEFAULT_PLAN_CACHE) -> None:
        self.root = Path(root)

    def path(self, fields: dict) -> Path:
        """Where the plan of ``fields`` (see :meth:`fields`) lives."""
        key = engine_key(fields["compute_capability"], fields["tensorrt"])
        return self.root / key / f"width{fields['width']}-{key_digest(fields)}.plan"

    @staticmethod
    def fields(manifest: Manifest, width: int, compute_capability: str, trt_version: str) -> dict:
        """What a plan depends on: the exact INT8 graph, the width and input, the builder settings, the device."""
        return {"source_sha256": manifest.artifacts[width].int8.sha256, "width": width,
                "input": list(_input_shape(manifest)), "settings": dataclasses.asdict(manifest.target.tensorrt),
                "compute_capability": compute_capability, "tensorrt": trt_version}

    def lookup(self, fields: dict) -> Path | None:
        """The cached plan for ``fields``, or None when there is none or it does not match its sidecar."""
        plan = self.path(fields)
        try:
            meta = read_json(plan.with_suffix(".json"), MAX_RECORD_BYTES, "the plan's record")
        except (OSError, CacheEntryError):
            return None
        if (not isinstance(meta, dict) or meta.get("key") != fields or not plan.is_file()
                or sha256_file(plan) != meta.get("sha256")):
            logger.warning("cached TensorRT plan %s does not match its record: rebuilding it", plan)
            return None
        return plan

    def build(self, onnx_path: Path, fields: dict, settings: TensorRTSettings) -> Path:
        """Build the plan for ``fields`` (``settings`` among them) from ``onnx_path`` into the cache; returns its path."""
        plan = self.path(fields)
        start = time.time()
        build_plan(onnx_path, plan, fields["width"], tuple(fields["input"]), settings, plan.parent / TIMING_CACHE_FILE)
        meta = {"key": fields, "sha256": sha256_file(plan), "build_seconds": round(time.time() - start, 1)}
        atomic_write_bytes(plan.with_suffix(".json"), (json.dumps(meta, indent=2) + "\n").encode())
        return plan


def plans_for_device(bundle: str | Path, manifest: Manifest, cache: PlanCache | None) -> dict[int, Path]:
    """This machine's plan per width: the bundle's own (``edge-mimo build-engines``), else the cache's.

    Plans missing from both are built into ``cache`` (logged, with where they went); with ``cache=None`` they
    are refused with the command that builds them. The bundle is never written; its files are checked by the
    caller (:func:`~.factory.load_backend`).
    """
    bundle = Path(bundle)
    cc, version = device_identity()
    settings = _tensorrt_settings(bundle, manifest)
    plans = {}
    for n in manifest.widths:
        entry = find_engine(manifest.artifacts[n].engines, cc, version)
        if entry is not None:
            check_compatible(entry, cc, version)
            plans[n] = artifact_path(bundle, entry.file)
            continue
        if cache is None:
            raise EngineMismatchError(
                f"{bundle} has no TensorRT plan for width {n} on SM {cc} with TensorRT {version}: run "
                "`edge-mimo build-engines BUNDLE` on this machine, or give the runtime an engine cache to build into")
        source = _int8_graph(bundle, manifest, n)
        fields = PlanCache.fields(manifest, n, cc, version)
        plans[n] = cache.lookup(fields)
        if plans[n] is None:
            logger.warning("building the width-%d TensorRT plan for SM %s / TensorRT %s into %s (first load on "
                           "this device; `edge-mimo build-engines BUNDLE` stores plans in the bundle instead)",
                           n, cc, version, cache.root)
            plans[n] = cache.build(artifact_path(bundle, source), fields, settings)
    return plans
