"""TensorRT engines: compatibility rules and where plans go here; real builds only where TensorRT and a GPU exist."""

import dataclasses
import hashlib
import importlib.util
import json
import logging
import os
import shutil

import pytest

from edge_mimo.bundle.manifest import SCHEMA_VERSION, EngineFile, Manifest
from edge_mimo.engines import plans
from edge_mimo.engines.plans import PlanCache, check_compatible, engine_key, find_engine, plans_for_device
from edge_mimo.errors import EngineMismatchError


def tensorrt_and_gpu() -> bool:
    if importlib.util.find_spec("tensorrt") is None:
        return False
    from edge_mimo.engines import gpu_available

    return gpu_available()


needs_tensorrt = pytest.mark.skipif(
    not tensorrt_and_gpu(), reason="needs TensorRT and an NVIDIA GPU (pip install 'edge-mimo[tensorrt]' on the device)")


def test_engine_key_and_mismatch_refusal():
    assert engine_key("8.7", "10.3.0") == "sm87-trt10.3.0"
    entry = EngineFile("engines/sm87-trt10.3.0/width4.plan", "0" * 64, "8.7", "10.3.0")
    check_compatible(entry, "8.7", "10.3.0")
    with pytest.raises(EngineMismatchError, match="SM 8.7 with TensorRT 10.3.0.*SM 8.9.*build-engines"):
        check_compatible(entry, "8.9", "10.3.0")
    with pytest.raises(EngineMismatchError, match="TensorRT 10.7"):
        check_compatible(entry, "8.7", "10.7.0")
    assert find_engine([entry], "8.7", "10.3.0") is entry
    assert find_engine([entry], "9.0", "10.3.0") is None


def test_build_engines_without_tensorrt_names_the_fix(tmp_path):
    if tensorrt_and_gpu():
        pytest.skip("TensorRT and a GPU are present: the refusal path does not apply")
    from edge_mimo.compile.pipeline import CompileOptions, compile_bundle
    from edge_mimo.errors import BackendUnavailableError
    from edge_mimo.engines import build_bundle_engines

    bundle, _ = compile_bundle(CompileOptions(target="jetson-orin", widths=[4], calibration_size=32,
                                              validation_size=64, output=tmp_path / "b", cache_dir=None))
    with pytest.raises(BackendUnavailableError, match="TensorRT is not installed.*pip install tensorrt cuda-python"):
        build_bundle_engines(bundle)


# -- where plans come from, with the device and the builder stood in for (no GPU needed) -----------------------

DEVICE = ("8.7", "10.3.0")


def fake_graph(n: int) -> bytes:
    """Bytes that walk as an ONNX ModelProto (ir_version 8, producer name "graph N"), as the bundle check needs."""
    name = f"graph {n}".encode()
    return b"\x08\x08\x12" + bytes([len(name)]) + name


def fake_bundle(root) -> Manifest:
    """A TensorRT-target bundle of two widths whose INT8 graphs are placeholder bytes."""
    root.mkdir()
    (root / "int8").mkdir()
    doc = {"schema_version": SCHEMA_VERSION, "model": {"capacity": 4, "num_classes": 10}, "widths": [1, 4],
           "files": {}, "artifacts": {},
           "input": {"channels": 1, "height": 28, "width_px": 28, "mean": [0.3], "std": [0.35]},
           "target": {"name": "jetson-orin", "backend": "tensorrt", "flavour": "tensorrt",
                      "tensorrt": {"workspace_mib": 64, "batch": {"min": 1, "opt": 1, "max": 4}}}}
    for n in doc["widths"]:
        rel = f"int8/width{n}.tensorrt.onnx"
        (root / rel).write_bytes(fake_graph(n))
        digest = hashlib.sha256(fake_graph(n)).hexdigest()
        doc["files"][rel] = digest
        doc["artifacts"][str(n)] = {"int8": {"file": rel, "sha256": digest}, "engines": []}
    return Manifest.from_dict(doc)


