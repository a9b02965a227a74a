"""The lean runtime (no torch): preprocessing, scheduling superposed passes, per-stream results."""

from ..bundle.manifest import InputSpec
from .preprocess import PreparedFrame, prepare_batch, prepare_frame
from .results import StreamResult, Timing
from .runtime import Runtime
from .scheduler import POLICIES, Group, InferOptions, Plan, plan

__all__ = ["Runtime", "StreamResult", "Timing", "InputSpec", "PreparedFrame", "prepare_frame", "prepare_batch",
           "POLICIES", "Group", "InferOptions", "Plan", "plan"]
