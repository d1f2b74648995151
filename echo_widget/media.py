"""The media path of one session: RTP in, RTP and encoded frames out, nothing decoded.

Each packet from the browser is echoed at once, as an SFU does: same payload and
marker, re-stamped with the echo sender's SSRC and payload type and with
sequence numbers and timestamps shifted by a fixed offset (so gaps stay gaps and
a retransmission fills the same hole on the viewer's side). The echo starts on a
keyframe's first packet. The same packets are reassembled into VP8 frames
(:class:`~echo_widget.vp8.FrameAssembler`) for the recorder and the statistics.
Keyframe requests from the viewer, from the recorder and from loss are turned
into RTCP PLIs towards the browser, at most one per ``min_pli_interval``.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Protocol

from aiortc.rtp import RtpPacket

from .vp8 import EncodedFrame, FrameAssembler, is_keyframe, keyframe_size, starts_frame

if TYPE_CHECKING:
    from .recorder import Recorder

_FRAME_TICKS = 3000
"""One frame at 30 fps in 90 kHz units: the timestamp step where the echo restarts."""


@dataclass
class MediaCounters:
    """Running totals over all the sessions of one widget."""

    frames_received: int = 0
    frames_forwarded: int = 0
    """Frames whose last packet was echoed."""
    packets_forwarded: int = 0
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


class EchoOutput(Protocol):
    """Where the forwarder sends the echo (:class:`~echo_widget._aiortc_compat.EchoRtpSender`)."""

    @property
    def ready(self) -> bool:
        """Whether packets can be sent yet."""

    async def send_rtp(self, payload: bytes, marker: bool, sequence_number: int,
                       timestamp: int, abs_send_time: int | None = None) -> None:
        """Send one RTP packet of the echo (``abs_send_time``: the browser's, if it sent one)."""


def _clear(flags: bytearray, start: int, count: int) -> None:
    """Zero ``count`` flags from ``start``, wrapping around the end."""
    end = start + count
    if end <= len(flags):
        flags[start:end] = bytes(count)
    else:
        flags[start:] = bytes(len(flags) - start)
        flags[:end - len(flags)] = bytes(end - len(flags))


class MediaForwarder:
    """Receives one browser's packets, echoes each at once, and feeds the recorder."""

    def __init__(
        self,
        counters: MediaCounters,
        *,
        min_pli_interval: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.counters = counters
        self.echo: EchoOutput | None = None
        """Where packets are echoed; nothing is echoed while None."""
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
        self._ssrc: int | None = None
        self._offsets: tuple[int, int] | None = None
        """Added to (sequence number, timestamp) of echoed packets; None until the echo starts."""
        self._last_out_seq = random.randrange(1 << 15) - 1
        self._last_out_ts = random.randrange(1 << 32)
        """The newest echoed packet's outgoing numbers: a restarted echo goes on from them."""
        self._starts_keyframe = False
        self._echoed = bytearray(1 << 16)
        """1 at each incoming sequence number echoed in the last half cycle: a packet that
        comes again (a retransmission of what did arrive, or a browser probing bandwidth with
        old packets over RTX) is not echoed twice."""
        self._highest_echoed = 0

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
        if packet.ssrc != self._ssrc:  # a new stream: the echo restarts on its first keyframe
            self._ssrc = packet.ssrc
            self._offsets = None
        if self._offsets is None:
            self._starts_keyframe = starts_frame(packet.payload) and is_keyframe(data)
            if not self._starts_keyframe:
                self._keyframe_wanted = True
        if self._keyframe_wanted and now - self._last_pli_at >= self._min_pli_interval:
            self._keyframe_wanted = False
            self._last_pli_at = now
            counters.plis_sent += 1
            return True
        return False

    async def forward(self, packet: RtpPacket) -> None:
        """Echo the packet :meth:`on_rtp` just took, re-stamped; from a keyframe on."""
        echo = self.echo
        if echo is None or not echo.ready:
            return
        offsets = self._offsets
        seq = packet.sequence_number
        if offsets is None:
            if not self._starts_keyframe:
                return
            offsets = self._offsets = (
                (self._last_out_seq + 1 - seq) & 0xFFFF,
                (self._last_out_ts + _FRAME_TICKS - packet.timestamp) & 0xFFFFFFFF)
            self._echoed = bytearray(1 << 16)
            self._highest_echoed = (seq - 1) & 0xFFFF
        echoed = self._echoed
        if echoed[seq]:
            return
        echoed[seq] = 1
        sequence_number = (seq + offsets[0]) & 0xFFFF
        timestamp = (packet.timestamp + offsets[1]) & 0xFFFFFFFF
        ahead = (seq - self._highest_echoed) & 0xFFFF
        if ahead < 0x8000:  # the newest so far (not a late retransmission)
            if ahead == 1:  # the usual case: forget the number half a cycle ahead
                echoed[(seq + 0x8000) & 0xFFFF] = 0
            else:  # a jump (loss): forget all those half a cycle ahead
                _clear(echoed, (self._highest_echoed + 1 + 0x8000) & 0xFFFF, ahead)
            self._highest_echoed = seq
            self._last_out_seq = sequence_number
            self._last_out_ts = timestamp
        await echo.send_rtp(packet.payload, bool(packet.marker), sequence_number, timestamp,
                            packet.extensions.abs_send_time)
        counters = self.counters
        counters.packets_forwarded += 1
        if packet.marker:
            counters.frames_forwarded += 1

    def stop(self) -> None:
        """Stop echoing; the recorder is closed by its owner."""
        self.echo = None

    def _on_frame(self, frame: EncodedFrame) -> None:
        counters = self.counters
        counters.frames_received += 1
        if frame.keyframe:
            counters.keyframes += 1
            self._keyframe_wanted = False
            self.frame_size = keyframe_size(frame.data)
        if self.recorder is not None and not self.recorder.push(frame):
            self.request_keyframe()

    def _on_loss(self) -> None:
        self.counters.losses += 1
        if self.recorder is not None:
            self.recorder.resync()
        self.request_keyframe()