def snapshot(root):
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def fake_device(monkeypatch):
    """This machine poses as an SM 8.7 GPU with TensorRT 10.3.0; 'building' a plan writes the source's name."""
    builds = []

    def build_plan(onnx_path, plan_path, width, input_shape, settings, timing_cache=None):
        builds.append(width)
        plan_path.parent.mkdir(parents=True, exist_ok=True)
        plan_path.write_bytes(b"plan of " + onnx_path.read_bytes())

    monkeypatch.setattr(plans, "device_identity", lambda: DEVICE)
    monkeypatch.setattr(plans, "build_plan", build_plan)
    return builds


def test_loading_builds_missing_plans_into_the_cache_never_into_the_bundle(tmp_path, fake_device, caplog):
    bundle, cache = tmp_path / "bundle", PlanCache(tmp_path / "cache")
    manifest = fake_bundle(bundle)
    before = snapshot(bundle)
    with caplog.at_level(logging.WARNING, logger=plans.__name__):
        found = plans_for_device(bundle, manifest, cache)
    assert fake_device == [1, 4] and snapshot(bundle) == before
    assert all(cache.root in p.parents and p.read_bytes() == b"plan of " + fake_graph(n) for n, p in found.items())
    assert str(cache.root) in caplog.text and "build-engines" in caplog.text  # says where they went, and the option
    assert plans_for_device(bundle, manifest, cache) == found and fake_device == [1, 4]  # reused, not rebuilt


def test_build_bundle_engines_returns_the_manifest_and_leaves_saving_it_to_its_caller(tmp_path, fake_device,
                                                                                     monkeypatch):
    bundle = tmp_path / "bundle"
    given = fake_bundle(bundle)
    build = plans.build_plan

    def build_with_timing_cache(onnx_path, plan_path, width, input_shape, settings, timing_cache=None):
        build(onnx_path, plan_path, width, input_shape, settings, timing_cache)
        timing_cache.write_bytes(b"timings")

    monkeypatch.setattr(plans, "build_plan", build_with_timing_cache)
    manifest, built = plans.build_bundle_engines(bundle, given)
    assert fake_device == [1, 4] and not (bundle / "manifest.json").exists()  # no manifest written
    assert [e.file for e in built] == [e.file for n in (1, 4) for e in manifest.artifacts[n].engines]
    assert all(e.file in manifest.files for e in built) and "engines/sm87-trt10.3.0/timing.cache" in manifest.files
    assert plans.build_bundle_engines(bundle, manifest)[1] == [] and fake_device == [1, 4]  # recorded: not rebuilt


def test_cached_plans_are_rebuilt_when_their_source_or_bytes_change(tmp_path, fake_device):
    bundle, cache = tmp_path / "bundle", PlanCache(tmp_path / "cache")
    manifest = fake_bundle(bundle)
    first = plans_for_device(bundle, manifest, cache)
    first[1].write_bytes(b"truncated")  # a damaged cache entry is rebuilt, not loaded
    recompiled = manifest.artifacts[4]
    recompiled.int8 = dataclasses.replace(recompiled.int8, sha256="f" * 64)  # a recompiled graph is a new entry
    assert plans_for_device(bundle, manifest, cache)[4] != first[4]
    assert fake_device == [1, 4, 1, 4] and first[1].read_bytes() == b"plan of " + fake_graph(1)


@pytest.mark.parametrize("record", ["fifo", "list", "huge"])
def test_a_doubtful_plan_record_is_rebuilt_without_blocking(tmp_path, fake_device, record):
    """Plan records are read as the calibration cache reads (keyed_cache.py): bounded, no FIFO, a JSON object."""
    bundle, cache = tmp_path / "bundle", PlanCache(tmp_path / "cache")
    manifest = fake_bundle(bundle)
    sidecar = plans_for_device(bundle, manifest, cache)[1].with_suffix(".json")
    sidecar.unlink()
    if record == "fifo":
        os.mkfifo(sidecar)
    else:
        sidecar.write_text("[]" if record == "list" else " " * (plans.MAX_RECORD_BYTES + 1))
    fields = PlanCache.fields(manifest, 1, *DEVICE)
    assert cache.lookup(fields) is None and fake_device == [1, 4]


