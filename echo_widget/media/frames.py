"""The video's frame side branch: packets assembled into encoded frames for its sinks.

Runs beside the echo, never in its way: :class:`VideoFrames` takes each packet the
forwarder took, releases each VP8 frame on its marker packet (no decoding), counts frames
and keyframes, knows the picture size from the latest keyframe, and hands frames to the
attached sinks (the recorder, the decoder), none of which may wait. After a loss, or when a
sink needs one, it asks for a keyframe.
"""

from __future__ import annotations

from typing import Protocol

from echo_widget.stats import MediaCounters

from .vp8 import EncodedFrame, FrameAssembler, keyframe_size


class FrameSink(Protocol):
    """What takes the assembled frames (the recorder, the decoder)."""

    def push(self, frame: EncodedFrame) -> bool:
        """Take a frame without waiting; False when a keyframe is needed to go on."""

    def resync(self) -> None:
        """Frames were lost: skip to the next keyframe."""


class Keyframes(Protocol):
    """Where keyframes are asked for (:class:`~echo_widget.media.forwarder.MediaForwarder`)."""

    def request_keyframe(self) -> None:
        """Ask the browser for a keyframe."""

    def keyframe_arrived(self) -> None:
        """A whole keyframe came in."""


class VideoFrames:
    """Assembles one video track's frames and feeds them to a sink."""

    def __init__(self, counters: MediaCounters, keyframes: Keyframes) -> None:
        self.counters = counters
        self.frame_size: tuple[int, int] = (0, 0)
        """Width and height of the video, from its latest keyframe; (0, 0) before one."""
        self.sinks: tuple[FrameSink, ...] = ()
        """Where frames go, in order; see :meth:`attach`."""
        self._keyframes = keyframes
        self._assembler = FrameAssembler(self._on_frame, self._on_loss)
        self.add = self._assembler.add
        """Add one packet: (sequence number, timestamp, marker, payload, depayloaded data)."""

    def attach(self, sink: FrameSink) -> None:
        """Send frames to ``sink`` too, from now on (from a keyframe, asked for at once)."""
        self.sinks = (*self.sinks, sink)
        self._keyframes.request_keyframe()

    def detach(self, sink: FrameSink) -> None:
        """Stop sending frames to ``sink``."""
        self.sinks = tuple(s for s in self.sinks if s is not sink)

    def _on_frame(self, frame: EncodedFrame) -> None:
        counters = self.counters
        counters.frames_received += 1
        if frame.keyframe:
            counters.keyframes += 1
            self.frame_size = keyframe_size(frame.data)
            self._keyframes.keyframe_arrived()
        wanted = False
        for sink in self.sinks:
            wanted |= not sink.push(frame)
        if wanted:
            self._keyframes.request_keyframe()

    def _on_loss(self) -> None:
        self.counters.losses += 1
        for sink in self.sinks:
            sink.resync()
        self._keyframes.request_keyframe()
