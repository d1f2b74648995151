"""Per-track forwarding: each incoming RTP packet echoed at once, re-stamped, nothing decoded.

The forwarder knows no codec: a :class:`TrackFormat` says where the echo may start (a VP8
keyframe's first packet; any Opus packet) and how far a restarted echo's timestamps step.
The numbers come from an :class:`~echo_widget.media.munger.RtpMunger`. Each packet is
also handed to a :meth:`~MediaForwarder.tap` (the video's frame assembly). Keyframe requests
from the viewer, the frame side branch and the echo's own start become one PLI towards the
browser at most every ``min_pli_interval``, sent by aiortc when :meth:`MediaForwarder.on_rtp`
says so; a keyframe that arrives (:meth:`MediaForwarder.keyframe_arrived`) settles them.

The echo never keeps a queue: once no packet has left within ``shed_after_ms`` of when it
should (:class:`~echo_widget.media.delay.AddedDelay`) for 100 ms, late packets are shed instead
(:class:`~echo_widget.media.delay.StandingDelay`). Video then waits for a keyframe, asked for at
once, and goes on from it with the next sequence number; audio just skips the packet. A burst
that the loop catches up with within 100 ms is echoed. The delay of every echoed packet is
counted in the counters' histogram, except retransmissions, which keep their first send time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from echo_widget.stats import MediaCounters

from .delay import SHED_AFTER_MS, AddedDelay, StandingDelay
from .munger import RtpMunger


class HeaderExtensions(Protocol):
    @property
    def abs_send_time(self) -> int | None: ...


class IncomingPacket(Protocol):
    """The fields of an incoming RTP packet the forwarder reads (aiortc's ``RtpPacket``)."""

    @property
    def sequence_number(self) -> int: ...
    @property
    def timestamp(self) -> int: ...
    @property
    def marker(self) -> int: ...
    @property
    def ssrc(self) -> int: ...
    @property
    def payload(self) -> bytes: ...
    @property
    def extensions(self) -> HeaderExtensions: ...


class EchoOutput(Protocol):
    """Where the forwarder sends the echo (:class:`~echo_widget._aiortc_compat.EchoRtpSender`)."""

    @property
    def ready(self) -> bool:
        """Whether packets can be sent yet."""

    async def send_rtp(self, payload: bytes, marker: bool, sequence_number: int,
                       timestamp: int, abs_send_time: int | None = None, *,
                       frame_end: bool | None = None) -> None:
        """Send one RTP packet of the echo (``abs_send_time``: the browser's, if it sent one;
        ``frame_end``: the packet ends a frame, default ``marker``)."""

    def translate_sender_report(self, ntp: int, timestamp: int) -> None:
        """Pair the echo's ``timestamp`` with the browser's ``ntp`` in its sender reports."""


@dataclass(frozen=True)
class TrackFormat:
    """What the forwarder needs to know of a codec."""

    kind: str
    """``"video"`` or ``"audio"``."""
    restart_step: int
    """Timestamp step from the last echoed packet to a restarted echo's first."""
    starts_echo: Callable[[bytes, bytes], bool]
    """Whether a packet (RTP payload, depayloaded data) can start the echo."""


PacketHook = Callable[[int, int, bool, bytes, bytes], None]
"""Called with (sequence number, timestamp, marker, payload, depayloaded data) per packet."""


class MediaForwarder:
    """Receives one track's packets from the browser and echoes each at once."""

    def __init__(
        self,
        counters: MediaCounters,
        track: TrackFormat,
        *,
        min_pli_interval: float = 0.5,
        shed_after_ms: float | None = SHED_AFTER_MS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``shed_after_ms``: the standing delay to shed at; None echoes every packet however
        late."""
        self.counters = counters
        self.track = track
        self.last_packet_at: float | None = None
        """Clock reading at the last packet received, None before the first."""
        self._on_packet: PacketHook | None = None
        self._echo: EchoOutput | None = None
        self._munger = RtpMunger(track.restart_step)
        self._can_start = False
        self._clock = clock
        self._min_pli_interval = min_pli_interval
        self._last_pli_at = -min_pli_interval
        self._keyframe_wanted = False
        self._every_packet_ends_frame = track.kind == "audio"
        self._delay = AddedDelay()
        self._newest: tuple[int, int] | None = None
        """(SSRC, highest sequence number) of the packets measured so far."""
        self._standing = StandingDelay(shed_after_ms) if shed_after_ms is not None else None
        self._shedding = False
        """Video was shed and waits for a keyframe: what it does not echo counts as shed."""

    def tap(self, hook: PacketHook) -> None:
        """Hand each packet to ``hook`` too, before it is echoed (the frame side branch)."""
        self._on_packet = hook

    def start_echo(self, output: EchoOutput) -> None:
        """Echo through ``output`` from the next packet that can start the echo."""
        self._echo = output

    def stop(self) -> None:
        """Stop echoing."""
        self._echo = None

    def echo_timestamp(self, rtp_timestamp: int) -> int | None:
        """The echo's RTP timestamp for the browser's, or None before the echo started."""
        return self._munger.echo_timestamp(rtp_timestamp)

    def sender_report(self, ssrc: int, ntp: int, rtp_timestamp: int) -> None:
        """The browser's sender report for its stream: passed on in the echo's, re-stamped."""
        echo = self._echo
        timestamp = self._munger.echo_timestamp(rtp_timestamp)
        if echo is not None and timestamp is not None and ssrc == self._munger.ssrc:
            echo.translate_sender_report(ntp, timestamp)

    def request_keyframe(self) -> None:
        """Ask the browser for a keyframe with the next outgoing PLI (rate-limited)."""
        self._keyframe_wanted = True

    def keyframe_arrived(self) -> None:
        """A whole keyframe came in: no request is needed for now."""
        self._keyframe_wanted = False

    def on_viewer_keyframe_request(self) -> None:
        """The viewer of the echo lost a picture (PLI/FIR): pass the request on."""
        self.counters.plis_received += 1
        self.request_keyframe()

    def on_rtp(self, packet: IncomingPacket, data: bytes) -> bool:
        """Take one incoming packet; return True when aiortc should send a PLI now."""
        now = self._clock()
        self.last_packet_at = now
        counters = self.counters
        payload = packet.payload
        counters.packets_received += 1
        counters.bytes_received += len(payload)
        if self._on_packet is not None:
            self._on_packet(packet.sequence_number, packet.timestamp, bool(packet.marker),
                            payload, data)
        if self._munger.waiting(packet.ssrc):
            self._can_start = self.track.starts_echo(payload, data)
            if not self._can_start:
                self._keyframe_wanted = True
        if self._keyframe_wanted and now - self._last_pli_at >= self._min_pli_interval:
            self._keyframe_wanted = False
            self._last_pli_at = now
            counters.plis_sent += 1
            return True
        return False

    async def forward(self, packet: IncomingPacket) -> None:
        """Echo the packet :meth:`on_rtp` just took, re-stamped; from a start packet on."""
        echo = self._echo
        if echo is None or not echo.ready:
            return
        sent = packet.extensions.abs_send_time
        added: float | None = None
        if sent is not None and self._is_newest(packet.ssrc, packet.sequence_number):
            now = self._clock()
            added = self._delay.added_ms(sent, now)
            standing = self._standing
            if standing is not None and standing.standing(added, now) and (
                    self._munger.started or self._can_start):
                self._shed()
                return
        numbers = self._munger.munge(packet.sequence_number, packet.timestamp,
                                     self._can_start)
        if numbers is None:
            if self._shedding:
                self.counters.packets_shed += 1
            return
        self._shedding = False
        marker = bool(packet.marker)
        await echo.send_rtp(packet.payload, marker, numbers[0], numbers[1], sent,
                            frame_end=marker or self._every_packet_ends_frame)
        counters = self.counters
        counters.packets_forwarded += 1
        if added is not None:
            counters.echo_delay.add(added)
        if marker:
            counters.frames_forwarded += 1

    def _is_newest(self, ssrc: int, seq: int) -> bool:
        """Whether a packet is ahead of every one before it. A retransmission (or a reordered
        packet) keeps the send time of its first sending: its lateness is no queue, so it is
        neither measured nor shed (it fills a hole on the viewer's side)."""
        newest = self._newest
        if newest is None or newest[0] != ssrc or 0 < (seq - newest[1]) & 0xFFFF < 0x8000:
            self._newest = (ssrc, seq)
            return True
        return False

    def _shed(self) -> None:
        """Drop a late packet; video stops until a keyframe (what it drops until then counts
        as shed too)."""
        self.counters.packets_shed += 1
        if not self._every_packet_ends_frame:  # the next packet that can't start asks for one
            self._shedding = True
            self._munger.pause()
