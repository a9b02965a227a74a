"""Property-based tests (hypothesis): packing/demultiplexing returns every frame exactly once and in order, and
preprocessing turns ANY input into either the model's input or a FrameError, never another exception."""

import copy
import functools
import json
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from edge_mimo.bundle import InputSpec
from edge_mimo.bundle.manifest import MANIFEST_FILE, SCHEMA_VERSION, load_manifest
from edge_mimo.errors import BundleError, ConfigError, FrameError
from edge_mimo.runtime.batching import frame_logits, width_groups
from edge_mimo.runtime.preprocess import check_roi, prepare_batch, prepare_frame

from .conftest import manifest_json
from .test_runtime_preprocess import camera_frame

GRAY = InputSpec(1, 28, 28, "gray", (0.286,), (0.353,))
SPECS = [GRAY, InputSpec(3, 32, 32, "rgb", (0.5,) * 3, (0.25,) * 3),
         InputSpec(1, 20, 40, "gray", (0.1,), (0.2,), "letterbox"),
         InputSpec(3, 40, 24, "rgb", (0.1,) * 3, (0.2,) * 3, "stretch")]

# -- packing and demultiplexing --------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(count=st.integers(1, 130), width=st.sampled_from([1, 2, 3, 4, 6, 8]), channels=st.sampled_from([1, 3]))
def test_forced_width_packing_reads_every_frame_back_in_order(count, width, channels):
    """The one packing (runtime.batching, as infer_many(width=...)): every frame fills a slot, a short last group
    repeats its own frames, and reading back gives each frame its own outputs and nobody else's."""
    images = np.arange(count, dtype=np.float32)[:, None, None, None] * np.ones((1, channels, 2, 3), np.float32)
    groups = width_groups(images, width)
    assert groups.shape == (-(-count // width), width, channels, 2, 3)
    flat = groups.reshape(-1, channels, 2, 3)
    assert np.array_equal(flat[:count - count % width or count], images[:count - count % width or count])
    tail = count % width
    if tail:  # the last group holds its frames, then repeats them round-robin
        ids = groups[-1, :, 0, 0, 0].astype(int).tolist()
        assert ids == [count - tail + p % tail for p in range(width)]
    # A fake network whose output for a slot is the id of the frame in it: every frame's mean logit is its id.
    capacity = width * 2
    run = lambda n, g: np.repeat(g[:, None, :, 0, :1, 0], capacity // n, 1)  # noqa: E731 [G, R, n, K=1]
    logits = frame_logits(run, images, width, capacity)
    assert np.array_equal(logits[:, 0], np.arange(count, dtype=np.float64))


def test_packing_nothing_is_refused():
    with pytest.raises(ValueError):
        width_groups(np.zeros((0, 1, 28, 28), np.float32), 4)


# -- preprocessing: any input -> the model's input or a FrameError ----------------------------------------------

SHAPES = hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=40)
DTYPES = st.sampled_from([np.uint8, np.uint16, np.float16, np.float32, np.float64, np.int8, np.int16, np.int32,
                          np.int64, np.uint32, np.bool_, np.complex64])
NOT_ARRAYS = st.one_of(st.none(), st.integers(), st.floats(), st.text(max_size=5), st.binary(max_size=8),
                       st.lists(st.integers(0, 255), max_size=6), st.dictionaries(st.text(max_size=2), st.integers()))


IMAGE_SHAPES = st.tuples(st.integers(0, 60), st.integers(0, 60), st.sampled_from([(), (1,), (3,), (4,), (2,), (5,)])
                         ).map(lambda t: t[:2] + t[2])


@st.composite
def any_frame(draw):
    """Image-like or arbitrary arrays of any dtype (values including NaN/inf/out of range), views, or non-arrays."""
    pick = draw(st.integers(0, 9))
    if pick == 0:
        return draw(NOT_ARRAYS)
    shape = draw(SHAPES if pick <= 2 else IMAGE_SHAPES)
    dtype = draw(st.one_of(st.sampled_from([np.uint8, np.uint16, np.float32]), DTYPES))
    kind = np.dtype(dtype).kind
    elements = None
    if kind == "f":
        bits = min(np.dtype(dtype).itemsize * 8, 64)
        elements = st.floats(0, 1, width=bits) if draw(st.booleans()) else st.floats(width=bits)  # valid, or anything
    arr = draw(hnp.arrays(dtype, shape, elements=elements))
    if arr.ndim >= 2 and draw(st.booleans()):
        arr = arr[::-1, ::2]  # non-contiguous views, as slicing a camera frame gives
    return arr


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frame=any_frame(), spec=st.sampled_from(SPECS))
def test_any_input_becomes_the_model_input_or_a_frame_error(frame, spec):
    try:
        out = prepare_frame(frame, spec)
    except FrameError as e:
        message = str(e)
        assert ":" in message and len(message) > 20  # the problem, then the fix
        event("refused: " + " ".join(message.split()[:3]))
        return
    event("accepted")
    assert out.shape == (spec.channels, spec.height, spec.width_px) and out.dtype == np.uint8
    assert isinstance(frame, np.ndarray) and frame.size > 0  # only real, non-empty images get through


@settings(max_examples=150, deadline=None)
@given(h=st.integers(1, 120), w=st.integers(1, 160), roi=st.tuples(*[st.integers(-5, 200)] * 4),
       spec=st.sampled_from(SPECS))
def test_any_region_of_interest_is_cropped_or_refused_clearly(h, w, roi, spec):
    frame = np.random.default_rng(h * w).integers(0, 256, (h, w, 3), dtype=np.uint8)
    try:
        checked = check_roi(roi)
    except ConfigError:
        assert min(roi[:2]) < 0 or min(roi[2:]) <= 0
        return
    try:
        out = prepare_frame(frame, spec, checked)
    except FrameError as e:
        assert "outside" in str(e) and (roi[0] + roi[2] > w or roi[1] + roi[3] > h)  # never clipped silently
        return
    assert out.shape == (spec.channels, spec.height, spec.width_px)
    x, y, rw, rh = checked  # the content: exactly the region (the part inside the frame), prepared as a frame
    assert np.array_equal(out, prepare_frame(frame[y : y + rh, x : x + rw].copy(), spec))


@settings(max_examples=60, deadline=None)
@given(frames=st.lists(any_frame(), min_size=0, max_size=12))
def test_a_batch_keeps_good_frames_in_order_and_reports_each_bad_one(frames):
    batch, good, errors = prepare_batch(frames, GRAY)
    assert sorted(good + list(errors)) == list(range(len(frames)))  # every frame accounted for exactly once
    assert good == sorted(good) and batch.shape == (len(good), 1, 28, 28)
    for i, k in enumerate(good):
        assert np.array_equal(batch[i], prepare_frame(frames[k], GRAY))
    assert all(isinstance(e, FrameError) for e in errors.values())


# -- manifests: any text -> a manifest or a BundleError; mutations of a real manifest ----------------------------

JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=4),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
                    max_leaves=12)
