"""Every use of aiortc's private API, in one place.

aiortc's receiver always decodes video, and its sender treats a keyframe
request (PLI/FIR) as a hint for its own encoder. Forwarding encoded frames
needs two small hooks instead:

* the receiver's jitter buffer is swapped for :class:`JitterBufferTap`, which
  hands each depayloaded packet to a :class:`~echo_widget.vp8.FrameAssembler`
  and never returns a frame, so aiortc's decoder thread never gets anything to
  decode (and never creates a decoder). Its return value also lets us ask
  aiortc to send a PLI through its own RTCP path.
* the receiver's decoder queue is swapped for one that already holds aiortc's
  stop marker, so the decoder thread aiortc starts exits at once: no idle,
  non-daemon thread per session (which would also keep the interpreter from
  exiting while a session is live).
* the sender's ``_send_keyframe`` is replaced on the instance, so that a PLI or
  FIR from the viewer reaches us.

:func:`check_compat` verifies these names exist; it runs at import, and
``tests/test_aiortc_compat.py`` fails loudly when an aiortc upgrade breaks them.
The tested range is pinned in ``pyproject.toml``.
"""

from __future__ import annotations

import inspect
import queue
from collections.abc import Callable
from typing import Any, Protocol

from aiortc import RTCRtpReceiver, RTCRtpSender, rtcrtpreceiver
from aiortc.rtp import RtpPacket

_JITTER_BUFFER_ATTR = "_RTCRtpReceiver__jitter_buffer"
_DECODER_QUEUE_ATTR = "_RTCRtpReceiver__decoder_queue"


class PacketSink(Protocol):
    """What the tap hands packets to."""

    def on_rtp(self, packet: RtpPacket, data: bytes) -> bool:
        """Take one packet (``data``: its depayloaded VP8); return True to send a PLI now."""


class JitterBufferTap:
    """Stands in for aiortc's ``JitterBuffer`` on a receiver: forwards, never yields frames."""

    __slots__ = ("_sink",)

    def __init__(self, sink: PacketSink) -> None:
        self._sink = sink

    def add(self, packet: RtpPacket) -> tuple[bool, None]:
        """Called by aiortc for each depayloaded packet; returns (send_pli, no_frame)."""
        data: bytes = getattr(packet, "_data", b"")
        return self._sink.on_rtp(packet, data), None


def tap_receiver(receiver: RTCRtpReceiver, sink: PacketSink) -> None:
    """Route a receiver's packets to ``sink`` instead of aiortc's jitter buffer and decoder."""
    for attribute in (_JITTER_BUFFER_ATTR, _DECODER_QUEUE_ATTR):
        if not hasattr(receiver, attribute):
            raise RuntimeError(_broken(f"RTCRtpReceiver has no attribute {attribute}"))
    setattr(receiver, _JITTER_BUFFER_ATTR, JitterBufferTap(sink))
    stopped: queue.Queue[None] = queue.Queue()
    stopped.put(None)  # decoder_worker's stop marker: its thread ends as soon as it starts
    setattr(receiver, _DECODER_QUEUE_ATTR, stopped)


def on_keyframe_request(sender: RTCRtpSender, callback: Callable[[], None]) -> None:
    """Call ``callback`` whenever the remote viewer sends a PLI or FIR for this sender."""
    sender._send_keyframe = callback  # type: ignore[method-assign]


def check_compat() -> None:
    """Raise RuntimeError if this aiortc lacks the internals the forwarding path uses."""
    problems: list[str] = []
    expected: list[tuple[Callable[..., Any], str]] = [
        (RTCRtpReceiver.__init__, "self.__jitter_buffer = "),
        (RTCRtpReceiver.receive, "self.__decoder_queue,"),
        (rtcrtpreceiver.decoder_worker, "if task is None:"),
        (RTCRtpReceiver._handle_rtp_packet, "self.__jitter_buffer.add(packet)"),
        (RTCRtpReceiver._handle_rtp_packet, "await self._send_rtcp_pli(packet.ssrc)"),
        (RTCRtpReceiver._handle_rtp_packet, "packet._data = depayload("),
        (RTCRtpSender._handle_rtcp_packet, "self._send_keyframe()"),
        (RTCRtpSender._next_encoded_frame, "self.__encoder.pack(data)"),
    ]
    for function, needle in expected:
        try:
            source = inspect.getsource(function)
        except (OSError, TypeError):  # installed without sources: nothing to read
            continue
        if needle not in source:
            problems.append(f"{function.__qualname__} no longer contains `{needle}`")
    if problems:
        raise RuntimeError(_broken("; ".join(problems)))


def _broken(detail: str) -> str:
    import aiortc

    version: Any = getattr(aiortc, "__version__", "unknown")
    return (
        f"echo-widget does not support aiortc {version}: {detail}. "
        "Install the aiortc range pinned in echo-widget's pyproject.toml."
    )


check_compat()
