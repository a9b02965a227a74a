"""Bundle integrity: damaged, half-copied, tampered or too-new bundles are refused with a clear BundleError
(naming the problem and the fix), never a crash inside ONNX Runtime; writes are atomic; nothing is unpickled."""

import copy
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from edge_mimo.atomic import atomic_dir
from edge_mimo.bundle.manifest import (MANIFEST_FILE, SCHEMA_VERSION, EngineFile, artifact_path, load_manifest,
                                       sha256_file, verify_artifacts)
from edge_mimo.errors import (BackendUnavailableError, BundleError, BundleIntegrityError, BundleVersionError,
                              ConfigError, EdgeMimoError, EngineMismatchError)

PACKAGE = Path(__file__).resolve().parent.parent / "edge_mimo"
FIX = re.compile(r"(recompile|compile it again|copy the whole bundle|upgrade|pass a directory|refusing|build-engines|"
                 r"install|use backend)")


def refused(error_type, call, match: str = ""):
    """``call()`` raises ``error_type`` whose message names the problem (``match``) and a fix."""
    with pytest.raises(error_type, match=match) as info:
        call()
    assert FIX.search(str(info.value)), f"no fix named in: {info.value}"
    return info.value


# -- manifest and artifact checks on a hand-made bundle (no compile needed) -----------------------------------


@pytest.fixture
def small_bundle(tmp_path):
    root = tmp_path / "bundle"
    (root / "graphs").mkdir(parents=True)
    # an ONNX ModelProto as the wire format sees it: ir_version 8, then 4 KiB of random bytes as producer_name
    (root / "graphs" / "a.onnx").write_bytes(b"\x08\x08\x12\x80\x20" + os.urandom(4096))
    (root / "b.bin").write_bytes(b"x" * 1000)
    files = {rel: sha256_file(root / rel) for rel in ("graphs/a.onnx", "b.bin")}
    manifest = {"schema_version": SCHEMA_VERSION, "model": {"capacity": 4, "num_classes": 10}, "widths": [1, 4],
                "artifacts": {n: {"fp32": {"file": "graphs/a.onnx", "sha256": files["graphs/a.onnx"]}} for n in "14"},
                "files": files, "input": {"channels": 1, "height": 28, "width_px": 28, "mean": [0.3], "std": [0.35]},
                "temperature": {"1": 1.2, "4": 0.9}}
    (root / MANIFEST_FILE).write_text(json.dumps(manifest))
    return root


def write_manifest(root: Path, manifest: dict) -> None:
    (root / MANIFEST_FILE).write_text(json.dumps(manifest))


def read_manifest(root: Path) -> dict:
    """The manifest as a JSON document, to damage it."""
    return json.loads((root / MANIFEST_FILE).read_text())


def test_intact_bundle_verifies(small_bundle):
    verify_artifacts(small_bundle, load_manifest(small_bundle))


@pytest.mark.parametrize("content, error, match", [
    (None, BundleError, "not a bundle"),
    (b"", BundleIntegrityError, "not valid JSON"),
    (b'{"schema_version": 1, "model": ', BundleIntegrityError, "not valid JSON"),  # copied half-way
    (b"\xff\xfe\x00garbage", BundleIntegrityError, "not valid JSON"),
    (b"[1, 2, 3]", BundleIntegrityError, "not a JSON object"),
    (b'{"model": {}}', BundleIntegrityError, "schema_version"),
    (b'{"schema_version": "1"}', BundleIntegrityError, "schema_version"),
    (b'{"schema_version": 1, "model": {}}', BundleIntegrityError, "lacks"),
    (json.dumps({"schema_version": SCHEMA_VERSION + 1}).encode(), BundleVersionError, f"schema {SCHEMA_VERSION + 1}"),
])
def test_bad_manifests_are_refused(small_bundle, content, error, match):
    path = small_bundle / MANIFEST_FILE
    if content is None:
        path.unlink()
    else:
        path.write_bytes(content)
    refused(error, lambda: load_manifest(small_bundle), match)


