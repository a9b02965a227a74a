"""`Runtime.infer_many` against references that do not come from the runtime itself.

1. A stand-in backend whose logits are a known table of the frame's content (flat gray frames, one level per
   stream), in a bundle whose manifest carries temperatures and thresholds chosen here: every result must be
   softmax(table[level] / T[width]) computed by hand, flagged against its own width's threshold, and belong to the
   stream that sent the frame.
2. The shipped model on real garments of distinct classes: each frame's result in one call with the others equals
   its result alone, and is its true class.
"""

import json

import numpy as np
import pytest
import torch

import edge_mimo.export as export
from edge_mimo import Runtime
from edge_mimo.compile.pipeline import CompileOptions, compile_bundle
from edge_mimo.datasets import shipped_sample

from .conftest import manifest_json
from .support.tiny import ExportOnce, tiny_model_dir

torch.set_num_threads(2)
K, N = 10, 4
LEVELS = [20, 60, 100, 140, 180, 220]  # one flat gray frame per stream
CLASSES = [3, 7, 0, 9, 5, 1]  # the class each level's logits favour (all distinct)
TEMPERATURE = {1: 0.5, 2: 1.0, 4: 2.5}
THRESHOLD = {1: 0.25, 2: 0.55, 4: 0.8}


def table() -> dict[int, np.ndarray]:
    rng = np.random.default_rng(0)
    return {v: 3.0 * np.eye(K)[c] + rng.normal(0.0, 1.0, K) for v, c in zip(LEVELS, CLASSES)}


