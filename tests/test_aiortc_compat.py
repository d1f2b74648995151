"""The aiortc internals echo-widget relies on: fails loudly when an aiortc upgrade breaks them."""

from __future__ import annotations

import asyncio
import importlib
import inspect
import pkgutil
import socket
import time
import tomllib
from collections.abc import Callable, Iterator
from importlib.metadata import version
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aioice
import aiortc
import pylibsrtp
import pytest
from aioice.turn import TurnTransport
from aiortc import RTCPeerConnection, RTCRtpReceiver, RTCRtpSender, RTCSessionDescription
from aiortc.rtcdtlstransport import RTCCertificate, RTCDtlsTransport
from aiortc.rtcicetransport import RTCIceGatherer, RTCIceTransport
from aiortc.rtcrtpparameters import (
    RTCRtcpParameters,
    RTCRtpCodecParameters,
    RTCRtpHeaderExtensionParameters,
    RTCRtpSendParameters,
)
from aiortc.rtp import (
    RTCP_PSFB_PLI,
    RTP_HISTORY_SIZE,
    RtcpPacket,
    RtcpPsfbPacket,
    RtcpReceiverInfo,
    RtcpRrPacket,
    RtcpRtpfbPacket,
    RtpPacket,
)
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from echo_widget import _aiortc_compat
from echo_widget._aiortc_compat import (
    EchoRtpSender,
    JitterBufferTap,
    check_compat,
    function_source,
    tap_receiver,
)


@pytest.mark.parametrize("name", ["aiortc", "aioice"])
def test_installed_aiortc_and_aioice_are_in_the_pinned_range(name: str) -> None:
    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    pin = next(d for d in pyproject["project"]["dependencies"] if d.startswith(name + ">"))
    assert Version(version(name)) in SpecifierSet(pin.removeprefix(name))


def test_the_internals_are_there() -> None:
    check_compat(require_sources=True)


def test_internals_that_cannot_be_read_are_not_taken_as_checked(
        monkeypatch: pytest.MonkeyPatch) -> None:
    def unreadable(obj: object) -> str:
        raise OSError("could not get source code")

    monkeypatch.setattr(_aiortc_compat, "function_source", unreadable)
    with pytest.raises(RuntimeError, match="could not check aiortc's internals"):
        check_compat(require_sources=True)
    with pytest.warns(RuntimeWarning, match="could not check aiortc's internals"):
        check_compat()


def _aiortc_functions() -> Iterator[Callable[..., Any]]:
    """Every function and method defined in aiortc's and aioice's modules."""
    for package in (aiortc, aioice):
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            try:
                module = importlib.import_module(info.name)
            except ImportError:  # an optional codec's
                continue
            for value in vars(module).values():
                members = ([*vars(value).values()] if inspect.isclass(value)
                           and value.__module__ == module.__name__ else [value])
                for member in members:
                    function = getattr(member, "__func__", member)
                    if inspect.isfunction(function) and function.__module__ == module.__name__:
                        yield function


def test_the_fast_source_reader_reads_what_inspect_does() -> None:
    """check_compat reads sources without inspect's tokenizer; over all of aiortc, alike."""
    compared = 0
    for function in _aiortc_functions():
        try:
            expected = inspect.getsource(function)
        except OSError:  # generated (dataclass methods)
            continue
        assert function_source(function) == expected, function.__qualname__
        compared += 1
    assert compared > 500


def test_a_missing_private_method_is_detected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(RTCRtpSender, "_send_keyframe")
    with pytest.raises(RuntimeError, match=r"RTCRtpSender._send_keyframe is missing"):
        check_compat()


