"""TensorRT engines: compatibility rules here; real builds only where TensorRT and a GPU exist."""

import importlib.util
import shutil

import pytest

from edge_mimo.build.tensorrt import check_compatible, engine_key, find_engine
from edge_mimo.bundle.manifest import EngineFile
from edge_mimo.errors import EngineMismatchError


def tensorrt_and_gpu() -> bool:
    if importlib.util.find_spec("tensorrt") is None:
        return False
    from edge_mimo.runtime.tensorrt_backend import gpu_available

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
    from edge_mimo.build.tensorrt import build_bundle_engines

    bundle, _ = compile_bundle(CompileOptions(target="jetson-orin", widths=[4], calib_size=32, val_size=64,
                                              output=tmp_path / "b", cache_dir=None, log=lambda *a: None))
    with pytest.raises(BackendUnavailableError, match="on the device"):
        build_bundle_engines(bundle)


@needs_tensorrt
def test_build_plans_for_every_width_and_run_them(tmp_path):
    import numpy as np

    from edge_mimo import Runtime
    from edge_mimo.build.tensorrt import build_bundle_engines
    from edge_mimo.compile.pipeline import CompileOptions, compile_bundle
    from edge_mimo.datasets import shipped_sample

    bundle, _ = compile_bundle(CompileOptions(target="desktop-ampere", calib_size=128, val_size=256,
                                              output=tmp_path / "b", cache_dir=None, log=lambda *a: None))
    built = build_bundle_engines(bundle)
    assert len(built) == 3 and all((bundle / e["file"]).stat().st_size > 0 for e in built)
    assert build_bundle_engines(bundle) == []  # cached for this GPU + TensorRT version
    trt_rt, ort_rt = Runtime(bundle, backend="tensorrt"), Runtime(bundle, backend="onnxruntime")
    frames = list(shipped_sample("validation").images[:16, 0])
    agree = np.mean([a.class_index == b.class_index for a, b in zip(trt_rt.infer_many(frames),
                                                                    ort_rt.infer_many(frames))])
    assert agree >= 0.9
    shutil.rmtree(tmp_path / "b")
