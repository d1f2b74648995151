"""The decode side branch: one session's VP8 frames decoded in a worker thread, on demand.

A :class:`FrameDecoder` exists only while someone wants frames (``snapshot()``, ``frames()``,
a transform). It is a frame sink of :class:`~echo_widget.media.frames.VideoFrames`: the media
path hands it each assembled frame without waiting, and its own thread decodes them with
PyAV. A decoder needs every frame since a keyframe, so frames wait in a short queue; when the
thread falls that far behind, the queue is dropped and decoding resumes at the next keyframe
(which the media path asks for). It starts the same way: at a keyframe, asked for at once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

import av

from echo_widget.media.vp8 import VIDEO_CLOCK_RATE, EncodedFrame
from echo_widget.media.workers import WorkerThread

logger = logging.getLogger(__name__)

TIME_BASE = Fraction(1, VIDEO_CLOCK_RATE)
MAX_PENDING = 30
"""Encoded frames that may wait for the decoder (a second at 30 fps) before it resyncs."""



@dataclass(frozen=True, slots=True)
class DecodedFrame:
    """A decoded frame with what the media path knew of it."""

    frame: av.VideoFrame
    """``pts``: the browser's RTP timestamp; ``time_base``: 1/90000."""
    arrived_at: float
    """Clock reading when its last packet arrived."""
    timestamp: int
    """The unwrapped media timestamp (90 kHz): always increasing, unlike ``frame.pts``."""


def clone_frame(frame: av.VideoFrame) -> av.VideoFrame:
    """A copy of a decoded frame, for another consumer.

    Each consumer (the transform, each ``frames()`` loop, each snapshot) gets a frame object of
    its own: PyAV deadlocks when one frame object is converted (``to_ndarray``, ``reformat``)
    in two threads at once, and consumers convert in threads.
    """
    copy = av.VideoFrame.from_ndarray(frame.to_ndarray(), format=frame.format.name)
    copy.pts = frame.pts
    copy.time_base = frame.time_base
    return copy


OnDecoded = Callable[[DecodedFrame], None]
"""Called in the decoder's thread with each decoded frame."""


class FrameDecoder:
    """Decodes the frames pushed to it in its own thread; :meth:`aclose` stops and joins it."""

    def __init__(self, on_decoded: OnDecoded, *, clock: Callable[[], float] = time.monotonic,
                 max_pending: int = MAX_PENDING) -> None:
        self._on_decoded = on_decoded
        self._clock = clock
        self._max_pending = max_pending
        self._pending: deque[tuple[EncodedFrame, float]] = deque()
        self._condition = threading.Condition()
        self._waiting_for_keyframe = True
        self._stopping = False
        self.decoded = 0
        """Frames decoded (written by the decoder's thread only)."""
        self.dropped = 0
        """Encoded frames dropped: the thread fell behind, or a decode failed."""
        self._worker = WorkerThread("echo-widget-decoder", self._run)

    def push(self, frame: EncodedFrame) -> bool:
        """Queue a frame without waiting; False when a keyframe is needed to go on."""
        with self._condition:
            if self._stopping:
                return True
            if self._waiting_for_keyframe:
                if not frame.keyframe:
                    return False
                self._waiting_for_keyframe = False
            if len(self._pending) >= self._max_pending:
                self.dropped += len(self._pending) + 1
                self._pending.clear()
                self._waiting_for_keyframe = True
                return False
            self._pending.append((frame, self._clock()))
            self._condition.notify()
        return True

    def resync(self) -> None:
        """Frames were lost: decode again from the next keyframe."""
        with self._condition:
            self._waiting_for_keyframe = True

    def _next(self) -> tuple[EncodedFrame, float] | None:
        with self._condition:
            while not self._pending and not self._stopping:
                self._condition.wait()
            return None if self._stopping else self._pending.popleft()

    def _run(self) -> None:
        codec = av.CodecContext.create("vp8", "r")
        codec.thread_count = 1  # this worker is the session's decoding thread: no hidden pool
        while (item := self._next()) is not None:
            encoded, arrived_at = item
            packet = av.Packet(encoded.data)
            packet.pts = encoded.rtp_timestamp
            packet.time_base = TIME_BASE
            try:
                frames = codec.decode(packet)
            except av.FFmpegError as exc:
                logger.debug("echo-widget: a frame did not decode (%s); waiting for a keyframe",
                             exc)
                self.dropped += 1
                self.resync()
                continue
            for frame in frames:
                assert isinstance(frame, av.VideoFrame)
                frame.pts = encoded.rtp_timestamp
                frame.time_base = TIME_BASE
                self.decoded += 1
                self._on_decoded(DecodedFrame(frame, arrived_at, encoded.timestamp))

    async def aclose(self) -> None:
        """Stop decoding and wait for the thread to end."""
        with self._condition:
            self._stopping = True
            self._pending.clear()
            self._condition.notify_all()
        await self._worker.join()