@pytest.mark.parametrize(("old", "new", "message"), [
    ("self._send_keyframe()", "self._request_keyframe()",
     r"does not support aiortc .*_send_keyframe"),
    # any change at all to the receive step LeanHandling mirrors, even a comment
    ("# keep track of sources", "# keep track of the sources",
     r"_handle_rtp_packet changed: LeanHandling"),
    # FastReceive reads the rest of a burst from the protocol's transport's socket
    ("self.transport = cast(", "self._transport = cast(",
     r"StunProtocol.connection_made no longer contains `self.transport = `"),
    # the session's statistics read the receiver's streams and the sender's round trip
    ("packetsLost=stream.packets_lost,", "packetsLost=stream.lost,",
     r"getStats no longer contains `packetsLost=stream.packets_lost,`"),
    ("roundTripTime=self.__rtt,", "roundTripTime=self.__round_trip,",
     r"_handle_rtcp_packet no longer contains `roundTripTime=self.__rtt,`"),
    # the log line of a session that does not connect reads aioice's checks
    ("self._check_list: list[CandidatePair] = []", "self._checks: list[CandidatePair] = []",
     r"Connection.__init__ no longer contains `self._check_list"),
], ids=["a needle", "the mirrored receive step", "aioice's transport", "packets lost",
        "round trip", "ICE checks"])
def test_a_changed_aiortc_is_detected(monkeypatch: pytest.MonkeyPatch, old: str, new: str,
                                      message: str) -> None:
    real = _aiortc_compat.function_source

    def changed(function: Callable[..., Any]) -> str:
        return real(function).replace(old, new)

    monkeypatch.setattr(_aiortc_compat, "function_source", changed)
    with pytest.raises(RuntimeError, match=message):
        check_compat()


async def test_the_tap_replaces_the_jitter_buffer_and_the_sender_hook_works() -> None:
    transport = RTCDtlsTransport(RTCIceTransport(RTCIceGatherer()),
                                 [RTCCertificate.generateCertificate()])
    receiver = RTCRtpReceiver("video", transport)
    seen: list[bytes] = []

    class Sink:
        def on_rtp(self, packet: object, data: bytes) -> bool:
            seen.append(data)
            return True

    tap_receiver(receiver, Sink())
    tap = receiver._RTCRtpReceiver__jitter_buffer  # type: ignore[attr-defined]
    assert isinstance(tap, JitterBufferTap)
    packet = aiortc.rtp.RtpPacket()
    packet._data = b"frame"  # type: ignore[attr-defined]
    assert tap.add(packet) == (True, None)
    assert seen == [b"frame"]

    sender = RTCRtpSender("video", transport)
    requests: list[int] = []
    _aiortc_compat.on_keyframe_request(sender, lambda: requests.append(1))
    from aiortc.rtp import RTCP_PSFB_FIR, RTCP_PSFB_PLI, RtcpPsfbPacket

    await sender._handle_rtcp_packet(RtcpPsfbPacket(fmt=RTCP_PSFB_PLI, ssrc=1, media_ssrc=2))
    assert requests == [1]
    # a viewer may ask with a full intra request instead (RFC 5104): the same hook
    await sender._handle_rtcp_packet(RtcpPsfbPacket(fmt=RTCP_PSFB_FIR, ssrc=1, media_ssrc=2,
                                                    fci=b"\x00\x00\x00\x02\x01\x00\x00\x00"))
    assert requests == [1, 1]


async def test_the_remb_cap_goes_out_from_the_first_packet_then_once_a_second() -> None:
    """aiortc's receiver sends what the cap gives it: a REMB on a stream's first packet (the
    browser trusts an early one), again once a second or for a new SSRC, never more."""
    transport = RTCDtlsTransport(RTCIceTransport(RTCIceGatherer()),
                                 [RTCCertificate.generateCertificate()])
    receiver = RTCRtpReceiver("video", transport)
    receiver._set_rtcp_ssrc(1234)
    sent: list[object] = []

    async def send_rtcp(packet: object) -> None:
        sent.append(packet)

    receiver._send_rtcp = send_rtcp  # type: ignore[method-assign]
    cap = _aiortc_compat.cap_remb(receiver, 2_000_000)
    assert receiver._RTCRtpReceiver__remote_bitrate_estimator is cap  # type: ignore[attr-defined]
    from aiortc.rtp import RTCP_PSFB_APP, RtcpPsfbPacket, unpack_remb_fci

    rembs: list[tuple[int, tuple[int, list[int]]]] = []
    for arrival_ms, ssrc in ((0, 5), (10, 5), (999, 5), (1000, 5), (1200, 6), (1300, 6),
                             (2199, 6), (2200, 5)):
        packet = aiortc.rtp.RtpPacket(payload_type=96, ssrc=ssrc)
        packet.extensions.abs_send_time = arrival_ms
        await receiver._handle_rtp_packet(packet, arrival_ms)
        rembs += [(arrival_ms, unpack_remb_fci(p.fci)) for p in sent[len(rembs):]
                  if isinstance(p, RtcpPsfbPacket) and p.fmt == RTCP_PSFB_APP]
    assert rembs == [(0, (2_000_000, [5])), (1000, (2_000_000, [5])),
                     (1200, (2_000_000, [5, 6])), (2200, (2_000_000, [5, 6]))]
    with pytest.raises(ValueError, match="video"):
        _aiortc_compat.cap_remb(RTCRtpReceiver("audio", transport), 2_000_000)


