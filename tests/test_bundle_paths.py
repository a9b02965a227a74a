"""Issue 21, items 1, 2, 6 and 12 (manifest paths, sizes): links leaving a bundle, external data no manifest hashes,
a manifest only its writer could read, and paths or files that gave foreign exceptions or hashed for ever."""

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edge_mimo.bundle.manifest import MANIFEST_FILE, Manifest, sha256_file, verify_artifacts
from edge_mimo.bundle.onnx_refs import MalformedGraph, external_tensors
from edge_mimo.errors import BundleError, BundleIntegrityError


def cli(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edge_mimo.cli.main", *map(str, args)], capture_output=True,
                          text=True, timeout=120, cwd=cwd)


def one_line_error(proc: subprocess.CompletedProcess, *words: str) -> None:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    for w in words:
        assert w in proc.stderr, proc.stderr


@pytest.fixture
def bundle(cpu_bundle, tmp_path) -> Path:
    out = tmp_path / "bundle"
    shutil.copytree(cpu_bundle, out)
    return out


@pytest.fixture
def secret(tmp_path) -> Path:
    path = tmp_path / "secret.txt"
    path.write_text("TOP-SECRET-OUTSIDE-THE-BUNDLE\n")
    return path


# -- item 1: links that leave the bundle, link loops -------------------------------------------------------------


@pytest.mark.parametrize("where", ["notes.txt", "fp32/extra.onnx", "sub"])
def test_a_link_leading_outside_the_bundle_is_refused_by_load_verify_and_export(bundle, secret, tmp_path, where):
    link = bundle / where
    link.parent.mkdir(exist_ok=True)
    link.symlink_to(secret if where != "sub" else secret.parent, target_is_directory=where == "sub")
    one_line_error(cli("verify", bundle), "leads outside", where)
    repo = tmp_path / "repo"
    one_line_error(cli("export-triton", bundle, "-o", repo), "leads outside")
    assert not repo.exists() or "TOP-SECRET" not in "".join(
        p.read_text(errors="ignore") for p in repo.rglob("*") if p.is_file())
    from edge_mimo import Runtime

    with pytest.raises(BundleIntegrityError, match="leads outside"):
        Runtime(bundle)


def test_a_listed_graph_replaced_by_a_link_to_an_outside_copy_is_refused(bundle, tmp_path):
    graph = bundle / "fp32" / "width1.onnx"
    outside = tmp_path / "copy.onnx"
    shutil.copy(graph, outside)
    graph.unlink()
    graph.symlink_to(outside)
    one_line_error(cli("verify", bundle), "leads outside")


def test_a_link_loop_is_refused_and_links_inside_the_bundle_are_fine(bundle):
    (bundle / "alias.md").symlink_to("report.md")
    (bundle / "sub").mkdir()
    (bundle / "sub" / "graphs").symlink_to("../fp32", target_is_directory=True)
    assert cli("verify", bundle).returncode == 0
    (bundle / "loop").symlink_to("loop")
    one_line_error(cli("verify", bundle), "loop")


# -- item 2: external data ------------------------------------------------------------------------------------------


def external_data_bundle(bundle: Path) -> Path:
    """Width 1's FP32 graph rewritten with its weights in ``fp32/weights.bin``; the manifest hashes the graph only."""
    import onnx

    graph = bundle / "fp32" / "width1.onnx"
    model = onnx.load(graph)
    onnx.save_model(model, graph, save_as_external_data=True, all_tensors_to_one_file=True, location="weights.bin",
                    size_threshold=0)
    doc = json.loads((bundle / MANIFEST_FILE).read_text())
    digest = sha256_file(graph)
    doc["files"]["fp32/width1.onnx"] = digest
    doc["artifacts"]["1"]["fp32"]["sha256"] = digest
    (bundle / MANIFEST_FILE).write_text(json.dumps(doc))
    return bundle / "fp32" / "weights.bin"


