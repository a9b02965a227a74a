"""What a compiled bundle does for a user: INT8 accuracy per width, camera frames, OOD AUROC, speed and size.

Torch-free: it reads a bundle and runs it through :class:`~edge_mimo.runtime.Runtime`, as a deployment would.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..camera.frames import camera_frames
from ..bench.timing import measure_interleaved, summary
from ..bundle.manifest import Manifest
from ..camera.scenes import CONDITIONS
from ..camera.suite import run_suite
from ..runtime import Runtime
from ..runtime.scheduler import min_replicas


def policy_width(policy: str, capacity: int) -> int:
    """The width a policy runs at on a model of this capacity (throughput: N, balanced: N/2, robust: 1)."""
    return capacity // min_replicas(policy, capacity)


def assess_bundle(bundle: str | Path, images: np.ndarray, labels: np.ndarray, ood: np.ndarray | None,
                  camera_images: int = 1000, threads: int | None = None) -> dict:
    """A bundle's figures through the runtime, per policy: clean INT8 accuracy on ``images`` (uint8 [M, C, H, W],
    fed as frames), and on the first ``camera_images`` of them rendered under the camera suite's trained
    conditions, the mean accuracy and the mean OOD AUROC of entropy (``ood`` images as the unknowns)."""
    manifest = Manifest.load(bundle)
    capacity = manifest.model.capacity
    graphs = {n: Path(bundle) / a.int8.file for n, a in manifest.artifacts.items() if a.int8}
    trained = [c for c in CONDITIONS.values() if c.trained]
    frames = [img[::-1].transpose(1, 2, 0) if img.shape[0] == 3 else img[0] for img in images]  # RGB -> BGR frames
    out = {"bundle": str(bundle), "arch": manifest.model.arch, "capacity": capacity, "body": manifest.model.body,
           "macs_per_frame": dict(manifest.macs_per_image), "int8_bytes": {n: p.stat().st_size for n, p in graphs.items()},
           "test_images": int(len(images)), "camera_images": int(min(camera_images, len(images))),
           "camera_conditions": [c.name for c in trained], "clean": {}, "camera": {}}
    with Runtime(bundle, precision="int8", threads=threads) as runtime:
        suite = run_suite(runtime, images[:camera_images], labels[:camera_images], ood, conditions=trained, streams=4)
        for policy in suite["policies"]:
            results = runtime.infer_in_calls(frames, 4, policy=policy)
            out["clean"][policy] = float(np.mean(np.array([r.class_index for r in results]) == labels))
            rows = [suite["conditions"][c.name][policy] for c in trained]
            aurocs = [r["auroc"] for r in rows if r["auroc"] is not None]
            out["camera"][policy] = {"width": policy_width(policy, capacity),
                                     "accuracy": float(np.mean([r["accuracy"] for r in rows])),
                                     "auroc": float(np.mean(aurocs)) if aurocs else None}
    return out


def frames_per_second(bundles: dict[str, tuple[str | Path, str]], streams: int = 8, repeats: int = 30,
                      threads: int = 2) -> dict[str, float]:
    """End-to-end ``infer_many`` frames/s of each ``name: (bundle, policy)`` on the same camera frames, measured in
    interleaved rounds so that a drifting machine affects them alike. Measure on a quiet machine."""
    from ..datasets import shipped_sample

    frames = camera_frames(shipped_sample("validation").images[:streams])
    runtimes = {}
    calls = {}
    try:
        for name, (bundle, policy) in bundles.items():
            if bundle not in runtimes:
                runtimes[bundle] = Runtime(bundle, precision="int8", threads=threads)
            rt = runtimes[bundle]
            calls[name] = lambda rt=rt, policy=policy: rt.infer_many(frames, policy=policy)
        times, _ = measure_interleaved(calls, repeats)
    finally:
        for rt in runtimes.values():
            rt.close()
    return {name: summary(ms, streams)["fps"] for name, ms in times.items()}

