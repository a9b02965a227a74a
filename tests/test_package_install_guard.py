"""The conftest guard tells an editable install from a stale wheel, whatever metadata the checkout holds."""

import json
from pathlib import Path
from .support.installed import ROOT, installed_distribution, is_editable, stale_files


def fake_site(tmp_path, name: str, editable: bool):
    site = tmp_path / name
    info = site / "edge_mimo-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: edge-mimo\nVersion: 0.1.0\n")
    if editable:
        (info / "direct_url.json").write_text(json.dumps({"url": "file:///src", "dir_info": {"editable": True}}))
    else:
        (info / "RECORD").write_text("edge_mimo/__init__.py,sha256=AAAA,1\n")
    return site


def checkout_with_egg_info(tmp_path):
    checkout = tmp_path / "checkout"
    egg = checkout / "edge_mimo.egg-info"  # what `pip install -e .` leaves behind
    egg.mkdir(parents=True)
    (egg / "PKG-INFO").write_text("Metadata-Version: 2.1\nName: edge-mimo\nVersion: 0.1.0\n")
    (egg / "SOURCES.txt").write_text("edge_mimo/__init__.py\n")
    return checkout


def test_an_egg_info_in_the_checkout_is_not_taken_for_the_installed_package(tmp_path):
    """`pip install -e .` leaves edge_mimo.egg-info in the checkout, which is first on sys.path under pytest: the
    guard must read the installed metadata behind it (editable: accepted; a wheel: checked file by file)."""
    checkout = checkout_with_egg_info(tmp_path)
    editable = fake_site(tmp_path, "editable", editable=True)
    wheel = fake_site(tmp_path, "wheel", editable=False)
    dist = installed_distribution([str(checkout), str(editable)], root=checkout)
    assert is_editable(dist) and dist.locate_file("") == editable
    dist = installed_distribution([str(checkout), str(wheel)], root=checkout)
    assert not is_editable(dist) and [str(f) for f in dist.files] == ["edge_mimo/__init__.py"]


def test_this_session_runs_on_an_install_the_guard_accepts():
    dist = installed_distribution()
    assert Path(dist.locate_file("")).resolve() != ROOT  # never the checkout's own egg-info
    assert is_editable(dist) or stale_files() == []
