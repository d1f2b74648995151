"""The aiortc internals echo-widget relies on: fails loudly when an aiortc upgrade breaks them."""

from __future__ import annotations

import inspect
from importlib.metadata import version
from pathlib import Path

import aiortc
import pytest
import tomllib
from aiortc import RTCRtpReceiver, RTCRtpSender
from aiortc.rtcdtlstransport import RTCCertificate, RTCDtlsTransport
from aiortc.rtcicetransport import RTCIceGatherer, RTCIceTransport
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from echo_widget import _aiortc_compat
from echo_widget._aiortc_compat import JitterBufferTap, check_compat, tap_receiver


def test_installed_aiortc_is_in_the_pinned_range() -> None:
    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    pin = next(d for d in pyproject["project"]["dependencies"] if d.startswith("aiortc"))
    assert Version(version("aiortc")) in SpecifierSet(pin.removeprefix("aiortc"))


def test_the_internals_are_there() -> None:
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
    from aiortc.rtp import RTCP_PSFB_PLI, RtcpPsfbPacket

    await sender._handle_rtcp_packet(RtcpPsfbPacket(fmt=RTCP_PSFB_PLI, ssrc=1, media_ssrc=2))
    assert requests == [1]
