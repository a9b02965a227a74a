"""Camera scenes: render dataset objects the way a camera sees them, and the camera-condition suite (torch-free)."""

from .scenes import CONDITIONS, Condition, render_frame, render_frames

__all__ = ["CONDITIONS", "Condition", "render_frame", "render_frames"]