async def test_handling_that_has_to_wait_is_finished_by_a_task_and_can_be_cancelled() -> None:
    """The fast path starts a packet's handling by hand; should it wait on something, the
    rest runs in a task with the value the wait gave, and a cancellation reaches it."""
    loop = asyncio.get_running_loop()
    gate: asyncio.Future[int] = loop.create_future()
    steps: list[object] = []

    async def handling() -> str:
        steps.append("started")
        steps.append(await gate)
        return "done"

    coroutine = handling()
    waiting = coroutine.send(None)  # as FastReceive does
    assert steps == ["started"]
    assert waiting is gate
    task = asyncio.ensure_future(_aiortc_compat._Resumed(coroutine, waiting))
    await asyncio.sleep(0)
    gate.set_result(7)
    assert await task == "done"
    assert steps == ["started", 7]

    stopped: list[str] = []

    async def busy() -> None:
        try:
            while True:  # noqa: ASYNC110 - yields without a future: a cancel is thrown in
                await asyncio.sleep(0)
        except asyncio.CancelledError:
            stopped.append("cancelled")
            raise

    coroutine2 = busy()
    task = asyncio.ensure_future(_aiortc_compat._Resumed(coroutine2, coroutine2.send(None)))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 2)
    assert stopped == ["cancelled"]


def _video_receiver() -> RTCRtpReceiver:
    """A video receiver for VP8 (payload type 96) on SSRC 1111, RTX (97) on SSRC 2222."""
    transport = RTCDtlsTransport(RTCIceTransport(RTCIceGatherer()),
                                 [RTCCertificate.generateCertificate()])
    receiver = RTCRtpReceiver("video", transport)
    internals: Any = receiver
    internals._RTCRtpReceiver__codecs.update({
        96: RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96),
        97: RTCRtpCodecParameters(mimeType="video/rtx", clockRate=90000, payloadType=97,
                                  parameters={"apt": 96})})
    internals._RTCRtpReceiver__rtx_ssrc[2222] = 1111
    return receiver


