"""Recording: encoded frames remuxed by an ffmpeg process into WebM/Matroska, never re-encoded."""

from .files import RecorderError, find_ffmpeg, reserve_path
from .recorder import Recorder

__all__ = ["Recorder", "RecorderError", "find_ffmpeg", "reserve_path"]
