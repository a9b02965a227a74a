"""The import direction of edge_mimo's layers (docs/architecture.md): a package imports only layers below it."""

import ast
from pathlib import Path

import edge_mimo

PACKAGE = Path(edge_mimo.__file__).parent
# Bottom to top. A module may import its own area and the areas of lower layers, never a higher or equal other one.
LAYERS = [
    {"errors"},
    {"atomic", "metrics", "keyed_cache", "plotting", "progress"},
    {"models"},  # configs and modules; the rest only needs models.config
    {"bundle", "datasets"},
    {"engines"},
    {"runtime"},
    {"streams", "camera", "quantize", "export"},
    {"live", "train", "compile", "serving", "bench"},
    {"twin"},
    {"cli"},
]
RANK = {area: rank for rank, areas in enumerate(LAYERS) for area in areas}
DATA = {"default_model", "mimoformer_model", "targets", "calibration"}  # shipped data (a wheel installs the last two
# as edge_mimo.targets / edge_mimo.calibration): no code beyond a marker and a sample-making script


def area_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def imports(path: Path, root: Path = PACKAGE.parent) -> set[str]:
    """The edge_mimo modules ``path`` (under ``root``) imports, relative imports resolved, at any depth of the file."""
    package = ".".join(path.relative_to(root).parts[:-1])
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                found.add(".".join(base + ([node.module] if node.module else [])))
            elif node.module:
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return {m for m in found if m == "edge_mimo" or m.startswith("edge_mimo.")}


def test_every_import_points_down_the_layers():
    wrong = []
    for path in PACKAGE.rglob("*.py"):
        module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        area = area_of(module)
        if area in ("", "__init__") or area in DATA:
            continue
        assert area in RANK, f"edge_mimo/{area} is in no layer: add it to LAYERS here and to docs/architecture.md"
        for target in imports(path):
            other = area_of(target)
            if other in ("", area) or other in DATA:
                continue
            assert other in RANK, f"{module} imports {target}, whose area is in no layer"
            if RANK[other] >= RANK[area]:
                wrong.append(f"{module} imports {target} ({area} is layer {RANK[area]}, {other} layer {RANK[other]})")
    assert not wrong, "imports against the layers:\n" + "\n".join(sorted(wrong))


def test_the_layer_check_sees_relative_and_absolute_imports(tmp_path):
    """The checker itself: a lower layer importing a higher one, relatively and absolutely, is found."""
    probe = tmp_path / "edge_mimo" / "runtime" / "probe.py"
    probe.parent.mkdir(parents=True)
    probe.write_text("import numpy\nfrom ..compile import pipeline\nimport edge_mimo.cli.main\n"
                     "def f():\n    from . import batching\n")
    assert imports(probe, tmp_path) == {"edge_mimo.compile", "edge_mimo.cli.main", "edge_mimo.runtime"}
