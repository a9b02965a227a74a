"""The packing model's backend when the graphs are Triton models of their own: BLS calls, one per chunk of groups.

:func:`verify_engine_models` checks, when the packing model loads, that every engine model's file is the bundle
artifact it was copied from (sha256 from the bundle's manifest), so an altered plan or graph fails the load.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...bundle.manifest import Manifest, sha256_file, verify_artifacts
from ...bundle.names import INPUT_NAME, OUTPUT_NAME
from ...errors import BackendUnavailableError, BundleIntegrityError


def verify_engine_models(bundle: Path, repo: Path, engines: dict[int, dict]) -> Manifest:
    """Check the bundle, and each engine model's files in the repository ``repo`` against the sha256 of the bundle
    artifact they were copied from; returns the manifest.

    ``engines``: width -> {"model": name, "files": {file in the model's 1/: bundle artifact}, "max_batch": int}.
    """
    manifest = Manifest.load(bundle)
    verify_artifacts(bundle, manifest)
    if set(engines) != set(manifest.widths):
        raise BundleIntegrityError(f"the engine models cover widths {sorted(engines)}, the bundle has "
                                   f"{list(manifest.widths)}: export the repository again")
    for entry in engines.values():
        for name, artifact in entry["files"].items():
            path = repo / entry["model"] / "1" / name
            if not path.is_file() or sha256_file(path) != manifest.files.get(artifact):
                raise BundleIntegrityError(
                    f"{path} is missing or does not match {artifact} of the bundle (sha256): export the "
                    "repository again with `edge-mimo export-triton --engine-models --force`")
    return manifest


class TritonModelsBackend:
    """A :class:`~edge_mimo.engines.base.Backend` whose ``run`` calls the width's Triton model through BLS."""

    name = "triton-bls"

    def __init__(self, manifest: Manifest, engines: dict[int, dict]) -> None:
        self.engines = engines
        self.precision = "int8" if all(manifest.artifacts[n].int8 for n in manifest.widths) else "fp32"

    def run(self, width: int, groups: np.ndarray) -> np.ndarray:
        """groups float32 [G, n, C, H, W] -> logits [G, N/n, n, K], in chunks of the model's max batch."""
        import triton_python_backend_utils as pb_utils

        entry = self.engines[width]
        outs = []
        for i in range(0, len(groups), entry["max_batch"]):
            chunk = np.ascontiguousarray(groups[i : i + entry["max_batch"]], dtype=np.float32)
            response = pb_utils.InferenceRequest(
                model_name=entry["model"], requested_output_names=[OUTPUT_NAME],
                inputs=[pb_utils.Tensor(INPUT_NAME, chunk)]).exec()
            if response.has_error():
                raise BackendUnavailableError(f"Triton model {entry['model']!r} failed: "
                                              f"{response.error().message()}: check that it is loaded and ready")
            outs.append(pb_utils.get_output_tensor_by_name(response, OUTPUT_NAME).as_numpy())
        return np.concatenate(outs)

    def close(self) -> None:
        """Nothing to release: the engine models belong to the server."""
