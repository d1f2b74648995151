"""Every use of aiortc's private API, in one place.

aiortc's receiver always decodes video, its sender only sends what its own
packetizer made from a track's frames, and it treats a keyframe request
(PLI/FIR) as a hint for its own encoder. Forwarding packets as an SFU does
needs small hooks instead:

* the receiver's jitter buffer is swapped for :class:`JitterBufferTap`, which
  hands each depayloaded packet to a :class:`~echo_widget.vp8.FrameAssembler`
  and never returns a frame, so aiortc's decoder thread never gets anything to
  decode (and never creates a decoder). Its return value also lets us ask
  aiortc to send a PLI through its own RTCP path.
* the receiver's decoder queue is swapped for one that already holds aiortc's
  stop marker, so the decoder thread aiortc starts exits at once: no idle,
  non-daemon thread per session (which would also keep the interpreter from
  exiting while a session is live).
* the receiver's ``_handle_rtp_packet`` is replaced by :class:`LeanHandling` (or wrapped),
  when a ``forward`` callback is given, so that each packet that reached the tap is
  forwarded right after it was handled (statistics, NACKs, RTX unwrapping, depayloading),
  on the same call, with no queue or task in between.
* :class:`EchoRtpSender` sends those packets through an aiortc sender as if its
  own packetizer had made them: the sender's SSRC, payload type, MID, its
  header-extension map, its retransmission history (so aiortc answers the
  viewer's NACKs) and its sender-report counters (so its RTCP SRs stay right).
  The header is written from a template aiortc itself serialized once, not by
  ``RtpPacket.serialize`` per packet, and sent as the DTLS transport and aioice would send
  it (SRTP, then the nominated pair's socket), without their coroutine layers. The
  browser's abs-send-time is kept, as an SFU keeps it. The sender's own loop is parked on
  a track that never yields.
* the sender's ``_send_keyframe`` is replaced on the instance, so that a PLI or
  FIR from the viewer reaches us.
* the receiver's REMB estimator is swapped for :class:`RembCap` (:func:`cap_remb`): aiortc's
  delay-based estimator costs more per packet than the rest of the echo does, and its first
  estimates come late and low. The cap is sent from the first packet on, as Janus sends its
  configured cap, so the browser starts at the bitrate its camera needs.
* the receiver's ``_handle_rtcp_packet`` is wrapped (:func:`on_sender_report`) so that the
  browser's RTCP sender reports (its NTP time for an RTP timestamp) reach us: they line up
  audio and video in a recording, and the echo's own sender reports carry them on
  (:meth:`EchoRtpSender.translate_sender_report`), so the viewer plays the echoed audio and
  video in sync as the browser captured them.
* :class:`FastReceive` reads SRTP media packets in the socket's own callback: aioice would
  first try each as STUN (a raised ``ValueError`` per packet), then queue it for the DTLS
  transport's task, which wakes once per packet. It uses aioice's ``Connection._queue`` and
  ``_protocols`` and the DTLS transport's SRTP session, counters and ``_handle_rtp_data``.
* the answer's Opus parameters are set on the transceiver's negotiated codecs
  (:func:`set_answer_parameters`).
* ``OperationError`` (``aiortc.exceptions``, not exported): what ``setRemoteDescription``
  raises for an m-line with no codec aiortc has; the session calls that a bad offer.
* SDP and candidate parsing use ``aiortc.sdp``, which is not in aiortc's public API:
  :func:`offered_media` and :func:`parse_candidate`.

This is the only module of echo-widget that imports anything of aiortc (or aioice, its ICE
library) outside its ``__all__``. :func:`check_compat` verifies every private name used here:
it runs at import (a problem raises; sources it cannot read give a warning), and
``tests/test_aiortc_compat.py`` runs it requiring the sources, so an upgrade that breaks them
fails loudly.
The tested ranges of both are pinned in ``pyproject.toml``.
"""

from __future__ import annotations

import asyncio
import hashlib
import linecache
import logging
import queue
import time
import warnings
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from struct import pack
from types import CodeType
from typing import Any, Protocol

import pylibsrtp
from aioice import ice
from aiortc import (
    MediaStreamError,
    MediaStreamTrack,
    RTCIceCandidate,
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCRtpSender,
    RTCRtpTransceiver,
    clock,
    rtcdtlstransport,
    rtcicetransport,
    rtcpeerconnection,
    rtcrtpreceiver,
    rtcrtpsender,
)
from aiortc.codecs import depayload, is_rtx
from aiortc.exceptions import OperationError as OperationError
from aiortc.rtcrtpparameters import RTCRtpSendParameters
from aiortc.rtcrtpreceiver import StreamStatistics
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RTP_HISTORY_SIZE,
    HeaderExtensions,
    HeaderExtensionsMap,
    RtcpPsfbPacket,
    RtcpSrPacket,
    RtpPacket,
    pack_remb_fci,
    unwrap_rtx,
)
from aiortc.sdp import SessionDescription, candidate_from_sdp

logger = logging.getLogger(__name__)

_JITTER_BUFFER_ATTR = "_RTCRtpReceiver__jitter_buffer"
_DECODER_QUEUE_ATTR = "_RTCRtpReceiver__decoder_queue"
_ESTIMATOR_ATTR = "_RTCRtpReceiver__remote_bitrate_estimator"
_DTLS_CONNECTED = rtcdtlstransport.State.CONNECTED


