"""Processed video: the user's transform on the newest decoded frame, encoded as VP8, sent back.

This is the one place where the kernel encodes video, and only while ``w.transform`` is set.
A :class:`TransformWorker` thread takes the newest decoded frame (frames that came while the
transform ran are skipped and counted), runs the transform, encodes the result with PyAV's
libvpx and hands the packets to the loop, where a :class:`ProcessedTrack` gives them to
aiortc's sender, which packetizes them without encoding again (as for a pre-encoded file).
A keyframe request from the viewer reaches the encoder through :meth:`request_keyframe`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import av
from aiortc import MediaStreamError, MediaStreamTrack

from echo_widget.media.decoder import TIME_BASE, DecodedFrame
from echo_widget.media.workers import LatestSlot, WorkerThread

if TYPE_CHECKING:
    import numpy as np

logger = logging.getLogger(__name__)

Transform = Callable[[av.VideoFrame], "av.VideoFrame | np.ndarray[Any, Any] | None"]
"""What ``w.transform`` holds."""

BITRATE = 1_500_000
MAX_QUEUED_PACKETS = 60
REPORT_INTERVAL = 1.0
"""Seconds between two reports of a failing transform (each failure is still logged)."""
STATS_WINDOW = 1.0


def as_video_frame(result: object) -> av.VideoFrame:
    """A transform's result as a frame: an ``av.VideoFrame`` or an HxWx3 uint8 rgb24 array."""
    if isinstance(result, av.VideoFrame):
        return result
    # numpy is not imported here (150 ms of a fresh kernel's first import): an array can
    # only come from a numpy the caller imported already
    numpy: Any = sys.modules.get("numpy")
    if numpy is not None and isinstance(result, numpy.ndarray):
        if result.ndim != 3 or result.shape[2] != 3 or result.dtype != numpy.uint8:
            raise ValueError(
                f"the transform returned an array of shape {result.shape} and dtype "
                f"{result.dtype}; an image must be HxWx3 uint8 (rgb24)")
        if result.shape[0] < 2 or result.shape[1] < 2:
            raise ValueError(f"the transform returned a {result.shape[1]}x{result.shape[0]} "
                             "image; it must be at least 2x2")
        return av.VideoFrame.from_ndarray(numpy.ascontiguousarray(result), format="rgb24")
    raise ValueError(f"the transform returned {type(result).__name__}; return an "
                     "av.VideoFrame, an HxWx3 uint8 numpy array (rgb24) or None")


def _encoder(width: int, height: int) -> av.video.codeccontext.VideoCodecContext:
    codec = av.CodecContext.create("libvpx", "w")
    assert isinstance(codec, av.video.codeccontext.VideoCodecContext)
    codec.width = width
    codec.height = height
    codec.pix_fmt = "yuv420p"
    codec.bit_rate = BITRATE
    codec.time_base = TIME_BASE
    codec.gop_size = 3000
    codec.thread_count = 1  # the transform's thread encodes: no hidden pool per session
    codec.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0",
                     "error-resilient": "1"}
    return codec


class ProcessedTrack(MediaStreamTrack):
    """The processed video's outgoing track: yields the encoded packets the worker made."""

    kind = "video"

    def __init__(self) -> None:
        super().__init__()
        self._packets: deque[av.Packet[Any]] = deque()
        self._ready = asyncio.Event()
        self.dropped = 0

    def put(self, packets: list[av.Packet[Any]]) -> None:
        """Queue a frame's packets (on the loop); a long backlog is dropped, not kept."""
        if len(self._packets) > MAX_QUEUED_PACKETS:
            self.dropped += len(self._packets)
            self._packets.clear()
        self._packets.extend(packets)
        self._ready.set()

    async def recv(self) -> av.Packet[Any]:
        """The next encoded packet, as aiortc's sender asks for it."""
        while not self._packets:
            if self.readyState != "live":
                raise MediaStreamError
            self._ready.clear()
            await self._ready.wait()
        return self._packets.popleft()

    def stop(self) -> None:
        super().stop()
        self._ready.set()


class TransformWorker:
    """One session's transform thread: newest frame in, VP8 packets out."""

    def __init__(
        self,
        transform: Callable[[], Transform | None],
        track: ProcessedTrack,
        report: Callable[[str], None],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._transform = transform
        self._track = track
        self._report = report
        self._clock = clock
        self._loop = asyncio.get_running_loop()
        self._slot: LatestSlot[DecodedFrame] = LatestSlot()
        self._keyframe = threading.Event()
        self._last_report = -REPORT_INTERVAL
        self.timings: deque[tuple[float, float, float]] = deque(maxlen=600)
        """(done at, seconds in the transform, source age when encoded) per processed frame."""
        self.failures = 0
        self._worker = WorkerThread("echo-widget-transform", self._run)

    @property
    def skipped(self) -> int:
        """Decoded frames that came while the transform ran, replaced by newer ones."""
        return self._slot.skipped

    def offer(self, decoded: DecodedFrame) -> None:
        """A new decoded frame (from the decoder's thread); replaces one not yet taken."""
        self._slot.put(decoded)

    def request_keyframe(self) -> None:
        """The viewer lost a picture: the next encoded frame is a keyframe."""
        self._keyframe.set()

    def stats(self, now: float) -> tuple[list[float], int, float | None]:
        """(transform seconds, frames processed) over the last second, and the newest age."""
        recent = [t for t in list(self.timings) if now - t[0] <= STATS_WINDOW]
        newest = self.timings[-1][2] if self.timings else None
        return [t[1] for t in recent], len(recent), newest

    def _run(self) -> None:
        codec: av.video.codeccontext.VideoCodecContext | None = None
        while (decoded := self._slot.take()) is not None:
            transform = self._transform()
            if transform is None:
                continue
            started = self._clock()
            try:
                result = transform(decoded.frame)
                if result is None:
                    continue  # the last processed picture stays
                out = as_video_frame(result)
            except Exception as exc:
                self._failed(exc)
                continue
            took = self._clock() - started
            if codec is None or (codec.width, codec.height) != (out.width, out.height):
                codec = _encoder(out.width, out.height)
            frame = out.reformat(format="yuv420p") if out.format.name != "yuv420p" else out
            frame.pts = decoded.timestamp
            frame.time_base = TIME_BASE
            if self._keyframe.is_set():
                self._keyframe.clear()
                frame.pict_type = av.video.frame.PictureType.I
            try:
                packets = codec.encode(frame)
            except av.FFmpegError as exc:
                self._failed(exc)
                codec = None
                continue
            for packet in packets:
                packet.time_base = TIME_BASE
            done = self._clock()
            self.timings.append((done, took, done - decoded.arrived_at))
            if packets:
                self._call_soon(self._track.put, packets)

    def _failed(self, exc: BaseException) -> None:
        self.failures += 1
        logger.warning("echo-widget: the transform failed on a frame (skipped):\n%s",
                       "".join(traceback.format_exception(exc)))
        now = self._clock()
        if now - self._last_report >= REPORT_INTERVAL:
            self._last_report = now
            self._call_soon(self._report, f"The transform failed on a frame, which was "
                            f"skipped: {exc!r}. The echo goes on; see the log for the "
                            "traceback.")

    def _call_soon(self, callback: Callable[..., None], *args: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody to tell
            self._loop.call_soon_threadsafe(callback, *args)

    async def aclose(self) -> None:
        """Stop the thread and wait for it."""
        self._slot.close()
        await self._worker.join()