async def _handled(lean: bool) -> tuple[list[tuple[int, int, int, bytes]], list[bytes],
                                          dict[int, tuple[int, int | None, int, int]]]:
    """One packet sequence through a tapped video receiver: what was forwarded, the RTCP
    sent, and the receiver-report statistics per SSRC."""
    receiver = _video_receiver()
    internals: Any = receiver
    receiver._set_rtcp_ssrc(1)
    rtcp: list[bytes] = []

    async def send_rtcp(packet: object) -> None:
        rtcp.append(bytes(packet))  # type: ignore[call-overload]

    receiver._send_rtcp = send_rtcp  # type: ignore[method-assign]
    _aiortc_compat.cap_remb(receiver, 1_000_000)
    forwarded: list[tuple[int, int, int, bytes]] = []

    class Sink:
        def on_rtp(self, packet: RtpPacket, data: bytes) -> bool:
            return packet.sequence_number == 3  # ask for a PLI once

    async def forward(packet: RtpPacket) -> None:
        forwarded.append((packet.ssrc, packet.sequence_number, packet.payload_type,
                          packet._data))  # type: ignore[attr-defined]

    tap_receiver(receiver, Sink(), forward, lean=lean)

    def rtp(seq: int, payload: bytes, pt: int = 96, ssrc: int = 1111) -> RtpPacket:
        packet = RtpPacket(payload_type=pt, sequence_number=seq, timestamp=seq * 3000,
                           ssrc=ssrc, payload=payload)
        packet.extensions.abs_send_time = seq << 10
        return packet

    sequence = [rtp(1, b"\x10one"), rtp(2, b"\x00two"), rtp(3, b"\x10three"),
                rtp(5, b"\x10five"),  # 4 is lost: a NACK
                rtp(7, b"\x00\x04\x10four", pt=97, ssrc=2222),  # its retransmission
                rtp(6, b"\x10six", pt=100),  # an unknown payload type: dropped
                rtp(8, b""),  # padding only
                rtp(9, b"\x80"),  # a VP8 descriptor cut short: not depayloaded
                rtp(7, b"\x00", pt=97, ssrc=2222),  # RTX shorter than its header: dropped
                rtp(10, b"\x10ten", ssrc=3333)]  # a new SSRC
    for arrival_ms, packet in enumerate(sequence):
        await receiver._handle_rtp_packet(packet, arrival_ms * 400)
    streams = {ssrc: (s.packets_received, s.max_seq, s.cycles, s.base_seq)
               for ssrc, s in internals._RTCRtpReceiver__remote_streams.items()}
    return forwarded, rtcp, streams


async def test_the_lean_handling_does_what_aiortc_does() -> None:
    """LeanHandling mirrors aiortc's _handle_rtp_packet on a tapped receiver: the same packets
    forwarded with the same depayloaded data, the same RTCP (REMB, NACK, PLI) and the same
    receiver-report statistics, over loss, RTX, padding and bad packets."""
    usual = await _handled(lean=False)
    lean = await _handled(lean=True)
    assert lean == usual
    forwarded, rtcp, streams = lean
    assert [seq for _, seq, _, _ in forwarded] == [1, 2, 3, 5, 4, 8, 10]
    assert forwarded[4] == (1111, 4, 96, b"four")
    feedback = [packet for data in rtcp for packet in RtcpPacket.parse(data)]
    assert [p.lost for p in feedback if isinstance(p, RtcpRtpfbPacket)] == [[4], [6, 7]]
    assert [p.media_ssrc for p in feedback
            if isinstance(p, RtcpPsfbPacket) and p.fmt == RTCP_PSFB_PLI] == [1111]
    assert len([p for p in feedback if isinstance(p, RtcpPsfbPacket) and p.fmt == 15]) == 5
    assert set(streams) == {1111, 2222, 3333}
    with pytest.raises(ValueError, match="forward"):
        tap_receiver(RTCRtpReceiver("video", RTCDtlsTransport(
            RTCIceTransport(RTCIceGatherer()), [RTCCertificate.generateCertificate()])),
            JitterBufferTap, lean=True)  # type: ignore[arg-type]


class _FakeSrtp:
    def unprotect(self, data: bytes) -> bytes:
        if data.endswith(b"bad"):
            raise pylibsrtp.Error("no")
        return data[:-1]  # "decrypted"


