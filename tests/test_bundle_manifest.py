"""The typed manifest and target profile (issue 12 item 1) and the bundle faults of issue 11 (items 4, 11, 14-16):
values that pass loose checks but give wrong answers, foreign exceptions, artifacts not checked at load."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from edge_mimo.bundle.manifest import MANIFEST_FILE, load_manifest, sha256_file
from edge_mimo.compile.targets import list_targets, load_target
from edge_mimo.errors import BundleError, BundleIntegrityError, ConfigError

FRAME = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)


def read(bundle: Path) -> dict:
    return json.loads((bundle / MANIFEST_FILE).read_text())


def write(bundle: Path, doc: dict) -> None:
    (bundle / MANIFEST_FILE).write_text(json.dumps(doc))


@pytest.fixture
def bundle_copy(cpu_bundle, tmp_path):
    dst = tmp_path / "bundle"
    shutil.copytree(cpu_bundle, dst)
    return dst


# -- typed round trip and old bundles ---------------------------------------------------------------------------


def test_manifest_round_trips_to_the_same_json(cpu_bundle):
    from edge_mimo.bundle.manifest import Manifest

    doc = read(cpu_bundle)
    manifest = Manifest.load(cpu_bundle)
    assert manifest.to_dict() == doc  # schema 1 unchanged: what compile writes is what the typed manifest holds
    assert manifest.widths == (1, 2, 4) and manifest.target.name == "cpu" and manifest.backend == "onnxruntime"
    assert manifest.accuracy[4].int8.accuracy == doc["accuracy"]["4"]["int8"]["accuracy"]
    assert manifest.artifacts[2].int8.file == doc["artifacts"]["2"]["int8"]["file"]
    assert manifest.quantization.cache.keys() == {1, 2, 4}


def test_save_writes_a_loadable_manifest(bundle_copy):
    from edge_mimo.bundle.manifest import Manifest

    manifest = Manifest.load(bundle_copy)
    manifest.temperature[1] = 2.5
    manifest.save(bundle_copy)
    assert Manifest.load(bundle_copy).temperature[1] == 2.5 and read(bundle_copy)["temperature"]["1"] == 2.5


def test_an_early_schema_1_bundle_without_the_report_sections_still_runs(bundle_copy):
    from edge_mimo import Runtime
    from edge_mimo.bundle.manifest import Manifest

    doc = read(bundle_copy)
    old = {k: doc[k] for k in ("schema_version", "model", "widths", "artifacts", "files", "input")}
    write(bundle_copy, old)
    manifest = Manifest.load(bundle_copy)
    assert manifest.target is None and manifest.accuracy == {} and manifest.backend == "onnxruntime"
    result = Runtime(bundle_copy, warmup=False).infer(FRAME)
    assert result.ok and not result.uncertain  # no threshold recorded: nothing flagged


# -- item 11: values in range for a loose check, but wrong answers ----------------------------------------------


@pytest.mark.parametrize("path, value, match", [
    (("temperature", "1"), 5e-324, "temperature"),
    (("temperature", "4"), 1e300, "temperature"),
    (("input", "std"), [1e-300], "std"),
    (("input", "mean"), [1e300], "mean"),
    (("input", "mean"), [float("nan")], "input"),
    (("uncertainty", "1", "entropy_threshold"), 7.0, "uncertainty"),
])
def test_values_that_would_give_nan_or_constant_answers_are_refused(bundle_copy, path, value, match):
    from edge_mimo import Runtime

    doc = read(bundle_copy)
    node = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    write(bundle_copy, doc)
    with pytest.raises(BundleIntegrityError, match=match):
        Runtime(bundle_copy, warmup=False)


def test_non_finite_model_outputs_are_errors_and_uncertain_never_false(cpu_runtime):
    """Whatever a graph returns, a NaN confidence is never handed out as a confident, ok answer."""
    rt = cpu_runtime
    real = rt._backend.run

    def nan_run(width, groups):
        out = real(width, groups)
        out[0] = np.nan  # the first group's logits
        return out

    rt._backend.run = nan_run
    try:
        results = rt.infer_many([FRAME, FRAME, FRAME, FRAME, FRAME], width=4)
    finally:
        rt._backend.run = real
    assert [r.ok for r in results] == [False] * 4 + [True]
    assert "non-finite" in str(results[0].error) and "recompile" in str(results[0].error)
    assert np.isfinite(results[4].probabilities).all()


def test_a_damaged_report_field_is_named_but_the_bundle_still_runs(bundle_copy, capsys):
    """The runtime never reads the compile report: a robot keeps running; `edge-mimo verify` says what is hurt."""
    from edge_mimo import Runtime
    from edge_mimo.bundle.manifest import Manifest
    from edge_mimo.cli.main import main

    doc = read(bundle_copy)
    doc["accuracy"]["1"]["temperature"] = 1e-300
    doc["created"] = 7
    write(bundle_copy, doc)
    manifest = Manifest.load(bundle_copy)
    assert manifest.damaged == ("accuracy", "created") and manifest.accuracy == {} and manifest.created is None
    assert Runtime(bundle_copy, warmup=False).infer(FRAME).ok
    assert main(["verify", str(bundle_copy)]) == 2
    err = capsys.readouterr().err
    assert "accuracy, created are malformed" in err and "recompile" in err


# -- item 15 / 16: lenient or crashing manifest parsing ---------------------------------------------------------


@pytest.mark.parametrize("text, error, match", [
    ('{"schema_version": true}', BundleIntegrityError, "schema_version"),
    ('{"schema_version": -7}', BundleIntegrityError, "schema_version"),
    ('{"schema_version": 0}', BundleIntegrityError, "schema_version"),
    ("[" * 100_000 + "]" * 100_000, BundleIntegrityError, "nested too deeply"),
    ('{"schema_version": 1, "x": ' + "9" * 5000 + "}", BundleIntegrityError, "not valid JSON"),
])
def test_malformed_manifest_texts_give_bundle_errors(tmp_path, text, error, match):
    (tmp_path / MANIFEST_FILE).write_text(text)
    with pytest.raises(error, match=match) as info:
        load_manifest(tmp_path)
    assert "compile it again" in str(info.value)


@pytest.mark.parametrize("target", ["cpu", None, 7, {"name": "cpu"}, {"name": "../x", "backend": "onnxruntime",
                                                                      "flavour": "cpu"}])
def test_a_target_that_is_no_profile_is_refused(bundle_copy, target):
    doc = read(bundle_copy)
    doc["target"] = target
    write(bundle_copy, doc)
    with pytest.raises(BundleIntegrityError, match="'target'"):
        load_manifest(bundle_copy)


def test_unreadable_manifest_or_graph_is_a_bundle_error(bundle_copy, capsys, monkeypatch):
    """Files this user may not read (simulated: the suite may run as root, who reads anything)."""
    import builtins

    import edge_mimo.bundle.manifest as manifest_module
    from edge_mimo import Runtime
    from edge_mimo.cli.main import main

    graph = bundle_copy / read(bundle_copy)["artifacts"]["1"]["int8"]["file"]
    for denied in (bundle_copy / MANIFEST_FILE, graph):
        def fake_open(path, *args, denied=denied, **kwargs):
            if Path(path) == denied:
                raise PermissionError(13, "Permission denied", str(path))
            return builtins.open(path, *args, **kwargs)

        monkeypatch.setattr(manifest_module, "open", fake_open, raising=False)
        with pytest.raises(BundleError, match="cannot read.*Permission denied.*permissions"):
            Runtime(bundle_copy, warmup=False)
        assert main(["run", str(bundle_copy), "--source", "none.mp4", "--duration", "1"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("edge-mimo run: error: ") and "Traceback" not in err and "permissions" in err


@pytest.mark.parametrize("kind", ["float16 input", "extra input"])
def test_graph_with_a_correct_hash_but_a_foreign_signature_is_refused_at_load(bundle_copy, kind):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    from edge_mimo import Runtime

    rel = read(bundle_copy)["artifacts"]["1"]["int8"]["file"]
    model = onnx.load(str(bundle_copy / rel))
    if kind == "float16 input":
        model.graph.input[0].type.tensor_type.elem_type = TensorProto.FLOAT16
        cast = helper.make_node("Cast", ["images_f16"], [model.graph.input[0].name], to=TensorProto.FLOAT)
        model.graph.input[0].name = "images_f16"
        model.graph.node.insert(0, cast)
    else:
        model.graph.input.append(helper.make_tensor_value_info("extra", TensorProto.FLOAT, [1]))
    onnx.save(model, str(bundle_copy / rel))
    digest = sha256_file(bundle_copy / rel)  # someone updated the hashes too
    doc = read(bundle_copy)
    doc["files"][rel] = doc["artifacts"]["1"]["int8"]["sha256"] = digest
    write(bundle_copy, doc)
    with pytest.raises(BundleIntegrityError, match="expected one float32 input"):
        Runtime(bundle_copy, warmup=False)


# -- item 14: every listed artifact is checked at load; `edge-mimo verify` -------------------------------------


def test_a_truncated_graph_of_the_precision_not_used_is_still_refused(bundle_copy, capsys):
    from edge_mimo import Runtime
    from edge_mimo.cli.main import main

    assert main(["verify", str(bundle_copy)]) == 0
    assert "match their sha256" in capsys.readouterr().out
    fp32 = bundle_copy / "fp32" / "width4.onnx"
    fp32.write_bytes(fp32.read_bytes()[:1000])
    with pytest.raises(BundleIntegrityError, match="fp32/width4.onnx.*sha256"):
        Runtime(bundle_copy, precision="int8", warmup=False)
    assert main(["verify", str(bundle_copy)]) == 2
    err = capsys.readouterr().err
    assert "fp32/width4.onnx" in err and "copy the whole bundle again" in err


def test_artifacts_not_listed_in_files_are_refused(bundle_copy):
    doc = read(bundle_copy)
    rel = doc["artifacts"]["2"]["int8"]["file"]
    del doc["files"][rel]  # a graph the runtime would load, never hash-checked
    write(bundle_copy, doc)
    with pytest.raises(BundleIntegrityError, match="artifacts.2.*files"):
        load_manifest(bundle_copy)


# -- item 3 helper: what counts as a bundle ----------------------------------------------------------------------


def test_a_web_apps_manifest_is_not_a_bundle(tmp_path, cpu_bundle):
    from edge_mimo.bundle.manifest import is_bundle

    (tmp_path / MANIFEST_FILE).write_text(json.dumps({"name": "My App", "manifest_version": 3, "icons": []}))
    assert not is_bundle(tmp_path) and is_bundle(cpu_bundle)


# -- target profiles (item 4, and typed profiles) ----------------------------------------------------------------


@pytest.mark.parametrize("name", ["x/../../escaped", "../up", "/abs", "a b", "", ".hidden", "x" * 65, "c:\\\\win"])
def test_target_names_that_could_escape_the_bundles_folder_are_refused(tmp_path, name):
    profile = tmp_path / "evil.toml"
    profile.write_text(f'name = {json.dumps(name)}\nbackend = "onnxruntime"\nflavour = "cpu"\n')
    with pytest.raises(ConfigError, match="'name'"):
        load_target(profile)


def test_compile_with_an_escaping_target_name_writes_nothing(tmp_path, monkeypatch, capsys):
    from edge_mimo.cli.main import main

    monkeypatch.chdir(tmp_path)
    profile = tmp_path / "evil.toml"
    profile.write_text('name = "x/../../escaped"\nbackend = "onnxruntime"\nflavour = "cpu"\n')
    assert main(["compile", "--target", str(profile), "--calib-size", "16", "--no-cache"]) == 2
    assert "'name'" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evil.toml"]


def test_profiles_are_typed_and_unknown_keys_refused(tmp_path):
    from edge_mimo.bundle.target import TargetProfile

    targets = list_targets()
    orin = targets["jetson-orin"]
    assert isinstance(orin, TargetProfile) and orin.tensorrt.batch.max == 8 and orin.tensorrt.gpu_fallback
    assert targets["cpu"].tensorrt is None and targets["cpu"].threads == 0
    assert TargetProfile.from_dict(orin.to_dict(), "round trip") == orin
    typo = tmp_path / "typo.toml"
    typo.write_text('name = "t"\nbackend = "tensorrt"\nflavour = "tensorrt"\n'
                    '[tensorrt]\nworkspace = 512\nbatch = { min = 1, opt = 1, max = 8 }\n')
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['workspace'\] in \[tensorrt\]"):
        load_target(typo)
    dup = tmp_path / "dup.toml"
    dup.write_text('name = "t"\nbackend = "onnxruntime"\nflavour = "cpu"\nwidths = [1, 1]\n')
    with pytest.raises(ConfigError, match="distinct"):
        load_target(dup)