class TableBackend:
    """Backend protocol stand-in: the logits of an image are TABLE[its gray level] in every slot it fills."""

    name, precision = "table", "int8"

    def __init__(self, mean: float, std: float) -> None:
        self.mean, self.std, self.table = mean, std, table()

    def level(self, image: np.ndarray) -> int:
        v = int(round((float(image.mean()) * self.std + self.mean) * 255))
        return min(self.table, key=lambda t: abs(t - v))

    def run(self, width: int, groups: np.ndarray) -> np.ndarray:
        g, n = groups.shape[:2]
        out = np.zeros((g, N // n, n, K), np.float32)
        for i in range(g):
            for j in range(n):
                out[i, :, j] = self.table[self.level(groups[i, j])] if groups[i, j].any() else 0.0
        return out

    def close(self) -> None:
        pass


@pytest.fixture(scope="module")
def table_bundle(tmp_path_factory):
    """The tiny model compiled at widths 1, 2, 4, its manifest then given the temperatures and thresholds above."""
    root = tmp_path_factory.mktemp("reference")
    saved = export.export_width
    export.export_width = ExportOnce(saved, root)
    try:
        bundle, _ = compile_bundle(CompileOptions(model=str(tiny_model_dir(root)), widths=[1, 2, 4],
                                                  calibration_size=32, validation_size=64, allow_drop=True,
                                                  output=root / "bundle",
                                                  cache_dir=root / "cache"))
    finally:
        export.export_width = saved
    manifest = manifest_json(bundle)
    for n in (1, 2, 4):
        manifest["temperature"][str(n)] = TEMPERATURE[n]
        manifest["uncertainty"][str(n)]["entropy_threshold"] = THRESHOLD[n]
    (bundle / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return bundle


@pytest.fixture(scope="module")
def table_runtime(table_bundle):
    m = manifest_json(table_bundle)["input"]
    return Runtime(table_bundle, engine=TableBackend(m["mean"][0], m["std"][0]))


@pytest.fixture(scope="module", autouse=True)
def class_names(table_bundle):
    CLASS_NAMES[:] = manifest_json(table_bundle)["model"]["class_names"]
    assert len(CLASS_NAMES) == K and len(set(CLASS_NAMES)) == K


CLASS_NAMES: list[str] = []


class SpreadBackend(TableBackend):
    """The table, plus a known offset per replica: replica r of an image gets TABLE[level] + SPREAD[r]."""

    def run(self, width: int, groups: np.ndarray) -> np.ndarray:
        out = super().run(width, groups)
        return out + SPREAD[: out.shape[1]][None, :, None, :].astype(np.float32)


SPREAD = np.random.default_rng(5).normal(0.0, 2.0, (N, K))


def test_disagreement_is_the_mutual_information_of_the_replicas(table_bundle):
    """One frame at width 1 fills all N slots: its N replica predictions are TABLE + SPREAD[r]; the result is their
    average at T[1] and their mutual information, both computed here."""
    m = manifest_json(table_bundle)["input"]
    rt = Runtime(table_bundle, engine=SpreadBackend(m["mean"][0], m["std"][0]))
    for v in LEVELS[:3]:
        r = rt.infer_many([frame(v)], width=1)[0]
        assert r.replicas == N
        z = (table()[v] + SPREAD) / TEMPERATURE[1]  # [N, K]
        p_r = np.exp(z - z.max(1, keepdims=True))
        p_r /= p_r.sum(1, keepdims=True)
        mean_z = z.mean(0)
        p = np.exp(mean_z - mean_z.max())
        p /= p.sum()
        np.testing.assert_allclose(r.probabilities, p, rtol=1e-5, atol=1e-6)

        def h(q):
            return float(-(q * np.log(q)).sum(-1).mean()) if q.ndim > 1 else float(-(q * np.log(q)).sum())

        mi = (h(p_r.mean(0)) - h(p_r)) / np.log(K)
        assert mi > 0.02 and r.disagreement == pytest.approx(mi, rel=1e-4, abs=1e-6)


def frame(level: int) -> np.ndarray:
    return np.full((28, 28), level, np.uint8)


def expected(level: int, width: int) -> np.ndarray:
    z = table()[level] / TEMPERATURE[width]
    p = np.exp(z - z.max())
    return p / p.sum()


def test_runtime_loads_each_widths_temperature_and_threshold_from_the_manifest(table_runtime):
    assert table_runtime.temperature == TEMPERATURE
    assert table_runtime.entropy_threshold == THRESHOLD


@pytest.mark.parametrize("width", [1, 2, 4])
def test_probabilities_are_the_table_at_the_widths_temperature(table_runtime, width):
    results = table_runtime.infer_many([frame(v) for v in LEVELS[:4]], width=width)
    for v, c, r in zip(LEVELS, CLASSES, results):
        assert r.ok and r.width == width and r.replicas == N // width, r
        p = expected(v, width)
        np.testing.assert_allclose(r.probabilities, p, rtol=1e-5, atol=1e-6)
        assert r.class_index == c == int(p.argmax())
        assert r.class_name == CLASS_NAMES[c]
        assert r.confidence == pytest.approx(float(p.max()), rel=1e-5)
        h = float(-(p * np.log(p)).sum() / np.log(K))
        assert r.entropy == pytest.approx(h, rel=1e-5, abs=1e-7)
        assert r.disagreement == pytest.approx(0.0, abs=1e-6)  # identical replicas
        assert r.uncertain == (h > THRESHOLD[width])


def test_entropy_differs_between_frames_and_widths(table_runtime):
    got = {(v, n): table_runtime.infer_many([frame(v)], width=n)[0].entropy for v in LEVELS[:3] for n in (1, 4)}
    assert len({round(h, 4) for h in got.values()}) == len(got), got
    assert all(got[(v, 1)] < got[(v, 4)] for v in LEVELS[:3])  # T = 0.5 sharpens, T = 2.5 flattens


def test_each_frame_is_flagged_against_its_own_widths_threshold(table_runtime):
    """A frame whose entropy lies between two widths' thresholds is uncertain at the stricter width only."""
    for v in LEVELS:
        h = {n: float(-(expected(v, n) * np.log(expected(v, n))).sum() / np.log(K)) for n in (1, 2, 4)}
        for n in (1, 2, 4):
            assert table_runtime.infer_many([frame(v)], width=n)[0].uncertain == (h[n] > THRESHOLD[n]), (v, n, h)
    mixed = [(v, n) for v in LEVELS for n in (1, 2, 4)
             if (float(-(expected(v, n) * np.log(expected(v, n))).sum() / np.log(K)) > THRESHOLD[n])
             != (float(-(expected(v, n) * np.log(expected(v, n))).sum() / np.log(K)) > THRESHOLD[4])]
    assert mixed, "the table must give frames that another width's threshold would flag differently"


@pytest.mark.parametrize("policy", ["throughput", "balanced", "robust"])
@pytest.mark.parametrize("count", [2, 3, 4, 6])
def test_every_stream_gets_its_own_frames_result(table_runtime, policy, count):
    streams = [f"cam{i}" for i in range(count)]
    order = np.random.default_rng(count).permutation(count)
    frames = {streams[i]: frame(LEVELS[i]) for i in order}  # a dict in shuffled order
    results = table_runtime.infer_many(frames, policy=policy)
    assert list(results) == [streams[i] for i in order]
    for i, s in enumerate(streams):
        assert results[s].stream == s and results[s].class_index == CLASSES[i], (policy, s)
        np.testing.assert_allclose(results[s].probabilities, expected(LEVELS[i], results[s].width), rtol=1e-5)
    as_list = table_runtime.infer_many([frame(v) for v in LEVELS[:count]], policy=policy)
    assert [r.class_index for r in as_list] == CLASSES[:count]


@pytest.fixture(scope="module")
def distinct_garments():
    """The first validation garment of each class (ten frames of ten classes)."""
    sample = shipped_sample("validation")
    picked, classes = [], []
    for img, label in zip(sample.images, sample.labels):
        if label not in classes:
            picked.append(img[0])
            classes.append(int(label))
        if len(picked) == K:
            break
    return picked, classes


def test_shipped_model_results_in_one_call_equal_each_frame_alone(cpu_runtime, distinct_garments):
    images, labels = distinct_garments
    alone = [cpu_runtime.infer(img, policy="robust") for img in images]
    confident = [i for i, r in enumerate(alone) if r.class_index == labels[i] and r.confidence > 0.9]
    assert len(confident) >= 6, [(r.class_index, round(r.confidence, 3)) for r in alone]
    pick = confident[:4]
    for policy in ("throughput", "robust"):
        together = cpu_runtime.infer_many({f"s{i}": images[i] for i in pick}, policy=policy)
        for i in pick:
            r = together[f"s{i}"]
            assert r.class_index == labels[i], (policy, i, r.class_index, labels[i])
            if policy == "robust":  # the same passes as alone: the same numbers
                np.testing.assert_allclose(r.probabilities, alone[i].probabilities, rtol=1e-4, atol=1e-5)