async def test_fast_receive_takes_media_and_leaves_everything_else_to_aioice() -> None:
    """Which datagrams take the fast path: SRTP media once SRTP is up, when aioice's queue is
    empty and nothing is pending; STUN, DTLS, RTCP and anything queued go the usual way, in
    order. A handling that has to wait is finished by a task; closing restores aioice."""
    usual: list[bytes] = []
    handled: list[bytes] = []
    gate = asyncio.get_running_loop().create_future()

    class Protocol:
        def datagram_received(self, data: bytes, addr: object) -> None:
            usual.append(data)

    async def handle_rtp_data(data: bytes, arrival_time_ms: int) -> None:
        handled.append(data)
        if data.startswith(b"\x80\x60wait"):
            await gate
            handled.append(b"resumed")

    protocol = Protocol()
    connection = SimpleNamespace(_queue=asyncio.Queue(), _protocols=[protocol])
    dtls = SimpleNamespace(transport=SimpleNamespace(_connection=connection), _rx_srtp=None,
                           _handle_rtp_data=handle_rtp_data, _RTCDtlsTransport__rx_bytes=0,
                           _RTCDtlsTransport__rx_packets=0)
    fast = _aiortc_compat.FastReceive(dtls)  # type: ignore[arg-type]
    media = b"\x80\x60" + b"m" * 20 + b"!"
    protocol.datagram_received(media, None)
    assert usual == [media]  # SRTP is not up yet
    dtls._rx_srtp = _FakeSrtp()
    protocol.datagram_received(media, None)
    assert handled == [media[:-1]]
    assert fast.packets == 1
    assert dtls._RTCDtlsTransport__rx_packets == 1
    assert dtls._RTCDtlsTransport__rx_bytes == len(media)
    stun = b"\x00\x01" + b"s" * 30
    dtls_record = b"\x16\xfe\xfd" + b"d" * 30
    rtcp = b"\x80\xc8" + b"r" * 30  # a sender report
    short = b"\x80\x60"
    for data in (stun, dtls_record, rtcp, short):
        protocol.datagram_received(data, None)
    assert usual == [media, stun, dtls_record, rtcp, short]
    connection._queue.put_nowait((b"queued", 1))
    protocol.datagram_received(media, None)
    assert usual[-1] == media  # behind what aioice holds: in order
    connection._queue.get_nowait()
    protocol.datagram_received(b"\x80\x60" + b"m" * 20 + b"bad", None)  # does not decrypt
    assert fast.packets == 1
    waiting = b"\x80\x60wait" + b"w" * 20 + b"!"
    protocol.datagram_received(waiting, None)
    assert handled[-1] == waiting[:-1]
    before = len(usual)
    protocol.datagram_received(media, None)
    assert usual[before:] == [media]  # while one is pending, the usual way
    gate.set_result(None)
    for _ in range(3):  # the task's step, then its done callback
        await asyncio.sleep(0)
    assert handled[-1] == b"resumed"
    assert not fast._pending
    protocol.datagram_received(media, None)
    assert handled[-1] == media[:-1]
    # closing: aioice's method again, and a handling still waiting is cancelled
    gate = asyncio.get_running_loop().create_future()
    protocol.datagram_received(waiting, None)
    assert fast._pending
    await fast.aclose()
    assert not fast._pending
    assert "datagram_received" not in vars(protocol)
    protocol.datagram_received(media, None)
    assert usual[-1] == media


def _fast_receive_on(sock: Any) -> tuple[Any, list[bytes], list[bytes], list[OSError]]:
    """A FastReceive over one fake aioice protocol whose transport's socket dups to ``sock``
    (None: the transport has no socket, as aioice's TURN transport); what it hands aiortc
    (decrypted), what goes aioice's usual way, and the errors reported."""
    usual: list[bytes] = []
    handled: list[bytes] = []
    errors: list[OSError] = []

    class Protocol:
        transport = SimpleNamespace(get_extra_info=lambda name: SimpleNamespace(
            dup=lambda: sock) if name == "socket" and sock is not None else None)

        def datagram_received(self, data: bytes, addr: object) -> None:
            usual.append(data)

        def error_received(self, exc: OSError) -> None:
            errors.append(exc)

    async def handle_rtp_data(data: bytes, arrival_time_ms: int) -> None:
        handled.append(data)

    protocol = Protocol()
    connection = SimpleNamespace(_queue=asyncio.Queue(), _protocols=[protocol])
    dtls = SimpleNamespace(transport=SimpleNamespace(_connection=connection),
                           _rx_srtp=_FakeSrtp(), _handle_rtp_data=handle_rtp_data,
                           _RTCDtlsTransport__rx_bytes=0, _RTCDtlsTransport__rx_packets=0)
    return (_aiortc_compat.FastReceive(dtls),  # type: ignore[arg-type]
            handled, usual, errors)


