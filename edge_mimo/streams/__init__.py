"""Camera and video sources read by background threads, and a mux of their freshest frames (torch-free)."""

from .mux import StreamMux
from .source import (CLOSED, ENDED, FAILED, LIVE, OPENING, RECONNECTING, STALLED, Frame, SourceStatus,
                     VideoSource, classify_uri)

__all__ = ["StreamMux", "VideoSource", "Frame", "SourceStatus", "classify_uri",
           "OPENING", "LIVE", "STALLED", "RECONNECTING", "ENDED", "FAILED", "CLOSED"]
