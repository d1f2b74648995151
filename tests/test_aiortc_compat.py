"""The aiortc internals echo-widget relies on: fails loudly when an aiortc upgrade breaks them."""

from __future__ import annotations

import inspect
import tomllib
from importlib.metadata import version
from pathlib import Path
from typing import Any

import aiortc
import pytest
from aiortc import RTCRtpReceiver, RTCRtpSender
from aiortc.rtcdtlstransport import RTCCertificate, RTCDtlsTransport
from aiortc.rtcicetransport import RTCIceGatherer, RTCIceTransport
from aiortc.rtcrtpparameters import (
    RTCRtcpParameters,
    RTCRtpCodecParameters,
    RTCRtpHeaderExtensionParameters,
    RTCRtpSendParameters,
)
from aiortc.rtp import RTP_HISTORY_SIZE, RtpPacket
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from echo_widget import _aiortc_compat
from echo_widget._aiortc_compat import (
    EchoRtpSender,
    JitterBufferTap,
    check_compat,
    tap_receiver,
)


def test_installed_aiortc_is_in_the_pinned_range() -> None:
    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    pin = next(d for d in pyproject["project"]["dependencies"] if d.startswith("aiortc"))
    assert Version(version("aiortc")) in SpecifierSet(pin.removeprefix("aiortc"))


def test_the_internals_are_there() -> None:
    check_compat(require_sources=True)


def test_internals_that_cannot_be_read_are_not_taken_as_checked(
        monkeypatch: pytest.MonkeyPatch) -> None:
    def unreadable(obj: object) -> str:
        raise OSError("could not get source code")

    monkeypatch.setattr(_aiortc_compat.inspect, "getsource", unreadable)
    with pytest.raises(RuntimeError, match="could not check aiortc's internals"):
        check_compat(require_sources=True)
    with pytest.warns(RuntimeWarning, match="could not check aiortc's internals"):
        check_compat()


def test_a_missing_private_method_is_detected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(RTCRtpSender, "_send_keyframe")
    with pytest.raises(RuntimeError, match=r"RTCRtpSender._send_keyframe is missing"):
        check_compat()


def test_a_changed_aiortc_is_detected(monkeypatch: pytest.MonkeyPatch) -> None:
    real = inspect.getsource

    def changed(obj: object) -> str:
        source = real(obj)  # type: ignore[arg-type]
        return source.replace("self._send_keyframe()", "self._request_keyframe()")

    monkeypatch.setattr(_aiortc_compat.inspect, "getsource", changed)
    with pytest.raises(RuntimeError, match=r"does not support aiortc .*_send_keyframe"):
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