async def test_fast_receive_reads_a_burst_on_one_wake_up() -> None:
    """After the datagram asyncio read, the callback reads what else waits in the same socket,
    up to READS_PER_WAKEUP in all, each taking its own way (media fast, the rest aioice's);
    closing closes its descriptor of the socket."""
    assert _aiortc_compat.READS_PER_WAKEUP == 16
    ours, peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    ours.setblocking(False)
    with ours, peer:
        fast, handled, usual, errors = _fast_receive_on(ours.dup())
        media = [b"\x80\x60" + bytes([i]) * 20 + b"!" for i in range(24)]
        stun = b"\x00\x01" + b"s" * 30
        for data in (*media[1:10], stun, *media[10:]):
            peer.send(data)
        protocol = fast._protocols[0]
        protocol.datagram_received(media[0], None)  # as asyncio hands it the first
        assert handled == [m[:-1] for m in media[:15]]
        assert usual == [stun]
        protocol.datagram_received(media[0], None)
        assert handled[15:] == [m[:-1] for m in (media[0], *media[15:])]  # the rest, then empty
        assert fast.packets == 25
        assert not errors
        dup = fast._sockets[0]
        await fast.aclose()
        assert dup.fileno() == -1
        peer.send(media[0])
        assert ours.recv(100) == media[0]  # the socket itself is aioice's, still open


async def test_fast_receive_over_turn_reads_one_datagram_per_wake_up() -> None:
    """A relayed candidate's transport (aioice's TurnTransport) has no socket: the datagram
    asyncio's read handed over is taken, and nothing else is read."""
    fast, handled, usual, errors = _fast_receive_on(None)
    media = b"\x80\x60" + b"m" * 20 + b"!"
    fast._protocols[0].datagram_received(media, None)
    assert handled == [media[:-1]]
    assert not usual
    assert not errors
    assert not fast._sockets
    await fast.aclose()


def test_aioices_turn_transport_has_no_socket() -> None:
    """What the test above stands for: aioice's TURN transport gives no socket."""
    assert TurnTransport(SimpleNamespace()).get_extra_info("socket") is None  # type: ignore[arg-type]


async def test_fast_receive_reports_a_socket_error_as_asyncio_would() -> None:
    """An error reading the rest of a burst ends the reads and goes to the protocol's
    ``error_received``, as asyncio's own read does."""
    class Failing:
        def setblocking(self, flag: bool) -> None:
            pass

        def recvfrom(self, size: int) -> tuple[bytes, object]:
            raise ConnectionRefusedError("refused")

        def close(self) -> None:
            pass

    fast, handled, _, errors = _fast_receive_on(Failing())
    fast._protocols[0].datagram_received(b"\x80\x60" + b"m" * 20 + b"!", None)
    assert len(handled) == 1
    assert [type(e) for e in errors] == [ConnectionRefusedError]
    await fast.aclose()


def test_the_lean_vp8_depayload_is_aiortcs() -> None:
    """Every payload descriptor shape (RFC 7741: with or without extended bits, a 7 or 15-bit
    picture ID, TL0PICIDX, T/K), whole and cut at each byte: the same data, or a ValueError
    where aiortc raises one."""
    from itertools import product

    from aiortc.codecs.vpx import vp8_depayload

    payloads = [b""]
    for x, i, long_id, l_bit, t, k in product((0, 1), repeat=6):
        descriptor = bytes([0x90 if x else 0x10])
        if x:
            descriptor += bytes([i << 7 | l_bit << 6 | t << 5 | k << 4])
            if i:
                descriptor += b"\x81\x23" if long_id else b"\x23"
            if l_bit:
                descriptor += b"\x07"
            if t or k:
                descriptor += b"\xe5"
        whole = descriptor + b"\x9d\x01\x2a-vp8"
        payloads += [whole[:n] for n in range(1, len(whole) + 1)]
    outcomes = {"data": 0, "error": 0}
    for payload in payloads:
        try:
            expected: bytes | type[ValueError] = vp8_depayload(payload)
        except ValueError:
            expected = ValueError
        try:
            got: bytes | type[ValueError] = _aiortc_compat.vp8_depayload_lean(payload)
        except ValueError:
            got = ValueError
        assert got == expected, payload
        outcomes["error" if expected is ValueError else "data"] += 1
    assert outcomes["data"] > 100
    assert outcomes["error"] > 30