_NTP_UNIX_OFFSET = 2_208_988_800
"""Seconds from the NTP epoch (1900) to the Unix epoch (1970)."""


def ntp_ms() -> int:
    """``aiortc.clock.current_ms()`` (milliseconds since 1900), without building a
    timezone-aware ``datetime`` per packet."""
    return time.time_ns() // 1_000_000 + _NTP_UNIX_OFFSET * 1000


def ntp_time() -> int:
    """``aiortc.clock.current_ntp_time()`` (NTP 32.32 fixed point), the same way."""
    seconds, nanoseconds = divmod(time.time_ns(), 1_000_000_000)
    return ((seconds + _NTP_UNIX_OFFSET) << 32) | (nanoseconds << 32) // 1_000_000_000


class PacketSink(Protocol):
    """What the tap hands packets to."""

    def on_rtp(self, packet: RtpPacket, data: bytes) -> bool:
        """Take one packet (``data``: its depayloaded VP8); return True to send a PLI now."""


class JitterBufferTap:
    """Stands in for aiortc's ``JitterBuffer`` on a receiver: forwards, never yields frames."""

    __slots__ = ("_sink", "taken")

    def __init__(self, sink: PacketSink) -> None:
        self._sink = sink
        self.taken: RtpPacket | None = None
        """The last packet handed to the sink (after RTX unwrapping), until forwarded."""

    def add(self, packet: RtpPacket) -> tuple[bool, None]:
        """Called by aiortc for each depayloaded packet; returns (send_pli, no_frame)."""
        data: bytes = getattr(packet, "_data", b"")
        self.taken = packet
        return self._sink.on_rtp(packet, data), None


def tap_receiver(
    receiver: RTCRtpReceiver,
    sink: PacketSink,
    forward: Callable[[RtpPacket], Awaitable[None]] | None = None,
    *,
    lean: bool = False,
) -> None:
    """Route a receiver's packets to ``sink`` instead of aiortc's jitter buffer and decoder.

    With ``forward``, each packet the sink took is then awaited through ``forward``, on the
    same call that received it. ``lean``: the packets are handled by :class:`LeanHandling`
    instead of aiortc's ``_handle_rtp_packet`` (``forward`` is then required).
    """
    for attribute in (_JITTER_BUFFER_ATTR, _DECODER_QUEUE_ATTR):
        if not hasattr(receiver, attribute):
            raise RuntimeError(_broken(f"RTCRtpReceiver has no attribute {attribute}"))
    tap = JitterBufferTap(sink)
    setattr(receiver, _JITTER_BUFFER_ATTR, tap)
    stopped: queue.Queue[None] = queue.Queue()
    stopped.put(None)  # decoder_worker's stop marker: its thread ends as soon as it starts
    setattr(receiver, _DECODER_QUEUE_ATTR, stopped)
    if forward is None:
        if lean:
            raise ValueError("the lean handling forwards: give forward")
        return
    if lean:
        receiver._handle_rtp_packet = LeanHandling(  # type: ignore[method-assign]
            receiver, sink, forward).handle
        return
    handle = receiver._handle_rtp_packet

    async def handle_and_forward(packet: RtpPacket, arrival_time_ms: int) -> None:
        await handle(packet, arrival_time_ms)
        taken = tap.taken
        if taken is not None:
            tap.taken = None
            await forward(taken)

    receiver._handle_rtp_packet = handle_and_forward  # type: ignore[method-assign]


_HANDLE_RTP_PACKET_SHA256 = "4e54983d021a6336d80c29490f82f9a6dd531c0d3179b2daed818120c5ece238"
"""aiortc's ``RTCRtpReceiver._handle_rtp_packet`` source, which :class:`LeanHandling` mirrors:
any change to it fails :func:`check_compat`, so the mirror is read again."""