def test_a_graph_reading_unhashed_external_data_is_refused(bundle):
    weights = external_data_bundle(bundle)
    assert weights.is_file() and external_tensors((bundle / "fp32" / "width1.onnx").read_bytes())
    one_line_error(cli("verify", bundle), "external data", "fp32/width1.onnx")
    from edge_mimo import Runtime

    with pytest.raises(BundleIntegrityError, match="external data"):
        Runtime(bundle, precision="fp32")


def test_the_external_data_scan_reads_real_graphs_and_refuses_garbage(cpu_bundle):
    for path in sorted(cpu_bundle.rglob("*.onnx")):
        assert external_tensors(path.read_bytes()) == [], path
    for garbage in (b"\xff" * 10, b"\x0a\xff\xff\xff\xff\x0f", b"\x3a" + b"\x80" * 20, b"\x0f"):
        with pytest.raises(MalformedGraph):
            external_tensors(garbage)


def test_a_hashed_graph_the_scan_cannot_read_is_refused_not_passed_on(bundle):
    """Fail closed: a graph whose bytes match the manifest but are no protobuf the external-data scan can walk is
    refused by verify and load, not handed to a backend whose parser might accept it (and its file references)."""
    graph = bundle / "fp32" / "width1.onnx"
    graph.write_bytes(graph.read_bytes() + b"\x0f")  # a stray byte after the model: wire type 7 does not exist
    doc = json.loads((bundle / MANIFEST_FILE).read_text())
    doc["files"]["fp32/width1.onnx"] = doc["artifacts"]["1"]["fp32"]["sha256"] = sha256_file(graph)
    (bundle / MANIFEST_FILE).write_text(json.dumps(doc))
    one_line_error(cli("verify", bundle), "no ONNX graph", "fp32/width1.onnx")
    from edge_mimo import Runtime

    with pytest.raises(BundleIntegrityError, match="no ONNX graph"):
        Runtime(bundle, precision="fp32")


# -- item 6: permissions --------------------------------------------------------------------------------------------


def test_manifest_json_has_the_permissions_of_the_other_files(cpu_bundle, bundle):
    mode = stat.S_IMODE((cpu_bundle / MANIFEST_FILE).stat().st_mode)
    assert mode == stat.S_IMODE((cpu_bundle / "report.md").stat().st_mode), oct(mode)
    old = os.umask(0o022)
    try:
        Manifest.load(bundle).save(bundle)  # rewritten, as build-engines does
    finally:
        os.umask(old)
    assert stat.S_IMODE((bundle / MANIFEST_FILE).stat().st_mode) == 0o644


# -- item 12: manifest paths and file sizes -------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["bundle\x00x", "b" * 5000, "/nonexistent/" + "d/" * 3000, None, 3])
def test_a_bundle_path_with_nul_or_thousands_of_characters_is_a_bundle_error(path):
    with pytest.raises(BundleError):
        Manifest.load(path)
    from edge_mimo import Runtime

    with pytest.raises(BundleError):
        Runtime(path)


@pytest.mark.parametrize("name", ["fp32/\x00x.onnx", "x" * 5000, "../outside.onnx", "/etc/passwd"])
def test_a_manifest_naming_a_bad_file_path_is_refused(bundle, name):
    doc = json.loads((bundle / MANIFEST_FILE).read_text())
    doc["files"][name] = "0" * 64
    (bundle / MANIFEST_FILE).write_text(json.dumps(doc))
    with pytest.raises(BundleIntegrityError, match="relative paths"):
        Manifest.load(bundle)


def test_a_huge_sparse_file_in_place_of_a_graph_is_refused_without_hashing_it(bundle):
    graph = bundle / "int8" / next(p.name for p in (bundle / "int8").iterdir())
    with open(graph, "r+b") as f:
        f.truncate(400 << 30)  # sparse: no disk used; hashing it took hours
    manifest = Manifest.load(bundle)
    with pytest.raises(BundleIntegrityError, match="MiB"):
        verify_artifacts(bundle, manifest)