def test_the_fast_clocks_read_what_aiortcs_clock_reads() -> None:
    from aiortc import clock

    before_ms, before_ntp = clock.current_ms(), clock.current_ntp_time()
    fast_ms, fast_ntp = _aiortc_compat.ntp_ms(), _aiortc_compat.ntp_time()
    after_ms, after_ntp = clock.current_ms(), clock.current_ntp_time()
    assert before_ms <= fast_ms <= after_ms
    assert before_ntp <= fast_ntp + (1 << 32) // 1_000_000  # aiortc's has microseconds
    assert fast_ntp <= after_ntp + (1 << 32) // 1_000_000
    assert after_ntp - before_ntp < 1 << 32  # (the test ran within a second)


def _vp8_parameters(extensions: list[RTCRtpHeaderExtensionParameters]) -> RTCRtpSendParameters:
    return RTCRtpSendParameters(
        codecs=[RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96),
                RTCRtpCodecParameters(mimeType="video/rtx", clockRate=90000, payloadType=97,
                                      parameters={"apt": 96})],
        headerExtensions=extensions, muxId="0", rtcp=RTCRtcpParameters(cname="test"))


@pytest.mark.parametrize("extensions", [
    [RTCRtpHeaderExtensionParameters(id=1, uri="urn:ietf:params:rtp-hdrext:sdes:mid"),
     RTCRtpHeaderExtensionParameters(
         id=3, uri="http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time")],
    [RTCRtpHeaderExtensionParameters(
        id=14, uri="http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time")],
    [RTCRtpHeaderExtensionParameters(id=9, uri="urn:ietf:params:rtp-hdrext:sdes:mid")],
    [],
], ids=["mid+abs-send-time", "abs-send-time", "mid", "none"])
async def test_the_echo_sender_writes_what_aiortc_would(
        extensions: list[RTCRtpHeaderExtensionParameters]) -> None:
    """EchoRtpSender's packets are byte for byte aiortc's, go into its NACK history, and
    keep its sender-report counters; with the transport down they are dropped quietly."""
    transport = RTCDtlsTransport(RTCIceTransport(RTCIceGatherer()),
                                 [RTCCertificate.generateCertificate()])
    sender = RTCRtpSender("video", transport)
    echo = EchoRtpSender(sender)
    sender.replaceTrack(echo.track)
    assert not echo.ready
    await sender.send(_vp8_parameters(extensions))
    assert echo.ready
    internals: Any = sender
    for marker, sequence_number, timestamp, abs_send_time in [
            (False, 0, 0, 0), (True, 65535, 2**32 - 1, 0xFFFFFF), (True, 1234, 567890, 0x0A0B0C)]:
        expected = RtpPacket(96, int(marker), sequence_number, timestamp, sender._ssrc, b"vp8")
        expected.extensions.mid = "0"
        expected.extensions.abs_send_time = abs_send_time
        wanted = expected.serialize(internals._RTCRtpSender__rtp_header_extensions_map)
        assert echo.serialize(b"vp8", marker, sequence_number, timestamp,
                              abs_send_time) == wanted
    await echo.send_rtp(b"payload", True, 4321, 99, 0x010203)  # not connected: dropped
    history = internals._RTCRtpSender__rtp_history[4321 % RTP_HISTORY_SIZE]
    assert (history.sequence_number, history.payload) == (4321, b"payload")
    assert internals._RTCRtpSender__packet_count == 0
    echo.track.stop()
    await sender.stop()