class LeanHandling:
    """aiortc's ``RTCRtpReceiver._handle_rtp_packet`` for a tapped receiver, then the forward.

    The same steps, on aiortc's own state: the REMB estimator (or :class:`RembCap`), the
    receiver-report statistics, RTX unwrapping, NACK generation, depayloading, the sink (in
    place of the jitter buffer) and its PLI. Left out per packet: two debug-log calls, a
    timezone-aware ``datetime`` for ``getSynchronizationSources`` (refreshed every 100 ms
    instead), each codec's name parsed again to tell RTX and to depayload, the VP8 payload
    descriptor's object (:func:`vp8_depayload_lean`), and the jitter buffer and decoder
    checks a tapped receiver never uses.
    """

    def __init__(self, receiver: RTCRtpReceiver, sink: PacketSink,
                 forward: Callable[[RtpPacket], Awaitable[None]]) -> None:
        internals: Any = receiver
        self._receiver = internals
        self._sink = sink
        self._forward = forward
        self._codecs: dict[int, Any] = internals._RTCRtpReceiver__codecs
        self._streams: dict[int, Any] = internals._RTCRtpReceiver__remote_streams
        self._rtx_ssrc: dict[int, int] = internals._RTCRtpReceiver__rtx_ssrc
        self._active: dict[int, Any] = internals._RTCRtpReceiver__active_ssrc
        self._nack: Any = internals._RTCRtpReceiver__nack_generator
        self._kinds: dict[int, tuple[Any, Any, Callable[[bytes], bytes]]] = {}
        """Per payload type: its codec, the ``apt`` of an RTX codec (else None), and its
        depayloader (aiortc's ``depayload`` for the codec, or the same for VP8)."""
        self._active_at: dict[int, int] = {}

    def _kind(self, payload_type: int) -> tuple[Any, Any, Callable[[bytes], bytes]] | None:
        """What :attr:`_kinds` holds for ``payload_type``, made once; None for no codec."""
        kind = self._kinds.get(payload_type)
        if kind is None:
            codec = self._codecs.get(payload_type)
            if codec is None:
                return None
            kind = self._kinds[payload_type] = (
                codec, codec.parameters.get("apt", -1) if is_rtx(codec) else None,
                vp8_depayload_lean if codec.name == "VP8" else partial(depayload, codec))
        return kind

    async def handle(self, packet: RtpPacket, arrival_time_ms: int) -> None:
        """Handle one incoming RTP packet as aiortc would, then forward what the sink took."""
        receiver = self._receiver
        if not receiver._enabled:
            return
        ssrc = packet.ssrc
        abs_send_time = packet.extensions.abs_send_time
        estimator = receiver._RTCRtpReceiver__remote_bitrate_estimator
        if estimator is not None and abs_send_time is not None:
            remb = estimator.add(abs_send_time=abs_send_time, arrival_time_ms=arrival_time_ms,
                                 payload_size=len(packet.payload) + packet.padding_size,
                                 ssrc=ssrc)
            rtcp_ssrc = receiver._RTCRtpReceiver__rtcp_ssrc
            if rtcp_ssrc is not None and remb is not None:
                await receiver._send_rtcp(RtcpPsfbPacket(
                    fmt=RTCP_PSFB_APP, ssrc=rtcp_ssrc, media_ssrc=0, fci=pack_remb_fci(*remb)))
        if arrival_time_ms - self._active_at.get(ssrc, -100) >= 100:
            self._active_at[ssrc] = arrival_time_ms
            self._active[ssrc] = clock.current_datetime()
        kind = self._kinds.get(packet.payload_type) or self._kind(packet.payload_type)
        if kind is None:
            return
        codec, apt, depayloader = kind
        stream = self._streams.get(ssrc)
        if stream is None:
            stream = self._streams[ssrc] = StreamStatistics(codec.clockRate)
        stream.add(packet)
        if apt is not None:
            original_ssrc = self._rtx_ssrc.get(ssrc)
            if (original_ssrc is None or len(packet.payload) < 2 or not isinstance(apt, int)
                    or apt not in self._codecs):
                return
            packet = unwrap_rtx(packet, payload_type=apt, ssrc=original_ssrc)
            media = self._kind(apt)
            assert media is not None  # apt is a codec's (checked above)
            depayloader = media[2]
        nack = self._nack
        if nack is not None and nack.add(packet):
            await receiver._send_rtcp_nack(packet.ssrc, sorted(nack.missing))
        try:
            data = depayloader(packet.payload) if packet.payload else b""
        except ValueError:
            return
        packet._data = data  # type: ignore[attr-defined]
        if self._sink.on_rtp(packet, data):
            await receiver._send_rtcp_pli(packet.ssrc)
        await self._forward(packet)


def vp8_depayload_lean(payload: bytes) -> bytes:
    """aiortc's ``vp8_depayload``: what follows the VP8 payload descriptor (RFC 7741), and a
    ``ValueError`` where it raises one (a truncated descriptor), without building the
    descriptor's object nor parsing the codec's name per packet."""
    size = len(payload)
    if size < 1:
        raise ValueError("VPX descriptor is too short")
    at = 1
    if payload[0] & 0x80:  # X: extended control bits
        if size < 2:
            raise ValueError("VPX descriptor has truncated extended bits")
        bits = payload[1]
        at = 2
        if bits & 0x80:  # I: a picture ID, 7 or 15 bits
            if size < 3:
                raise ValueError("VPX descriptor has truncated PictureID")
            if payload[2] & 0x80:
                if size < 4:
                    raise ValueError("VPX descriptor has truncated long PictureID")
                at = 4
            else:
                at = 3
        if bits & 0x40:  # L: TL0PICIDX
            if size < at + 1:
                raise ValueError("VPX descriptor has truncated TL0PICIDX")
            at += 1
        if bits & 0x30:  # T or K: one byte for both
            if size < at + 1:
                raise ValueError("VPX descriptor has truncated T/K")
            at += 1
    return payload[at:]


class RembCap:
    """Stands in for aiortc's ``RemoteBitrateEstimator``: the same REMB, a fixed bitrate, for
    every SSRC seen, on a stream's first packet and then every ``interval_ms``.

    aiortc sends what :meth:`add` returns as an RTCP REMB. A browser trusts a REMB during its
    first two seconds if nothing was lost, so it starts at this bitrate (or the most its
    encoder uses for the resolution, if less); after that its own loss-based control, fed by
    the receiver reports, keeps it below what the path carries.
    """

    __slots__ = ("_last_ms", "_ssrcs", "bitrate", "interval_ms")

    def __init__(self, bitrate: int, interval_ms: int = 1000) -> None:
        self.bitrate = bitrate
        self.interval_ms = interval_ms
        self._ssrcs: list[int] = []
        self._last_ms = 0

    def add(self, arrival_time_ms: int, abs_send_time: int, payload_size: int,
            ssrc: int) -> tuple[int, list[int]] | None:
        """Called by aiortc for each packet with abs-send-time: (bitrate, SSRCs) when due."""
        if ssrc in self._ssrcs:
            if arrival_time_ms - self._last_ms < self.interval_ms:
                return None
        else:
            self._ssrcs.append(ssrc)
        self._last_ms = arrival_time_ms
        return self.bitrate, list(self._ssrcs)