KEYS = ("schema_version", "model", "widths", "artifacts", "files", "input")


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=st.one_of(JSON, st.fixed_dictionaries({k: JSON for k in KEYS})), raw=st.binary(max_size=20),
       as_bytes=st.booleans())
def test_any_manifest_text_is_refused_as_a_bundle_error(tmp_path, doc, raw, as_bytes):
    """Random JSON is never a manifest (its required parts cannot all come out right by chance)."""
    (tmp_path / MANIFEST_FILE).write_bytes(raw if as_bytes else json.dumps(doc).encode())
    with pytest.raises(BundleError, match=":"):
        load_manifest(tmp_path)


@pytest.fixture(scope="module")
def real_manifest(cpu_bundle) -> dict:
    return manifest_json(cpu_bundle)


def node_paths(doc, prefix=()) -> list[tuple]:
    """The path (keys and indices) of every node below ``doc``."""
    children = doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, list) else ()
    return [p for k, v in children for p in [prefix + (k,), *node_paths(v, prefix + (k,))]]


def usable(m: dict) -> bool:
    """What the runtime needs of a manifest (the module docstring of edge_mimo.bundle.manifest), written out: every
    manifest that loads must pass (load_manifest may refuse more)."""
    def count(v) -> bool:
        return type(v) is int and v >= 1

    def number(v) -> bool:
        return type(v) in (int, float) and math.isfinite(v)

    model, widths, inp, arts = m.get("model"), m.get("widths"), m.get("input"), m.get("artifacts")
    if not (isinstance(model, dict) and count(model.get("capacity")) and count(model.get("num_classes"))):
        return False
    if not (type(m.get("schema_version")) is int and m["schema_version"] <= SCHEMA_VERSION and isinstance(arts, dict)
            and isinstance(widths, list) and widths and all(count(n) and model["capacity"] % n == 0 for n in widths)):
        return False
    for n in widths:
        graphs = [g for p, g in arts.get(str(n), {}).items() if p in ("fp32", "int8")] \
            if isinstance(arts.get(str(n)), dict) else []
        if not graphs or not all(isinstance(g, dict) and isinstance(g.get("file"), str) for g in graphs):
            return False
    if not (isinstance(m.get("files"), dict) and all(isinstance(v, str) and len(v) == 64 for v in m["files"].values())):
        return False
    width_key = "width" if m["schema_version"] < 2 else "width_px"  # schema 2 renamed the input's pixel width
    if not (isinstance(inp, dict) and type(inp.get("channels")) is int and inp["channels"] in (1, 3)
            and count(inp.get("height")) and count(inp.get(width_key))):
        return False
    stats = [inp.get("mean"), inp.get("std")]
    if not all(isinstance(v, list) and len(v) == inp["channels"] and all(number(x) for x in v) for v in stats):
        return False
    temperature = m.get("temperature", {})
    return all(x > 0 for x in inp["std"]) and isinstance(temperature, dict) and all(
        number(t) and t > 0 for t in temperature.values())


