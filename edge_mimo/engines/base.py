"""The interface every inference backend offers the runtime: load a bundle, run superposed groups, close."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Protocol, runtime_checkable

import numpy as np

from ..bundle.manifest import Manifest

DEFAULT_PLAN_CACHE = Path.home() / ".cache" / "edge-mimo" / "engines"


@dataclass(frozen=True)
class LoadOptions:
    """How to load a bundle's graphs.

    ``precision``: "int8" or "fp32" (which graphs). ``threads``: ONNX Runtime intra-op threads (None: its
    choice). ``plan_cache``: where TensorRT plans missing from the bundle are built and kept; None refuses to
    build any at load (``edge-mimo build-engines`` stores them in the bundle).
    """

    precision: str = "int8"
    threads: int | None = None
    plan_cache: Path | None = DEFAULT_PLAN_CACHE


@runtime_checkable
class Backend(Protocol):
    """One loaded graph or engine per superposition width of a bundle."""

    name: ClassVar[str]
    precision: str

    @classmethod
    def load(cls, bundle: Path, manifest: Manifest, options: LoadOptions) -> Backend:
        """Load every width of the checked bundle at ``bundle`` (its manifest already read)."""
        ...

    def run(self, width: int, groups: np.ndarray) -> np.ndarray:
        """Superposed groups float32 [G, n, C, H, W] -> per-replica logits [G, N/n, n, K]."""
        ...

    def close(self) -> None:
        """Release what the backend holds (device memory, sessions); it cannot run afterwards."""
        ...
