"""The media path of one session: RTP in, encoded frames out, nothing decoded.

Packets from the browser are reassembled into VP8 frames
(:class:`~echo_widget.vp8.FrameAssembler`); each frame goes, unchanged, to the
echo track (which aiortc's sender packetizes without encoding) and to the
recorder. Keyframe requests from the viewer, from the recorder and from loss
are turned into RTCP PLIs towards the browser, at most one per
``min_pli_interval``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from fractions import Fraction
from typing import TYPE_CHECKING

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtp import RtpPacket

from .vp8 import VIDEO_CLOCK_RATE, EncodedFrame, FrameAssembler, keyframe_size

if TYPE_CHECKING:
    from .recorder import Recorder

_TIME_BASE = Fraction(1, VIDEO_CLOCK_RATE)


@dataclass
class MediaCounters:
    """Running totals over all the sessions of one widget."""

    frames_received: int = 0
    frames_forwarded: int = 0
    frames_recorded: int = 0
    frames_dropped: int = 0
    """Frames not recorded because ffmpeg fell behind or the recorder waited for a keyframe."""
    keyframes: int = 0
    plis_sent: int = 0
    plis_received: int = 0
    packets_received: int = 0
    bytes_received: int = 0
    losses: int = 0
    """Gaps in the incoming stream that retransmission did not fill."""
    bytes_recorded: int = 0
    """Bytes written to ffmpeg, IVF headers included."""

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class ForwardedVideoTrack(MediaStreamTrack):
    """The echo track: yields the received frames as ``av.Packet``s for aiortc to packetize."""

    kind = "video"

    def __init__(self, counters: MediaCounters, max_queue: int = 30) -> None:
        super().__init__()
        self._counters = counters
        self._queue: asyncio.Queue[EncodedFrame | None] = asyncio.Queue(max_queue)

    def push(self, frame: EncodedFrame) -> bool:
        """Queue a frame for sending; False if the sender has fallen too far behind."""
        try:
            self._queue.put_nowait(frame)
        except asyncio.QueueFull:
            return False
        return True

    async def recv(self) -> av.Packet:  # type: ignore[type-arg]
        """Wait for the next frame to echo (called by aiortc's RTP sender)."""
        if self.readyState != "live":
            raise MediaStreamError
        frame = await self._queue.get()
        if frame is None:
            raise MediaStreamError
        packet = av.Packet(frame.data)
        packet.pts = frame.timestamp
        packet.time_base = _TIME_BASE
        self._counters.frames_forwarded += 1
        return packet

    def stop(self) -> None:
        """End the track: aiortc's sender loop stops at its next ``recv``."""
        super().stop()
        while not self._queue.empty():
            self._queue.get_nowait()
        self._queue.put_nowait(None)


class MediaForwarder:
    """Receives one browser's packets and feeds the echo track and the recorder."""

    def __init__(
        self,
        counters: MediaCounters,
        *,
        min_pli_interval: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.counters = counters
        self.track = ForwardedVideoTrack(counters)
        self.recorder: Recorder | None = None
        self.last_packet_at: float | None = None
        """Clock reading at the last packet received, None before the first."""
        self.frame_size: tuple[int, int] = (0, 0)
        """Width and height of the video, from its latest keyframe; (0, 0) before one."""
        self._assembler = FrameAssembler(self._on_frame, self._on_loss)
        self._clock = clock
        self._min_pli_interval = min_pli_interval
        self._last_pli_at = -min_pli_interval
        self._keyframe_wanted = False
        self._echo_waits_for_keyframe = True

    def request_keyframe(self) -> None:
        """Ask the browser for a keyframe with the next outgoing PLI (rate-limited)."""
        self._keyframe_wanted = True

    def on_viewer_keyframe_request(self) -> None:
        """The viewer of the echo lost a picture (PLI/FIR): pass the request on."""
        self.counters.plis_received += 1
        self.request_keyframe()

    def on_rtp(self, packet: RtpPacket, data: bytes) -> bool:
        """Take one incoming packet; return True when aiortc should send a PLI now."""
        now = self._clock()
        self.last_packet_at = now
        counters = self.counters
        counters.packets_received += 1
        counters.bytes_received += len(packet.payload)
        self._assembler.add(
            packet.sequence_number, packet.timestamp, bool(packet.marker), packet.payload, data
        )
        if self._keyframe_wanted and now - self._last_pli_at >= self._min_pli_interval:
            self._keyframe_wanted = False
            self._last_pli_at = now
            counters.plis_sent += 1
            return True
        return False

    def stop(self) -> None:
        """Stop the echo track; the recorder is closed by its owner."""
        self.track.stop()

    def _on_frame(self, frame: EncodedFrame) -> None:
        counters = self.counters
        counters.frames_received += 1
        if frame.keyframe:
            counters.keyframes += 1
            self._keyframe_wanted = False
            self.frame_size = keyframe_size(frame.data)
        if self._echo_waits_for_keyframe and not frame.keyframe:
            self.request_keyframe()
        elif self.track.push(frame):
            self._echo_waits_for_keyframe = False
        else:
            self._echo_waits_for_keyframe = True
            self.request_keyframe()
        if self.recorder is not None and not self.recorder.push(frame):
            self.request_keyframe()

    def _on_loss(self) -> None:
        self.counters.losses += 1
        self._echo_waits_for_keyframe = True
        if self.recorder is not None:
            self.recorder.resync()
        self.request_keyframe()