@st.composite
def mutations(draw, manifest: dict) -> tuple[dict, bool]:
    """(a mutated copy of ``manifest``, whether every mutation was harmless). Harmless: keys reordered, a reported
    accuracy figure changed. Others: a node deleted, or replaced by any JSON value, 1-3 times over."""
    doc = copy.deepcopy(manifest)
    harmless = True
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["reorder", "figure", "delete", "replace", "replace"]))
        if kind == "reorder":
            doc = json.loads(json.dumps(doc, sort_keys=True))
            continue
        paths = node_paths(doc)
        if kind == "figure":
            paths = [p for p in paths if p[0] == "accuracy" and isinstance(p[-1], str) and p[-1] == "accuracy"]
        if not paths:
            continue
        path = draw(st.sampled_from(paths))
        parent = functools.reduce(lambda node, key: node[key], path[:-1], doc)
        if kind == "figure":
            parent[path[-1]] = draw(st.floats(0, 1))
        elif kind == "delete":
            del parent[path[-1]]
            harmless = False
        else:
            parent[path[-1]] = draw(JSON)
            harmless = False
    return doc, harmless


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_mutation_of_a_real_manifest_loads_usable_or_is_refused(tmp_path, real_manifest, data):
    """Mutations of the session bundle's manifest: the harmless ones load; the others either load, and then hold
    everything the runtime relies on, or are refused as a BundleError naming the problem."""
    doc, harmless = data.draw(mutations(real_manifest))
    (tmp_path / MANIFEST_FILE).write_text(json.dumps(doc, indent=data.draw(st.sampled_from([None, 1, 2]))))
    try:
        load_manifest(tmp_path)
    except BundleError as e:
        assert not harmless and ":" in str(e), str(e)
        event("refused")
        return
    event("loaded")
    assert usable(doc)


# -- the real runtime: demultiplexing on a compiled bundle ------------------------------------------------------


@pytest.fixture(scope="module")
def garments():
    from edge_mimo.datasets import shipped_sample

    images = shipped_sample("validation").images[:40, 0]
    return [camera_frame(img, (320, 240)) for img in images]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_each_stream_gets_its_own_groups_prediction(cpu_runtime, garments, data):
    """infer_many over M streams equals running each planned group on its own: no result lands on another stream."""
    rt = cpu_runtime
    count = data.draw(st.integers(1, 13), label="streams")
    policy = data.draw(st.sampled_from(["throughput", "balanced", "robust"]), label="policy")
    picks = data.draw(st.lists(st.integers(0, len(garments) - 1), min_size=count, max_size=count, unique=True))
    keys = data.draw(st.permutations([f"cam{i}" for i in range(count)]), label="keys")
    frames = {k: garments[p] for k, p in zip(keys, picks)}
    results = rt.infer_many(frames, policy=policy)
    assert list(results) == keys and [r.stream for r in results.values()] == keys
    for group in rt.plan(count, policy).groups:
        members = list(dict.fromkeys(group.frames))  # distinct frame indices of this pass, in slot order
        alone = rt.infer_many([frames[keys[i]] for i in members], policy=policy)
        for i, ref in zip(members, alone):
            got = results[keys[i]]
            assert got.width == ref.width and got.replicas == ref.replicas
            np.testing.assert_allclose(got.probabilities, ref.probabilities, atol=2e-5)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(perm=st.permutations(range(9)))
def test_width_one_results_follow_their_frames_under_any_order(cpu_runtime, garments, perm):
    frames = garments[:9]
    base = cpu_runtime.infer_many(frames, width=1)
    shuffled = cpu_runtime.infer_many([frames[i] for i in perm], width=1)
    for pos, i in enumerate(perm):
        np.testing.assert_allclose(shuffled[pos].probabilities, base[i].probabilities, atol=2e-5)