@pytest.mark.parametrize("path, value, match", [
    (("widths",), [3], "dividing the capacity"),
    (("widths",), [], "widths"),
    (("widths",), [True], "widths"),
    (("model", "capacity"), "4", "capacity"),
    (("model", "class_names"), ["a", "b"], "class_names"),
    (("files",), ["graphs/a.onnx"], "sha256"),
    (("files", "b.bin"), None, "sha256"),
    (("artifacts", "4"), {}, "artifacts.4"),
    (("artifacts", "1", "fp32", "file"), 7, "artifacts.1"),
    (("input", "channels"), 2, "input"),
    (("input", "std"), [0.0], "input"),
    (("input", "mean"), [0.3, 0.3], "input"),
    (("input", "height"), -28, "input"),
    (("temperature", "1"), 0, "temperature"),
    (("temperature",), [1.0], "temperature"),
    (("uncertainty",), {"1": {"entropy_threshold": "high"}}, "uncertainty"),
])
def test_malformed_manifest_structure_is_refused(small_bundle, path, value, match):
    manifest = json.loads((small_bundle / MANIFEST_FILE).read_text())
    node = manifest
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    write_manifest(small_bundle, manifest)
    refused(BundleIntegrityError, lambda: load_manifest(small_bundle), match)


@pytest.mark.parametrize("damage", ["missing", "truncated", "empty", "one bit", "appended", "directory"])
def test_damaged_artifacts_are_refused(small_bundle, damage):
    path = small_bundle / "graphs" / "a.onnx"
    data = path.read_bytes()
    if damage == "missing":
        path.unlink()
    elif damage == "directory":
        path.unlink()
        path.mkdir()
    else:
        path.write_bytes({"truncated": data[: len(data) // 2], "empty": b"",
                          "one bit": data[:100] + bytes([data[100] ^ 1]) + data[101:], "appended": data + b"\0"}[damage])
    manifest = load_manifest(small_bundle)
    refused(BundleIntegrityError, lambda: verify_artifacts(small_bundle, manifest),
            "missing" if damage in ("missing", "directory") else "sha256")
    verify_artifacts(small_bundle, manifest, only=["b.bin"])  # the others still check out


@pytest.mark.parametrize("rel", ["../outside.bin", "graphs/../../outside.bin", "/etc/hostname", "link/outside.bin",
                                 "escape.bin", "..", "."])
def test_paths_escaping_the_bundle_are_refused(small_bundle, rel):
    outside = small_bundle.parent / "outside.bin"
    outside.write_bytes(b"secret")
    manifest = load_manifest(small_bundle)  # before the links: loading a bundle with them is refused outright
    (small_bundle / "link").symlink_to(small_bundle.parent, target_is_directory=True)
    (small_bundle / "escape.bin").symlink_to(outside)
    manifest.files = {rel: sha256_file(outside)}  # the right hash: only the location gives it away
    refused(BundleIntegrityError, lambda: artifact_path(small_bundle, rel), "outside the bundle")
    refused(BundleIntegrityError, lambda: verify_artifacts(small_bundle, manifest), "outside the bundle")


def test_symlink_inside_the_bundle_is_allowed(small_bundle):
    (small_bundle / "alias.onnx").symlink_to(small_bundle / "graphs" / "a.onnx")
    assert artifact_path(small_bundle, "alias.onnx") == (small_bundle / "graphs" / "a.onnx").resolve()


# -- a real compiled bundle, damaged in every way a copy, a disk or a person can --------------------------------


@pytest.fixture
def bundle_copy(cpu_bundle, tmp_path):
    dst = tmp_path / "bundle"
    shutil.copytree(cpu_bundle, dst)
    return dst


def runtime(bundle, **kw):
    from edge_mimo import Runtime

    return Runtime(bundle, threads=1, **kw)


def graph_files(bundle: Path, manifest: dict) -> dict[int, str]:
    """width -> relpath of the graph the runtime loads by default (INT8 when present)."""
    out = {}
    for n in manifest["widths"]:
        entry = manifest["artifacts"][str(n)]
        out[n] = (entry.get("int8") or entry["fp32"])["file"]
    return out


def test_every_listed_file_is_checked_at_load(bundle_copy):
    manifest = read_manifest(bundle_copy)
    loaded = set(graph_files(bundle_copy, manifest).values())
    for rel in loaded:
        path = artifact_path(bundle_copy, rel)
        original = path.read_bytes()
        for damaged in (original[: len(original) // 2], b"", original[:-1] + bytes([original[-1] ^ 0x80])):
            path.write_bytes(damaged)
            refused(BundleIntegrityError, lambda: runtime(bundle_copy), "sha256")
        path.unlink()
        refused(BundleIntegrityError, lambda: runtime(bundle_copy), "missing")
        path.write_bytes(original)
    runtime(bundle_copy, warmup=False)  # restored: loads again


def test_half_copied_bundle_is_refused(cpu_bundle, tmp_path):
    manifest = read_manifest(cpu_bundle)
    half = tmp_path / "half"
    half.mkdir()
    shutil.copy(cpu_bundle / MANIFEST_FILE, half)
    for rel in sorted(graph_files(cpu_bundle, manifest).values())[:1]:  # the copy stopped after the first graph
        (half / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(cpu_bundle / rel, half / rel)
    refused(BundleIntegrityError, lambda: runtime(half), "missing")


def rehash(bundle: Path, manifest: dict, rel: str) -> None:
    """Make the manifest agree with a changed file (someone edited both): only the backend can tell now."""
    digest = sha256_file(bundle / rel)
    manifest["files"][rel] = digest
    for entry in manifest["artifacts"].values():
        for art in entry.values():
            if isinstance(art, dict) and art.get("file") == rel:
                art["sha256"] = digest
    write_manifest(bundle, manifest)


@pytest.mark.parametrize("damage", ["garbage", "truncated", "not onnx"])
def test_matching_hash_but_broken_graph_is_refused_before_onnx_runtime_runs_it(bundle_copy, damage):
    manifest = read_manifest(bundle_copy)
    rel = graph_files(bundle_copy, manifest)[max(manifest["widths"])]
    data = (bundle_copy / rel).read_bytes()
    (bundle_copy / rel).write_bytes({"garbage": os.urandom(len(data)), "truncated": data[: len(data) * 2 // 3],
                                     "not onnx": b'{"this is": "json"}'}[damage])
    rehash(bundle_copy, manifest, rel)
    refused(BundleIntegrityError, lambda: runtime(bundle_copy), "cannot load|no ONNX graph")  # by the scan or ORT


def test_graphs_swapped_between_widths_are_refused(bundle_copy):
    manifest = read_manifest(bundle_copy)
    graphs = graph_files(bundle_copy, manifest)
    lo, hi = min(graphs), max(graphs)
    a, b = bundle_copy / graphs[lo], bundle_copy / graphs[hi]
    data_a, data_b = a.read_bytes(), b.read_bytes()
    a.write_bytes(data_b)
    b.write_bytes(data_a)
    rehash(bundle_copy, manifest, graphs[lo])
    rehash(bundle_copy, manifest, graphs[hi])
    refused(BundleIntegrityError, lambda: runtime(bundle_copy), "expected")


def test_graph_reading_weights_from_outside_the_bundle_is_refused(bundle_copy, tmp_path):
    """An ONNX graph whose weights are 'external data' at ../../secret: refused at load, nothing read."""
    onnx = pytest.importorskip("onnx")
    import onnx.numpy_helper
    from onnx import TensorProto, helper

    (tmp_path / "secret.bin").write_bytes(np.arange(4, dtype=np.float32).tobytes())
    weight = onnx.numpy_helper.from_array(np.zeros(4, np.float32), "w")
    weight.ClearField("raw_data")
    weight.data_location = TensorProto.EXTERNAL
    for key, value in (("location", "../secret.bin"), ("offset", "0"), ("length", "16")):
        entry = weight.external_data.add()
        entry.key, entry.value = key, value
    io = [helper.make_tensor_value_info(name, TensorProto.FLOAT, [4]) for name in ("x", "y")]
    graph = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "g", io[:1], io[1:], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    manifest = read_manifest(bundle_copy)
    rel = graph_files(bundle_copy, manifest)[1]
    onnx.save(model, str(bundle_copy / rel))
    rehash(bundle_copy, manifest, rel)
    refused(BundleIntegrityError, lambda: runtime(bundle_copy), "cannot load|no ONNX graph")  # by the scan or ORT


@pytest.mark.parametrize("field, value", [("height", 32), ("width_px", 20), ("channels", 3)])
def test_manifest_input_that_disagrees_with_the_graphs_is_refused(bundle_copy, field, value):
    manifest = read_manifest(bundle_copy)
    manifest["input"][field] = value
    if field == "channels":
        manifest["input"].update(color="rgb", mean=[0.5] * 3, std=[0.5] * 3)
    write_manifest(bundle_copy, manifest)
    refused(BundleIntegrityError, lambda: runtime(bundle_copy), "input")


def test_schema_1_bundles_still_load_their_pixel_width(bundle_copy, cpu_runtime):
    """Schema 1 called the input's pixel width ``width``; it is read as ``width_px``."""
    manifest = read_manifest(bundle_copy)
    manifest["schema_version"] = 1
    manifest["input"]["width"] = manifest["input"].pop("width_px")
    write_manifest(bundle_copy, manifest)
    loaded = load_manifest(bundle_copy)
    assert loaded.input.width_px == 28 and loaded.to_dict()["input"]["width_px"] == 28
    frame = np.random.default_rng(1).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    np.testing.assert_allclose(runtime(bundle_copy).infer(frame).probabilities,
                               cpu_runtime.infer(frame).probabilities, atol=1e-6)


def test_newer_bundle_is_refused_with_upgrade_advice(bundle_copy):
    manifest = read_manifest(bundle_copy)
    manifest["schema_version"] = SCHEMA_VERSION + 1
    manifest["some_future_field"] = {"x": 1}
    write_manifest(bundle_copy, manifest)
    refused(BundleVersionError, lambda: runtime(bundle_copy), "upgrade")


def test_manifest_pointing_outside_the_bundle_is_refused(bundle_copy, tmp_path):
    manifest = read_manifest(bundle_copy)
    n = max(manifest["widths"])
    rel = graph_files(bundle_copy, manifest)[n]
    shutil.copy(bundle_copy / rel, tmp_path / "elsewhere.onnx")
    evil = "../elsewhere.onnx"
    for art in manifest["artifacts"][str(n)].values():
        if isinstance(art, dict) and art.get("file") == rel:
            art["file"] = evil
    manifest["files"][evil] = manifest["files"].pop(rel)
    write_manifest(bundle_copy, manifest)
    refused(BundleIntegrityError, lambda: runtime(bundle_copy), "outside the bundle")


@pytest.mark.parametrize("damage", ["truncated graph", "newer schema", "no manifest", "manifest half-written"])
def test_edge_mimo_run_refuses_a_damaged_bundle_with_a_message_not_a_traceback(bundle_copy, tmp_path, capsys, damage):
    from edge_mimo.cli.main import main

    from .test_streams import write_video

    manifest = read_manifest(bundle_copy)
    text = (bundle_copy / MANIFEST_FILE).read_text()
    if damage == "truncated graph":
        graph = bundle_copy / graph_files(bundle_copy, manifest)[1]
        graph.write_bytes(graph.read_bytes()[:1000])
    elif damage == "newer schema":
        write_manifest(bundle_copy, dict(manifest, schema_version=SCHEMA_VERSION + 1))
    elif damage == "no manifest":
        (bundle_copy / MANIFEST_FILE).unlink()
    else:
        (bundle_copy / MANIFEST_FILE).write_text(text[: len(text) // 2])
    video = write_video(tmp_path / "v.avi", 5, 10)
    assert main(["run", str(bundle_copy), "--source", video, "--duration", "2"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("edge-mimo run: error: ") and "Traceback" not in err and FIX.search(err), err


# -- TensorRT engines: tied to one GPU architecture and TensorRT version ----------------------------------------

ENGINES = [{"file": "engines/sm87-trt10.3.0/width4.plan", "sha256": "0" * 64, "compute_capability": "8.7",
            "tensorrt": "10.3.0"},
           {"file": "engines/sm90-trt10.8.0/width4.plan", "sha256": "1" * 64, "compute_capability": "9.0",
            "tensorrt": "10.8.0"}]


@pytest.mark.parametrize("device", [("8.6", "10.3.0"), ("8.7", "10.8.0"), ("9.0", "10.3.0")])
def test_engines_for_another_gpu_or_tensorrt_are_refused(device):
    from edge_mimo.engines.plans import check_compatible, find_engine

    engines = [EngineFile.from_dict(e) for e in ENGINES]
    assert find_engine(engines, *device) is None  # never picked for this device ...
    for entry in engines:  # ... and refused if handed over anyway
        refused(EngineMismatchError, lambda: check_compatible(entry, *device), f"SM {device[0]} with TensorRT")
    assert find_engine(engines, "9.0", "10.8.0").file.startswith("engines/sm90-trt10.8.0/")


@pytest.mark.parametrize("engines", [{"file": "x.plan"}, [{"file": "x.plan", "sha256": "0" * 64}], ["x.plan"]])
def test_malformed_engine_lists_are_refused(small_bundle, engines):
    manifest = json.loads((small_bundle / MANIFEST_FILE).read_text())
    manifest["artifacts"]["4"]["engines"] = engines
    write_manifest(small_bundle, manifest)
    refused(BundleIntegrityError, lambda: load_manifest(small_bundle), "engines")


def test_bundle_with_foreign_engines_runs_on_onnx_runtime_and_refuses_tensorrt_here(bundle_copy, cpu_runtime):
    """A bundle carrying plans from a Jetson, copied to this CPU machine."""
    manifest = read_manifest(bundle_copy)
    for entry in ENGINES:
        path = bundle_copy / entry["file"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(2048))  # not a plan this machine could deserialize anyway
        entry = dict(entry, sha256=sha256_file(path))
        manifest["files"][entry["file"]] = entry["sha256"]
        for n in manifest["widths"]:
            manifest["artifacts"][str(n)].setdefault("engines", []).append(entry)
    write_manifest(bundle_copy, manifest)
    rt = runtime(bundle_copy)
    assert rt.backend_name == "onnxruntime"
    frame = np.zeros((48, 64, 3), np.uint8)
    np.testing.assert_allclose(rt.infer(frame).probabilities, cpu_runtime.infer(frame).probabilities, atol=1e-6)
    with pytest.raises((BackendUnavailableError, EngineMismatchError)) as info:
        runtime(bundle_copy, backend="tensorrt")
    assert FIX.search(str(info.value)), info.value


# -- any damage to a real manifest: a clear error or a working runtime, never another exception -----------------

JSON = st.recursive(st.none() | st.booleans() | st.integers(-3, 1 << 40) | st.floats() | st.text(max_size=6),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
                    max_leaves=6)


def paths(node, prefix=(), depth=4):
    """Every key path in the manifest down to ``depth`` levels (lists indexed)."""
    yield prefix
    if depth == 0:
        return
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for k, v in items:
        yield from paths(v, prefix + (k,), depth - 1)


@st.composite
def damaged_manifest(draw, original):
    doc = copy.deepcopy(original)
    for _ in range(draw(st.integers(1, 3))):
        candidates = [p for p in paths(doc) if p and p[0] not in ("versions", "created", "quantization", "report")]
        path = draw(st.sampled_from(candidates))
        parent = doc
        for k in path[:-1]:
            parent = parent[k]
        if draw(st.booleans()):
            del parent[path[-1]]
            event(f"deleted {path[0]}")
        else:
            parent[path[-1]] = draw(JSON)
            event(f"replaced {path[0]}")
    return doc


@pytest.fixture(scope="module")
def shared_copy(cpu_bundle, tmp_path_factory):
    dst = tmp_path_factory.mktemp("fuzz") / "bundle"
    shutil.copytree(cpu_bundle, dst)
    return dst


def test_any_damage_to_the_manifest_gives_a_clear_error_or_a_working_runtime(shared_copy):
    original = read_manifest(shared_copy)
    frame = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    outcomes = {"refused": 0, "loaded": 0}

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(doc=damaged_manifest(original))
    def check(doc):
        write_manifest(shared_copy, doc)
        try:
            rt = runtime(shared_copy, warmup=False)
        except EdgeMimoError as e:
            assert ":" in str(e), str(e)
            outcomes["refused"] += 1
            return
        outcomes["loaded"] += 1
        results = rt.infer_many([frame, frame, None])
        for r in results[:2]:  # what still loads must still classify sanely
            assert r.ok and np.isfinite(r.probabilities).all() and abs(r.probabilities.sum() - 1) < 1e-4
            assert 0 <= r.class_index < len(r.probabilities) and 0 <= r.entropy <= 1 + 1e-6
        assert not results[2].ok

    try:
        check()
    finally:
        write_manifest(shared_copy, original)
    print(f"damaged manifests: {outcomes}")
    assert outcomes["refused"] > 20 and outcomes["loaded"] > 5, outcomes


# -- atomic writes ----------------------------------------------------------------------------------------------


def test_atomic_dir_keeps_the_old_bundle_when_a_write_fails(tmp_path):
    target = tmp_path / "bundle"
    with atomic_dir(target) as d:
        (d / "manifest.json").write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as d:
            (d / "manifest.json").write_text("new, half")
            raise RuntimeError("compile failed half-way")
    assert (target / "manifest.json").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["bundle"]  # no partial directory left behind


def test_a_writer_killed_mid_write_never_leaves_a_half_bundle(tmp_path):
    """SIGKILL a process while it writes a bundle: the target is the old one or absent, never partial."""
    target = tmp_path / "bundle"
    code = textwrap.dedent(f"""
        import sys, time
        from edge_mimo.atomic import atomic_dir
        with atomic_dir({str(target)!r}) as d:
            (d / "a.onnx").write_bytes(b"x" * 100000)
            print("writing", flush=True)
            time.sleep(30)
            (d / "manifest.json").write_text("{{}}")
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    assert not target.exists()  # the partial work sits in a hidden temporary directory only
    with pytest.raises(BundleError, match="not a bundle"):
        load_manifest(target)


def test_an_output_path_that_is_not_an_earlier_output_is_never_replaced(tmp_path):
    precious = tmp_path / "thesis"
    precious.mkdir()
    (precious / "chapter1.tex").write_text("years of work")
    (tmp_path / "notes.txt").write_text("a file")
    for target in (precious, tmp_path / "notes.txt"):
        with pytest.raises(ConfigError, match="not an earlier output.*choose a new or empty"):
            with atomic_dir(target, marker=MANIFEST_FILE) as d:
                (d / MANIFEST_FILE).write_text("{}")
    assert (precious / "chapter1.tex").read_text() == "years of work" and (tmp_path / "notes.txt").is_file()
    (tmp_path / "empty").mkdir()
    for target in (tmp_path / "empty", tmp_path / "empty", tmp_path / "new"):  # empty, an earlier output, new
        with atomic_dir(target, marker=MANIFEST_FILE) as d:
            (d / MANIFEST_FILE).write_text("{}")
        assert (target / MANIFEST_FILE).is_file()


def test_compile_and_train_refuse_an_output_directory_that_is_not_theirs(tmp_path, capsys):
    from edge_mimo.cli.main import main

    precious = tmp_path / "Documents"
    precious.mkdir()
    (precious / "taxes.pdf").write_bytes(b"%PDF")
    assert main(["compile", "--model", "default", "--target", "cpu", "--calib-size", "16", "-o", str(precious)]) == 2
    assert "refusing to replace it" in capsys.readouterr().err
    assert [p.name for p in precious.iterdir()] == ["taxes.pdf"]
    assert main(["train", "--epochs", "1", "-o", str(precious)]) == 2  # refused before training starts
    assert "refusing to replace it" in capsys.readouterr().err


# -- nothing unpickles untrusted data ---------------------------------------------------------------------------


def test_no_untrusted_unpickling_in_the_package():
    """pickle only for CIFAR batches (the user's own explicit choice), torch.load only with weights_only=True,
    numpy loads never with allow_pickle=True."""
    findings = []
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE).as_posix()
        for i, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#")[0]
            if re.search(r"\bpickle\.loads?\(|\bdill\b|\bjoblib\.load|\bmarshal\.loads?\(|\bshelve\b", code):
                if not (rel == "datasets.py" and "pickle.load(f" in code):
                    findings.append(f"{rel}:{i}: {line.strip()}")
            if "torch.load(" in code and "weights_only=True" not in code:
                findings.append(f"{rel}:{i}: {line.strip()}")
            if "allow_pickle=True" in code or re.search(r"(?<![\w.])(eval|exec)\(", code) or "yaml.load(" in code:
                findings.append(f"{rel}:{i}: {line.strip()}")
    assert not findings, "\n".join(findings)
    cifar = (PACKAGE / "datasets.py").read_text()
    assert "pickles: only load CIFAR batches you downloaded from the official source" in cifar