def cap_remb(receiver: RTCRtpReceiver, bitrate: int) -> RembCap:
    """Replace a video receiver's REMB estimator with a :class:`RembCap` of ``bitrate``."""
    if not hasattr(receiver, _ESTIMATOR_ATTR):
        raise RuntimeError(_broken(f"RTCRtpReceiver has no attribute {_ESTIMATOR_ATTR}"))
    if getattr(receiver, _ESTIMATOR_ATTR) is None:
        raise ValueError("only a video receiver sends REMB")
    cap = RembCap(bitrate)
    setattr(receiver, _ESTIMATOR_ATTR, cap)
    return cap


class _ParkedTrack(MediaStreamTrack):
    """The echo sender's track: never yields, so aiortc's own send loop just waits."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self._ended: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def recv(self) -> Any:
        """Wait until the track ends (called once by aiortc's RTP sender loop)."""
        await asyncio.shield(self._ended)
        raise MediaStreamError

    def stop(self) -> None:
        super().stop()
        if not self._ended.done():
            self._ended.set_result(None)


class EchoRtpSender:
    """Sends already-packetized media (VP8, Opus) through an aiortc sender, as its
    packetizer would."""

    def __init__(self, sender: RTCRtpSender, kind: str = "video", *, lean: bool = True) -> None:
        for attribute in _SENDER_ATTRS:
            if not hasattr(sender, attribute):
                raise RuntimeError(_broken(f"RTCRtpSender has no attribute {attribute}"))
        self.track: MediaStreamTrack = _ParkedTrack(kind)
        """Give this to ``addTrack``/``replaceTrack``: it keeps aiortc's own loop idle."""
        internals: Any = sender
        self._sender = internals
        self._history: dict[int, RtpPacket] = internals._RTCRtpSender__rtp_history
        self._payload_type = 0
        self._mid: str | None = None
        self._header: _HeaderTemplate | None = None
        self._translated = False
        """Whether the sender reports carry the browser's clock (see translate_sender_report)."""
        self._lean = lean
        """Whether packets go out without the transports' coroutine layers (``_send_now``)."""
        start = sender.send

        async def send(parameters: RTCRtpSendParameters) -> None:
            self._payload_type = parameters.codecs[0].payloadType or 0
            self._mid = parameters.muxId
            await start(parameters)
            self._header = _HeaderTemplate.make(
                internals._RTCRtpSender__rtp_header_extensions_map, self._mid)

        sender.send = send  # type: ignore[method-assign]

    @property
    def ready(self) -> bool:
        """Whether the sender has started (its transport is up), so packets can go."""
        return self._header is not None

    def serialize(self, payload: bytes, marker: bool, sequence_number: int, timestamp: int,
                  abs_send_time: int) -> bytes:
        """The packet's bytes, exactly as aiortc's ``RtpPacket.serialize`` would make them."""
        header = self._header
        assert header is not None, "the sender has not started"
        fixed = pack("!BBHLL", header.first_byte, (marker << 7) | self._payload_type,
                     sequence_number, timestamp, self._sender._ssrc)
        if not header.has_abs_send_time:
            return b"".join((fixed, header.before, payload))
        return b"".join((fixed, header.before, abs_send_time.to_bytes(3, "big"), header.after,
                         payload))

    def _send_now(self, data: bytes) -> bool:
        """Encrypt and send one RTP packet, as the DTLS transport's ``_send_rtp`` and aioice's
        ``Connection.sendto`` would, without their three coroutine calls per packet; False
        when the transport is not connected (the packet is dropped, as aiortc drops it)."""
        dtls: Any = self._sender.transport
        if dtls._state is not _DTLS_CONNECTED:
            return False
        data = dtls._tx_srtp.protect(data)
        pair = dtls.transport._connection._nominated.get(1)
        if pair is None:
            return False
        pair.protocol.transport.sendto(data, pair.remote_addr)  # StunProtocol.send_data
        dtls._RTCDtlsTransport__tx_bytes += len(data)
        dtls._RTCDtlsTransport__tx_packets += 1
        return True

    def translate_sender_report(self, ntp: int, timestamp: int) -> None:
        """From now on, sender reports pair the echo's ``timestamp`` with the browser's own
        ``ntp`` time for it (from the browser's sender report), as an SFU forwards them."""
        self._translated = True
        self._sender._RTCRtpSender__ntp_timestamp = ntp
        self._sender._RTCRtpSender__rtp_timestamp = timestamp

    async def send_rtp(self, payload: bytes, marker: bool, sequence_number: int,
                       timestamp: int, abs_send_time: int | None = None, *,
                       frame_end: bool | None = None) -> None:
        """Send one RTP packet with the sender's SSRC; dropped if the transport is down.

        ``abs_send_time``: the original sender's, kept if given (else now). ``frame_end``
        (default: ``marker``): the packet ends a frame, so until the browser's own sender
        reports are translated, the echo's pair its timestamp with now. The packet goes
        into the sender's history (for NACKs); its RTCP counters are kept.
        """
        sender = self._sender
        packet = RtpPacket(self._payload_type, int(marker), sequence_number, timestamp,
                           sender._ssrc, payload)
        stamp = marker if frame_end is None else frame_end
        ntp = 0
        if abs_send_time is None or stamp:
            ntp = ntp_time()
            if abs_send_time is None:
                abs_send_time = (ntp >> 14) & 0x00FFFFFF
        packet.extensions.abs_send_time = abs_send_time
        packet.extensions.mid = self._mid
        self._history[sequence_number % RTP_HISTORY_SIZE] = packet
        data = self.serialize(payload, marker, sequence_number, timestamp, abs_send_time)
        if self._lean:
            if not self._send_now(data):
                return
        else:
            try:
                await sender.transport._send_rtp(data)
            except ConnectionError:
                return
        if stamp and not self._translated:  # the report pairs a frame with when it went out
            sender._RTCRtpSender__ntp_timestamp = ntp
            sender._RTCRtpSender__rtp_timestamp = timestamp
        sender._RTCRtpSender__octet_count += len(payload)
        sender._RTCRtpSender__packet_count += 1


@dataclass(frozen=True)
class _HeaderTemplate:
    """A sender's RTP header extensions, serialized once by aiortc, to patch per packet."""

    first_byte: int
    """Version 2, and the X bit when there are extensions."""
    before: bytes
    """The extension block (profile, length, elements, padding) up to the 3-byte
    abs-send-time value; all of it (or nothing) when abs-send-time is not negotiated."""
    after: bytes
    """The rest of the extension block, after the abs-send-time value."""
    has_abs_send_time: bool

    @classmethod
    def make(cls, extensions_map: HeaderExtensionsMap, mid: str | None) -> _HeaderTemplate:
        """Serialize with aiortc's map; two probes with different abs-send-times show where
        its value sits."""
        zero = HeaderExtensions(mid=mid, abs_send_time=0)
        ones = HeaderExtensions(mid=mid, abs_send_time=0xFFFFFF)
        profile, value = extensions_map.set(zero)
        if not value:
            return cls(0x80, b"", b"", False)
        block = pack("!HH", profile, len(value) >> 2) + value
        changed = [i for i, (a, b) in enumerate(zip(value, extensions_map.set(ones)[1],
                                                    strict=True)) if a != b]
        if not changed:
            return cls(0x90, block, b"", False)
        if changed != list(range(changed[0], changed[0] + 3)):
            raise RuntimeError(_broken("abs-send-time is not a 3-byte header extension"))
        at = 4 + changed[0]
        return cls(0x90, block[:at], block[at + 3:], True)


_SENDER_ATTRS = tuple(f"_RTCRtpSender__{name}" for name in (
    "rtp_history", "rtp_header_extensions_map", "ntp_timestamp", "rtp_timestamp",
    "octet_count", "packet_count", "rtt"))


SenderReportHook = Callable[[int, int, int], None]
"""Called with (SSRC, NTP timestamp as 64-bit fixed point, RTP timestamp) per sender report."""


def on_sender_report(receiver: RTCRtpReceiver, callback: SenderReportHook) -> None:
    """Call ``callback`` for every RTCP sender report the remote sends for this receiver."""
    handle = receiver._handle_rtcp_packet

    async def handle_and_report(packet: Any) -> None:
        await handle(packet)
        if isinstance(packet, RtcpSrPacket):
            info = packet.sender_info
            callback(packet.ssrc, info.ntp_timestamp, info.rtp_timestamp)

    receiver._handle_rtcp_packet = handle_and_report  # type: ignore[method-assign]


READS_PER_WAKEUP = 16
"""Datagrams :class:`FastReceive` reads from one socket per wake-up of the loop (asyncio reads
one): a burst, such as a keyframe's packets, is handled at once, not one packet per turn of
the loop over every other socket and task."""
_MAX_DATAGRAM = 65536


class FastReceive:
    """Takes SRTP media packets from the socket's callback straight to aiortc's receivers.

    aioice hands every datagram to ``stun.parse_message`` first (a raised ``ValueError`` per
    media packet), then queues it for the DTLS transport's task, which wakes once per packet.
    A media packet (RFC 7983: first byte 128-191; not RTCP) is read here instead, in the
    callback: counted, decrypted, then parsed and handled by aiortc's own code (statistics,
    NACKs, RTX, REMB, the tap and the echo), which runs to its end at once, since nothing on
    that path waits. Everything else (STUN, DTLS, RTCP), and every packet while aioice's queue
    holds one, takes aioice's usual way, so the order is kept. After the datagram asyncio read,
    the callback reads what else waits in the socket, up to :data:`READS_PER_WAKEUP` in all,
    through a duplicate of the socket's descriptor (closed by :meth:`aclose`); over TURN, whose
    transport has no socket of its own, one datagram per wake-up.

    Should the handling ever wait on something, a task owned here finishes it, and packets
    take the usual way until it is done. :meth:`aclose` restores aioice and awaits them.
    """

    def __init__(self, dtls: rtcdtlstransport.RTCDtlsTransport) -> None:
        internals: Any = dtls
        connection: Any = internals.transport._connection
        self._dtls = internals
        self._queue: asyncio.Queue[Any] = connection._queue
        self._protocols: list[Any] = list(connection._protocols)
        self._pending: dict[asyncio.Future[Any], Any] = {}
        """Tasks finishing a packet's handling that had to wait, and that handling."""
        self.packets = 0
        """Packets taken this way."""
        self._sockets: list[Any] = []
        """Duplicates of the sockets' descriptors, to read the rest of a burst."""
        for protocol in self._protocols:
            protocol.datagram_received = self._wrap(protocol.datagram_received)

    def _wrap(self, usual: Callable[[Any, Any], None]) -> Callable[[Any, Any], None]:
        dtls = self._dtls
        empty = self._queue.empty
        pending = self._pending

        def take(data: Any, addr: Any) -> None:
            if (len(data) > 12 and 127 < data[0] < 192 and not 191 < data[1] < 209
                    and dtls._rx_srtp is not None and empty() and not pending):
                self._receive(data)
            else:
                usual(data, addr)

        protocol: Any = getattr(usual, "__self__", None)
        transport = getattr(protocol, "transport", None)
        # a relayed candidate's transport (aioice's TurnTransport) has no socket of its own
        own = transport.get_extra_info("socket") if transport is not None else None
        if own is None or READS_PER_WAKEUP < 2:
            return take
        sock = own.dup()
        sock.setblocking(False)
        self._sockets.append(sock)
        recvfrom = sock.recvfrom
        more = range(READS_PER_WAKEUP - 1)

        def datagram_received(data: Any, addr: Any) -> None:
            take(data, addr)
            for _ in more:
                try:
                    data, addr = recvfrom(_MAX_DATAGRAM)
                except (BlockingIOError, InterruptedError):
                    return
                except OSError as exc:  # as asyncio's own read reports it
                    protocol.error_received(exc)
                    return
                take(data, addr)

        return datagram_received

    def _receive(self, data: bytes) -> None:
        dtls = self._dtls
        dtls._RTCDtlsTransport__rx_bytes += len(data)
        dtls._RTCDtlsTransport__rx_packets += 1
        arrival_time_ms = ntp_ms()
        try:
            data = dtls._rx_srtp.unprotect(data)
        except pylibsrtp.Error:
            return  # as aiortc: a packet that does not decrypt is dropped
        self.packets += 1
        handling = dtls._handle_rtp_data(data, arrival_time_ms=arrival_time_ms)
        try:
            waiting = handling.send(None)
        except StopIteration:
            return
        except ConnectionError:  # the transport closed under it; aiortc's loop ends the peer
            return
        except Exception:
            logger.exception("handling an RTP packet failed")
            return
        task = asyncio.ensure_future(_Resumed(handling, waiting))
        self._pending[task] = handling
        task.add_done_callback(self._pending.pop)

    async def aclose(self) -> None:
        """Give aioice its usual path back; cancel and await what is pending."""
        for protocol in self._protocols:
            protocol.__dict__.pop("datagram_received", None)
        for sock in self._sockets:
            sock.close()
        pending = dict(self._pending)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for handling in pending.values():
            handling.close()  # one cancelled before its task ran is still suspended


class _Resumed:
    """Awaits the rest of a coroutine that was started by hand and then had to wait."""

    def __init__(self, coroutine: Any, waiting: Any) -> None:
        self._coroutine = coroutine
        self._waiting = waiting

    def __await__(self) -> Any:
        coroutine, waiting = self._coroutine, self._waiting
        while True:
            try:
                sent = yield waiting
            except BaseException as exc:  # a cancellation goes in as well
                step = coroutine.throw
                value: Any = exc
            else:
                step = coroutine.send
                value = sent
            try:
                waiting = step(value)
            except StopIteration as stop:
                return stop.value


def set_answer_parameters(transceiver: RTCRtpTransceiver, mime_type: str,
                          parameters: dict[str, Any]) -> None:
    """Add fmtp ``parameters`` to a codec of the answer aiortc will make for ``transceiver``
    (after ``setRemoteDescription``): aiortc answers with its own codecs' parameters (none
    for Opus), so what the answer should say (``useinbandfec``, ``stereo``) is added here."""
    for codec in transceiver._codecs:
        if codec.mimeType.lower() == mime_type:
            codec.parameters.update(parameters)


def packets_lost(receiver: RTCRtpReceiver) -> int:
    """Packets of the remote's media streams that never arrived, by the receiver-report
    statistics aiortc keeps per SSRC; its retransmission (RTX) streams left out, and a packet
    a retransmission recovered still counted. aiortc's ``getStats`` gives a receiver one
    ``inbound-rtp`` entry, that of the SSRC seen last: after the first retransmission, RTX's."""
    internals: Any = receiver
    rtx: dict[int, int] = internals._RTCRtpReceiver__rtx_ssrc
    streams: dict[int, Any] = internals._RTCRtpReceiver__remote_streams
    return sum(int(stream.packets_lost) for ssrc, stream in list(streams.items())
               if ssrc not in rtx)


def round_trip_time(sender: RTCRtpSender) -> float | None:
    """The round-trip time in seconds aiortc derives from the remote's receiver reports on
    this sender (``getStats``' ``remote-inbound-rtp`` ``roundTripTime``); None before one."""
    internals: Any = sender
    rtt: float | None = internals._RTCRtpSender__rtt
    return rtt


def on_keyframe_request(sender: RTCRtpSender, callback: Callable[[], None]) -> None:
    """Call ``callback`` whenever the remote viewer sends a PLI or FIR for this sender."""
    sender._send_keyframe = callback  # type: ignore[method-assign]


@dataclass(frozen=True)
class OfferedMedia:
    """One m-line of an SDP, as far as the echo cares."""

    kind: str
    codecs: tuple[str, ...]
    """MIME types, lower case (``video/vp8``, ``video/rtx``, ``audio/opus``, ...)."""
    direction: str | None
    parameters: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Each codec's fmtp parameters by MIME type (the first payload type of each)."""


def offered_media(sdp: str) -> list[OfferedMedia]:
    """The m-lines of an SDP, parsed by aiortc; raises ValueError when it can't be parsed."""
    if not sdp.lstrip().startswith("v="):
        raise ValueError("an SDP starts with 'v='")
    try:
        description = SessionDescription.parse(sdp)
    except Exception as exc:
        raise ValueError(repr(exc)) from exc
    media = []
    for m in description.media:
        parameters: dict[str, dict[str, Any]] = {}
        for codec in m.rtp.codecs:
            parameters.setdefault(codec.mimeType.lower(), dict(codec.parameters))
        media.append(OfferedMedia(m.kind, tuple(c.mimeType.lower() for c in m.rtp.codecs),
                                  m.direction, parameters))
    return media


def parse_candidate(line: str) -> RTCIceCandidate:
    """An ICE candidate from its SDP form (with or without ``candidate:``)."""
    candidate: RTCIceCandidate = candidate_from_sdp(line.removeprefix("candidate:"))
    return candidate


def ice_summary(pc: RTCPeerConnection, local: str = "local", remote: str = "remote") -> str:
    """What ICE got to on ``pc``, for when it does not connect: per transport, its ICE and
    DTLS states, the candidates on each side (named ``local`` and ``remote``; and whether the
    remote's end was signalled) and aioice's candidate-pair checks by state."""
    parts: list[str] = []
    transports = {id(t.receiver.transport): t.receiver.transport for t in pc.getTransceivers()}
    for dtls in transports.values():
        ice_transport: Any = dtls.transport
        gatherer: Any = ice_transport.iceGatherer
        ours = ", ".join(f"{c.type} {c.protocol} {c.ip}:{c.port}"
                         for c in gatherer.getLocalCandidates())
        theirs = ", ".join(f"{c.type} {c.protocol} {c.ip}:{c.port}"
                           for c in ice_transport.getRemoteCandidates())
        ended = "complete" if gatherer._remote_candidates_end else "end not signalled"
        connection: Any = ice_transport._connection
        checks: dict[str, int] = {}  # by state, named as in WebRTC's candidate-pair stats
        for pair in connection._check_list:
            state = pair.state.name.lower().replace("_", "-")
            checks[state] = checks.get(state, 0) + 1
        counted = ", ".join(f"{state} {n}" for state, n in checks.items()) or "none"
        parts.append(
            f"ICE {ice_transport.state}, DTLS {dtls.state}; {local} candidates [{ours}]; "
            f"{remote} candidates [{theirs}] ({ended}); checks {counted}")
    return f"signaling {pc.signalingState}; " + " | ".join(parts or ["no transport"])


_RECEIVER_METHODS = ("_handle_rtp_packet", "_send_rtcp_pli", "_handle_rtcp_packet",
                     "_send_rtcp_nack", "_send_rtcp")
_SENDER_METHODS = ("_send_keyframe", "_handle_rtcp_packet", "_retransmit", "_run_rtcp")


def function_source(function: Callable[..., Any]) -> str:
    """The source of a function as :func:`inspect.getsource` gives it, read without a tokenizer.

    The block runs from the ``def`` to the last line its code objects cover, then on over
    lines indented deeper than the ``def`` (comments). ``inspect`` tokenizes every line
    instead: the import-time check took about 140 ms with it. A test holds the two equal
    over every function in aiortc. Raises OSError when the source can't be read.
    """
    code = getattr(function, "__code__", None)
    if code is None:
        raise TypeError(f"{function!r} is not a Python function")
    lines = linecache.getlines(code.co_filename)
    start = code.co_firstlineno - 1
    if not 0 <= start < len(lines):
        raise OSError(f"could not get source code for {code.co_qualname}")
    indent = len(lines[start]) - len(lines[start].lstrip())
    header = start  # past the decorators: a body of only a docstring has no code lines
    while header + 1 < len(lines) and lines[header].lstrip().startswith("@"):
        header += 1
    last = max(_last_line(code), header + 1)
    end = last
    while end < len(lines):
        line = lines[end]
        if line.strip():
            if len(line) - len(line.lstrip()) <= indent:
                break
            last = end + 1
        end += 1
    return "".join(lines[start:last])


def _last_line(code: CodeType) -> int:
    """The last line (1-based) any instruction of ``code`` or its nested code spans."""
    last = max((end for _, end, _, _ in code.co_positions() if end is not None),
               default=code.co_firstlineno)
    for const in code.co_consts:
        if isinstance(const, CodeType):
            last = max(last, _last_line(const))
    return last


def check_compat(*, require_sources: bool = False) -> None:
    """Raise RuntimeError if this aiortc lacks the internals echo-widget uses.

    Reading aiortc's sources is part of the check; when they can't be read (an install
    without ``.py`` files), ``require_sources`` makes that an error, else a warning.
    """
    problems: list[str] = []
    for cls, names in ((RTCRtpReceiver, _RECEIVER_METHODS), (RTCRtpSender, _SENDER_METHODS),
                       (rtcdtlstransport.RTCDtlsTransport, ("_send_rtp",))):
        problems += [f"{cls.__name__}.{name} is missing" for name in names
                     if not callable(getattr(cls, name, None))]
    expected: list[tuple[Callable[..., Any], str]] = [
        (RTCRtpReceiver.__init__, "self.__jitter_buffer = "),
        (RTCRtpReceiver.receive, "self.__decoder_queue,"),
        (rtcrtpreceiver.decoder_worker, "if task is None:"),
        (RTCRtpReceiver._handle_rtp_packet, "self.__jitter_buffer.add(packet)"),
        (RTCRtpReceiver._handle_rtp_packet, "await self._send_rtcp_pli(packet.ssrc)"),
        (RTCRtpReceiver._handle_rtp_packet, "packet._data = depayload("),
        (RTCRtpReceiver._handle_rtp_packet, "remb = self.__remote_bitrate_estimator.add("),
        (RTCRtpReceiver._handle_rtp_packet, "fci=pack_remb_fci(*remb),"),
        (RTCRtpReceiver.__init__, "self.__remote_bitrate_estimator = RemoteBitrateEstimator()"),
        (RTCRtpSender._handle_rtcp_packet, "self._send_keyframe()"),
        (RTCRtpSender._next_encoded_frame, "await self.__track.recv()"),
        (RTCRtpSender._retransmit, "self.__rtp_history.get(sequence_number % RTP_HISTORY_SIZE)"),
        (RTCRtpSender._run_rtcp, "rtp_timestamp=self.__rtp_timestamp,"),
        (RTCRtpSender._run_rtcp, "packet_count=self.__packet_count & 0xFFFFFFFF,"),
        (RTCRtpSender.send, "self.__rtp_header_extensions_map.configure(parameters)"),
        (rtcrtpsender.RTCRtpSender._run_rtp, "self.__ntp_timestamp = clock.current_ntp_time()"),
        (RTCRtpReceiver._handle_rtp_packet, "packet = unwrap_rtx(packet"),
        (RTCRtpReceiver._handle_rtcp_packet, "if isinstance(packet, RtcpSrPacket):"),
        (RTCPeerConnection.setRemoteDescription, "transceiver._codecs = common"),
        (rtcpeerconnection.create_media_description_for_transceiver,
         "codecs=transceiver._codecs,"),
        (RTCRtpSender.__init__, "self._ssrc = random32()"),
        (RTCRtpSender.__init__, "self.__rtp_history: dict[int, RtpPacket] = {}"),
        (rtcdtlstransport.RTCDtlsTransport._send_rtp, "data = self._tx_srtp.protect(data)"),
        (SessionDescription.parse, "direction"),
        (rtcdtlstransport.RTCDtlsTransport._recv_next, "self.__rx_bytes += len(data)"),
        (rtcdtlstransport.RTCDtlsTransport._recv_next, "data = self._rx_srtp.unprotect(data)"),
        (rtcdtlstransport.RTCDtlsTransport._recv_next,
         "await self._handle_rtp_data(data, arrival_time_ms=arrival_time_ms)"),
        (rtcicetransport.RTCIceTransport.__init__, "self._connection = gatherer._connection"),
        (ice.Connection.__init__, "self._protocols: list[StunProtocol] = []"),
        (ice.Connection.data_received, "self._queue.put_nowait((data, component))"),
        (ice.StunProtocol.datagram_received, "self.receiver.data_received(data,"),
        (rtcdtlstransport.RTCDtlsTransport._send_rtp, "if self._state != State.CONNECTED:"),
        (rtcdtlstransport.RTCDtlsTransport._send_rtp, "await self.transport._send(data)"),
        (rtcdtlstransport.RTCDtlsTransport._send_rtp, "self.__tx_bytes += len(data)"),
        (ice.Connection.sendto, "active_pair = self._nominated.get(component)"),
        (ice.StunProtocol.send_data, "self.transport.sendto(data, addr)"),
        (ice.StunProtocol.connection_made, "self.transport = "),
        (RTCRtpReceiver.getStats, "packetsLost=stream.packets_lost,"),
        (RTCRtpSender._handle_rtcp_packet, "roundTripTime=self.__rtt,"),
        (ice.Connection.__init__, "self._check_list: list[CandidatePair] = []"),
        (rtcicetransport.RTCIceGatherer.__init__, "self._remote_candidates_end = False"),
    ]
    unreadable: list[str] = []
    try:
        mirrored = hashlib.sha256(
            function_source(RTCRtpReceiver._handle_rtp_packet).encode()).hexdigest()
    except (OSError, TypeError):
        unreadable.append(RTCRtpReceiver._handle_rtp_packet.__qualname__)
    else:
        if mirrored != _HANDLE_RTP_PACKET_SHA256:
            problems.append("RTCRtpReceiver._handle_rtp_packet changed: LeanHandling mirrors it")
    for function, needle in expected:
        try:
            source = function_source(function)
        except (OSError, TypeError):  # installed without sources
            unreadable.append(function.__qualname__)
            continue
        if needle not in source:
            problems.append(f"{function.__qualname__} no longer contains `{needle}`")
    if problems:
        raise RuntimeError(_broken("; ".join(problems)))
    if unreadable:
        detail = ("echo-widget could not check aiortc's internals (no source for "
                  f"{', '.join(sorted(set(unreadable)))}); the forwarding path may break.")
        if require_sources:
            raise RuntimeError(_broken(detail))
        warnings.warn(detail, RuntimeWarning, stacklevel=2)


def _broken(detail: str) -> str:
    import aiortc

    version: Any = getattr(aiortc, "__version__", "unknown")
    return (
        f"echo-widget does not support aiortc {version}: {detail}. "
        "Install the aiortc range pinned in echo-widget's pyproject.toml."
    )


check_compat()