def test_without_a_cache_missing_plans_are_refused_with_the_command(tmp_path, fake_device):
    bundle = tmp_path / "bundle"
    manifest = fake_bundle(bundle)
    with pytest.raises(EngineMismatchError, match="width 1 on SM 8.7 with TensorRT 10.3.0.*build-engines"):
        plans_for_device(bundle, manifest, None)
    assert fake_device == []


def test_the_bundles_own_plans_come_first(tmp_path, fake_device):
    bundle, cache = tmp_path / "bundle", PlanCache(tmp_path / "cache")
    manifest = fake_bundle(bundle)
    for n in manifest.widths:
        rel = f"engines/{engine_key(*DEVICE)}/width{n}.plan"
        (bundle / rel).parent.mkdir(parents=True, exist_ok=True)
        (bundle / rel).write_bytes(b"shipped plan")
        digest = hashlib.sha256(b"shipped plan").hexdigest()
        manifest.files[rel] = digest
        manifest.artifacts[n].engines.append(EngineFile(rel, digest, *DEVICE))
    found = plans_for_device(bundle, manifest, cache)
    assert fake_device == [] and all(bundle.resolve() in p.parents for p in found.values())
    assert not cache.root.exists()


@needs_tensorrt
def test_build_plans_for_every_width_and_run_them(tmp_path):
    import numpy as np

    from edge_mimo import Runtime
    from edge_mimo.engines import build_bundle_engines
    from edge_mimo.compile.pipeline import CompileOptions, compile_bundle
    from edge_mimo.datasets import shipped_sample

    bundle, _ = compile_bundle(CompileOptions(target="desktop-ampere", calibration_size=128, validation_size=256,
                                              output=tmp_path / "b", cache_dir=None))
    manifest, built = build_bundle_engines(bundle)
    assert len(built) == 3 and all((bundle / e.file).stat().st_size > 0 for e in built)
    assert built[0].file not in json.loads((bundle / "manifest.json").read_text())["files"]  # not rewritten ...
    manifest.save(bundle)  # ... but by its caller
    assert build_bundle_engines(bundle)[1] == []  # cached for this GPU + TensorRT version
    frames = list(shipped_sample("validation").images[:16, 0])
    with Runtime(bundle, backend="tensorrt") as trt_rt, Runtime(bundle, backend="onnxruntime") as ort_rt:
        agree = np.mean([a.class_index == b.class_index for a, b in zip(trt_rt.infer_many(frames),
                                                                        ort_rt.infer_many(frames))])
    assert agree >= 0.9
    shutil.rmtree(tmp_path / "b")


@needs_tensorrt
def test_first_load_builds_into_the_plan_cache_and_leaves_the_bundle_alone(tmp_path):
    import numpy as np

    from edge_mimo import Runtime
    from edge_mimo.compile.pipeline import CompileOptions, compile_bundle
    from edge_mimo.engines import TensorRTBackend

    bundle, _ = compile_bundle(CompileOptions(target="desktop-ampere", widths=[4], calibration_size=64,
                                              validation_size=128, output=tmp_path / "b", cache_dir=None))
    manifest = json.loads((bundle / "manifest.json").read_text())  # as if compiled on a machine without a GPU
    for n in manifest["widths"]:
        manifest["artifacts"][str(n)]["engines"] = []
    manifest["files"] = {rel: digest for rel, digest in manifest["files"].items() if not rel.startswith("engines/")}
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    shutil.rmtree(bundle / "engines", ignore_errors=True)
    before = snapshot(bundle)
    with pytest.raises(EngineMismatchError, match="build-engines"):
        Runtime(bundle, backend="tensorrt", plan_cache=None)
    with Runtime(bundle, backend="tensorrt", plan_cache=tmp_path / "cache") as rt:
        assert isinstance(rt._backend, TensorRTBackend) and rt.infer(np.zeros((28, 28), np.uint8)).ok
    assert snapshot(bundle) == before and list((tmp_path / "cache").rglob("*.plan"))
