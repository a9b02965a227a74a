"""Per-stream results of :meth:`Runtime.infer_many` and how their numbers are computed.

For one frame with R replica predictions (logit vectors l_1..l_R over K classes) and the bundle's temperature T
for the width used:

- ``probabilities`` = softmax(mean_r l_r / T): the replica-averaged, temperature-calibrated class distribution
  (the same prediction the compile report scores).
- ``confidence`` = max of ``probabilities``: calibrated, so among frames with confidence 0.9 about 90 % are right.
- ``entropy`` = H(probabilities) / log K, in [0, 1]: 0 = certain, 1 = uniform. It is high for ambiguous or
  unfamiliar inputs.
- ``disagreement`` = mutual information between the prediction and the replica, H(mean_r p_r) - mean_r H(p_r)
  with p_r = softmax(l_r / T), divided by log K, in [0, 1]; 0 with a single replica. It is high when the
  replicas (an ensemble inside one network) disagree: a sign of an input unlike the training data.
- ``uncertain`` = entropy > the threshold chosen at compile time on validation data for this width
  (manifest ``uncertainty[n].entropy_threshold``). Typical use: act on confident frames, and re-query (e.g.
  with ``policy="robust"``), wait for the next frame or hand over to a human on uncertain ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..metrics import entropy, softmax


@dataclass(frozen=True)
class Timing:
    """Wall time of the whole ``infer_many`` call, split by stage (milliseconds)."""

    preprocess_ms: float
    inference_ms: float
    postprocess_ms: float
    total_ms: float
    groups: int  # superposed passes run (the cost of the call)
    passes: dict[int, int] = field(default_factory=dict)  # passes run per superposition width {n: passes}


@dataclass(frozen=True)
class StreamResult:
    """The prediction for one stream's frame. ``error`` is set (and the prediction fields empty) for a bad frame."""

    stream: object
    class_index: int = -1
    class_name: str = ""
    probabilities: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32), repr=False)
    confidence: float = 0.0
    entropy: float = 0.0
    disagreement: float = 0.0
    replicas: int = 0
    width: int = 0
    uncertain: bool = False
    timing: Timing | None = None
    error: Exception | None = None

    @property
    def ok(self) -> bool:
        """True when the frame was classified (no ``error``)."""
        return self.error is None

    def to_dict(self) -> dict:
        """JSON-ready dict (probabilities as a list, error as its message)."""
        d = {"stream": self.stream, "ok": self.ok}
        if self.error is not None:
            d["error"] = f"{type(self.error).__name__}: {self.error}"
        else:
            d.update(
                class_index=self.class_index, class_name=self.class_name, confidence=round(self.confidence, 5),
                entropy=round(self.entropy, 5), disagreement=round(self.disagreement, 5), replicas=self.replicas,
                width=self.width, uncertain=self.uncertain,
                probabilities=[round(float(p), 5) for p in self.probabilities],
            )
        if self.timing is not None:
            d["latency_ms"] = round(self.timing.total_ms, 3)
        return d


def frame_statistics(logits: np.ndarray, owner: np.ndarray, count: int, temperature: np.ndarray) -> dict:
    """Replica rows (logits [rows, K], owner frame index [rows], sorted) -> per-frame arrays (see module doc).

    ``temperature`` is per row (rows of one frame share their width's temperature).
    """
    k = logits.shape[1]
    starts = np.searchsorted(owner, np.arange(count))
    replicas = np.diff(np.append(starts, len(owner)))
    scaled = logits / temperature[:, None]
    mean_logits = np.add.reduceat(scaled, starts, axis=0) / replicas[:, None]
    probs = softmax(mean_logits)
    replica_probs = softmax(scaled)
    mean_probs = np.add.reduceat(replica_probs, starts, axis=0) / replicas[:, None]
    mean_entropy = np.add.reduceat(entropy(replica_probs), starts) / replicas
    log_k = np.log(k) if k > 1 else 1.0
    return {
        "probabilities": probs.astype(np.float32),
        "entropy": entropy(probs) / log_k,
        "disagreement": np.maximum(entropy(mean_probs) - mean_entropy, 0.0) / log_k,
        "replicas": replicas,
    }