async def test_packets_lost_counts_the_media_stream_not_its_retransmissions() -> None:
    """The loss is the media SSRC's, a packet recovered by RTX still counted; aiortc's
    getStats reports one inbound-rtp per receiver, RTX's once a retransmission came."""
    receiver = _video_receiver()

    async def forward(packet: RtpPacket) -> None:
        pass

    class Sink:
        def on_rtp(self, packet: RtpPacket, data: bytes) -> bool:
            return False

    tap_receiver(receiver, Sink(), forward)
    for seq in (1, 2, 3, 5, 6, 8, 9):  # 4 and 7 lost
        await receiver._handle_rtp_packet(RtpPacket(payload_type=96, sequence_number=seq,
                                                    ssrc=1111, payload=b"\x10x"), seq)
    assert _aiortc_compat.packets_lost(receiver) == 2
    await receiver._handle_rtp_packet(RtpPacket(  # 4 comes back by RTX
        payload_type=97, sequence_number=500, ssrc=2222, payload=b"\x00\x04\x10x"), 10)
    assert _aiortc_compat.packets_lost(receiver) == 2
    [inbound] = [s for s in (await receiver.getStats()).values() if s.type == "inbound-rtp"]
    assert (inbound.ssrc, inbound.packetsLost) == (2222, 0)


async def test_round_trip_time_is_what_getstats_reports() -> None:
    transport = RTCDtlsTransport(RTCIceTransport(RTCIceGatherer()),
                                 [RTCCertificate.generateCertificate()])
    sender = RTCRtpSender("video", transport)
    assert _aiortc_compat.round_trip_time(sender) is None
    internals: Any = sender
    internals._RTCRtpSender__lsr = 1234
    internals._RTCRtpSender__lsr_time = time.time() - 0.05
    await sender._handle_rtcp_packet(RtcpRrPacket(ssrc=9, reports=[RtcpReceiverInfo(
        ssrc=sender._ssrc, fraction_lost=0, packets_lost=0, highest_sequence=1, jitter=0,
        lsr=1234, dlsr=65536 // 50)]))
    rtt = _aiortc_compat.round_trip_time(sender)
    assert rtt is not None
    assert 0.02 < rtt < 1
    [remote] = [s for s in (await sender.getStats()).values() if s.type == "remote-inbound-rtp"]
    assert remote.roundTripTime == rtt


async def test_the_ice_summary_says_what_each_side_sent_and_how_the_checks_went() -> None:
    """Before the browser's candidates arrive, and once a pair is checked and connected."""
    offerer, answerer = RTCPeerConnection(), RTCPeerConnection()
    offerer.addTransceiver("video")
    await offerer.setLocalDescription(await offerer.createOffer())
    sdp = offerer.localDescription.sdp
    lines = sdp.splitlines(keepends=True)
    candidates = [line for line in lines if line.startswith("a=candidate:")]
    assert candidates
    # the offer without its candidates, as a trickling browser's would arrive
    trickled = "".join(line for line in lines if not line.startswith(("a=candidate:",
                                                                         "a=end-of-")))
    await answerer.setRemoteDescription(RTCSessionDescription(trickled, "offer"))
    await answerer.setLocalDescription(await answerer.createAnswer())
    await asyncio.sleep(0.2)  # aiortc starts ICE in a task of its own
    before = _aiortc_compat.ice_summary(answerer)
    assert before.startswith(
        "signaling stable; ICE checking, DTLS new; local candidates [host udp "), before
    assert "remote candidates [] (end not signalled); checks none" in before, before
    await offerer.setRemoteDescription(answerer.localDescription)
    for line in candidates:
        candidate = _aiortc_compat.parse_candidate(line.strip().removeprefix("a="))
        candidate.sdpMid, candidate.sdpMLineIndex = "0", 0
        await answerer.addIceCandidate(candidate)
    await answerer.addIceCandidate(None)
    deadline = asyncio.get_running_loop().time() + 10
    while answerer.connectionState != "connected":
        assert asyncio.get_running_loop().time() < deadline, _aiortc_compat.ice_summary(answerer)
        await asyncio.sleep(0.05)
    after = _aiortc_compat.ice_summary(answerer)
    assert "ICE completed, DTLS connected" in after, after
    host, port = candidates[0].split()[4:6]
    assert f"remote candidates [host udp {host}:{port}" in after, after
    assert "(complete); checks succeeded " in after, after
    await offerer.close()
    await answerer.close()
