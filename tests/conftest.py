"""Shared fixtures: test clips, the network-namespace guard, and an aiortc client peer."""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import subprocess
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.rtp import AnyRtcpPacket, RtpPacket

from echo_widget import EchoWidget
from echo_widget._aiortc_compat import on_keyframe_request, tap_receiver
from echo_widget.media.vp8 import EncodedFrame, FrameAssembler, is_keyframe
from echo_widget.testing import AvClip, PacedTrack, make_av_clip, make_clip

FFMPEG = shutil.which("ffmpeg")
FFPROBE = shutil.which("ffprobe")


@pytest.fixture(scope="session")
def vp8_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(tmp_path_factory.mktemp("clips") / "clip.webm")


@pytest.fixture(scope="session")
def av_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """VP8 + Opus, 6 s: a white frame and a tone burst's onset together, once a second."""
    return make_av_clip(tmp_path_factory.mktemp("clips") / "av.webm")


@pytest.fixture
def peer_network() -> None:
    """Peer connections only inside a private loopback-only namespace (tools/netns-run)."""
    if os.environ.get("ECHO_NETNS") != "1":
        pytest.fail("This test opens peer connections: run the suite through tools/netns-run "
                    "(a private network namespace with only loopback).")


def ffprobe_video(path: Path) -> dict[str, Any]:
    """codec, size and packet count of a recording's video stream, as ffprobe reads them."""
    assert FFPROBE, "ffprobe is needed (apt install ffmpeg)"
    import json

    out = subprocess.run(
        [FFPROBE, "-v", "error", "-count_packets", "-select_streams", "v:0", "-show_entries",
         "stream=codec_name,width,height,nb_read_packets", "-of", "json", str(path)],
        check=True, capture_output=True, text=True,
    ).stdout
    streams = json.loads(out)["streams"]
    assert streams, f"ffprobe found no video stream in {path}"
    stream: dict[str, Any] = streams[0]
    return stream


def decode_errors(path: Path) -> str:
    """What ffmpeg prints when it decodes the whole file (empty: it decodes cleanly). Frames
    keep their own times, as a player shows them: a browser's variable frame rate (a frame
    refreshed right after another, for a keyframe request) is no error."""
    assert FFMPEG
    result = subprocess.run([FFMPEG, "-v", "error", "-i", str(path), "-fps_mode", "passthrough",
                             "-enc_time_base:v", "-1", "-f", "null", "-"],
                            capture_output=True, text=True, check=False)
    status = "" if result.returncode == 0 else f" (exit {result.returncode})"
    return result.stderr.strip() + status


def clip_frames(path: Path) -> list[bytes]:
    """The encoded VP8 frames of a clip, in order, straight from the container."""
    import av

    with av.open(str(path)) as container:
        return [bytes(p) for p in container.demux(video=0) if p.size]


def recorded_positions(path: Path, sent: list[bytes], fps: int = 30) -> list[int]:
    """Where each frame of a recording stands in the sent stream (by its time in the file,
    which starts at the first recorded frame ``sent[0]`` stood for), checked byte for byte;
    and every frame follows the one before it or is a keyframe: VP8 has no frame numbers,
    so a decoder can't see a delta frame written after a gap."""
    import itertools

    import av

    positions: list[int] = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        for packet in container.demux(stream):
            if not packet.size or packet.pts is None:
                continue
            index = round(float(packet.pts * stream.time_base) * fps)
            assert bytes(packet) == sent[index], (
                f"recorded frame {len(positions)} is not the frame sent at {index}")
            positions.append(index)
    for previous, index in itertools.pairwise(positions):
        assert index == previous + 1 or is_keyframe(sent[index]), (
            f"after a gap ({previous} -> {index}) the recorder wrote a delta frame")
    return positions


class Signaling:
    """Stands in for the widget's comm: captures what the kernel side sends."""

    def __init__(self, widget: EchoWidget) -> None:
        self.widget = widget
        self.sent: list[dict[str, Any]] = []
        self._changed = asyncio.Event()
        widget.send = self._capture  # type: ignore[method-assign]

    def _capture(self, content: dict[str, Any], buffers: Any = None) -> None:
        self.sent.append(content)
        self._changed.set()

    def deliver(self, content: Any) -> None:
        """Hand a message to the widget as the browser's comm would."""
        self.widget._handle_custom_msg(content, [])

    async def wait_for(self, kind: str, session: str | None, timeout: float = 5) -> dict[str, Any]:
        async def find() -> dict[str, Any]:
            while True:
                for message in self.sent:
                    if message.get("type") == kind and message.get("session") == session:
                        return message
                self._changed.clear()
                await self._changed.wait()

        return await asyncio.wait_for(find(), timeout)

    def of(self, session: str | None) -> list[dict[str, Any]]:
        return [m for m in self.sent if m.get("session") == session]


class EchoClient:
    """A browser stand-in: an aiortc peer that sends a VP8 file and captures the echo, encoded.

    With ``loop=True`` it sends the clip over and over until closed. With ``processed=True``
    its offer has a second video m-line (recvonly), as the view's does, and the processed
    video that comes on it is collected in ``processed`` (encoded frames). With ``keep``,
    only the last ``keep`` frames of each are kept (a long run then measures the kernel's
    memory, not this client's); ``echo_count`` and ``processed_count`` count them all.
    """

    def __init__(self, signaling: Signaling, clip: Path, session: str, *,
                 loop: bool = False, processed: bool = False, keep: int | None = None,
                 audio: bool = False, audio_loss: float = 0.0) -> None:
        self.signaling = signaling
        self.session = session
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.av: AvClip | None = AvClip(clip, loop=loop) if audio else None
        self.track: PacedTrack | MediaStreamTrack = (
            self.av.video if self.av is not None else PacedTrack(clip, loop=loop))
        self.transceiver = self.pc.addTransceiver(self.track, direction="sendrecv")
        self.transceiver.setCodecPreferences([
            c for c in RTCRtpSender.getCapabilities("video").codecs
            if c.mimeType.lower() in ("video/vp8", "video/rtx")
        ])
        self.echoed: list[EncodedFrame] | deque[EncodedFrame] = (
            [] if keep is None else deque(maxlen=keep))
        self.echo_count = 0
        self.processed_count = 0
        self.echo_packets = 0
        self.echo_timestamps: set[int] = set()
        self.last_echo_timestamp: int | None = None
        self.echo_payloads: list[tuple[int, bytes]] | None = None
        """(SSRC, payload) of each echoed packet, once set to a list."""
        self.keyframe_requests: list[float] = []
        self.rtcp_in: list[AnyRtcpPacket] | deque[AnyRtcpPacket] = (
            [] if keep is None else deque(maxlen=keep))
        """RTCP from the kernel: reports on the echo, and feedback on what this client sends
        (with ``keep``, the latest only, as the frames)."""
        self.rtcp_out: list[AnyRtcpPacket] | deque[AnyRtcpPacket] = (
            [] if keep is None else deque(maxlen=keep))
        """RTCP this client's receiver sent about the echo (RR, NACK, PLI, REMB)."""
        self._send_pli = False
        self._assembler = FrameAssembler(self._on_echo_frame, lambda: None)
        tap_receiver(self.transceiver.receiver, self)
        self.processed: list[EncodedFrame] | deque[EncodedFrame] = (
            [] if keep is None else deque(maxlen=keep))
        if processed:
            second = self.pc.addTransceiver("video", direction="recvonly")
            second.setCodecPreferences([
                c for c in RTCRtpSender.getCapabilities("video").codecs
                if c.mimeType.lower() in ("video/vp8", "video/rtx")])
            tap_receiver(second.receiver, _Collect(self._on_processed_frame))
        self.echo_audio: list[RtpPacket] = []
        """Echoed audio packets, as they came."""
        self.audio_sent: list[tuple[int, bytes]] = []
        """(RTP timestamp, payload) of each audio packet that left this client (not lost)."""
        self.audio_lost = 0
        if self.av is not None:
            self.audio_transceiver = self.pc.addTransceiver(self.av.audio, direction="sendrecv")
            self.audio_transceiver.setCodecPreferences([
                c for c in RTCRtpSender.getCapabilities("audio").codecs
                if c.mimeType.lower() == "audio/opus"])
            tap_receiver(self.audio_transceiver.receiver, _KeepPackets(self.echo_audio))
            self._loss = random.Random(7)
            self._audio_loss = audio_loss
        on_keyframe_request(self.transceiver.sender, self._on_keyframe_request)
        receiver, sender = self.transceiver.receiver, self.transceiver.sender
        for peer in (receiver, sender):
            peer._handle_rtcp_packet = self._spy(  # type: ignore[method-assign]
                peer._handle_rtcp_packet, self.rtcp_in)
        receiver._send_rtcp = self._spy(  # type: ignore[method-assign]
            receiver._send_rtcp, self.rtcp_out)

    def _on_echo_frame(self, frame: EncodedFrame) -> None:
        self.echoed.append(frame)
        self.echo_count += 1

    def _on_processed_frame(self, frame: EncodedFrame) -> None:
        self.processed.append(frame)
        self.processed_count += 1

    @staticmethod
    def _spy(method: Any, seen: list[AnyRtcpPacket] | deque[AnyRtcpPacket]) -> Any:
        async def spy(packet: AnyRtcpPacket) -> None:
            seen.append(packet)
            await method(packet)
        return spy

    # PacketSink for the echo coming back
    def on_rtp(self, packet: RtpPacket, data: bytes) -> bool:
        self.echo_packets += 1
        self.echo_timestamps.add(packet.timestamp)
        self.last_echo_timestamp = packet.timestamp
        if self.echo_payloads is not None:
            self.echo_payloads.append((packet.ssrc, packet.payload))
        self._assembler.add(packet.sequence_number, packet.timestamp, bool(packet.marker),
                            packet.payload, data)
        send, self._send_pli = self._send_pli, False
        return send

    def request_keyframe_from_kernel(self) -> None:
        """Send a PLI for the echo track with the next echoed packet."""
        self._send_pli = True

    def _on_keyframe_request(self) -> None:
        self.keyframe_requests.append(asyncio.get_running_loop().time())

    def _watch_audio_sent(self) -> None:
        """Note each audio packet as it leaves (plain RTP, below SRTP); drop some if asked."""
        transport = self.audio_transceiver.sender.transport
        send = transport._send_rtp
        audio_ssrc = self.audio_transceiver.sender._ssrc

        async def send_rtp(data: bytes) -> None:
            if int.from_bytes(data[8:12], "big") == audio_ssrc:
                if self._loss.random() < self._audio_loss:
                    self.audio_lost += 1
                    return
                packet = RtpPacket.parse(data)
                self.audio_sent.append((packet.timestamp, packet.payload))
            await send(data)

        transport._send_rtp = send_rtp  # type: ignore[method-assign]

    async def connect(self, timeout: float = 10) -> None:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        self.signaling.deliver({"type": "offer", "session": self.session,
                                "sdp": self.pc.localDescription.sdp})
        answer = await self.signaling.wait_for("answer", self.session)
        await self.pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
        if self.av is not None:  # the bundled transport is known now; nothing is sent yet
            self._watch_audio_sent()
        await wait_until(lambda: self.pc.connectionState == "connected", timeout,
                         "the client peer did not connect")

    async def close(self, *, bye: bool = True) -> None:
        if bye:
            self.signaling.deliver({"type": "bye", "session": self.session})
        await self.pc.close()
        if self.av is not None:
            self.av.stop()
        else:
            self.track.stop()


class _KeepPackets:
    """A packet sink that keeps every packet (and never asks for keyframes)."""

    def __init__(self, packets: list[RtpPacket]) -> None:
        self.packets = packets

    def on_rtp(self, packet: RtpPacket, data: bytes) -> bool:
        self.packets.append(packet)
        return False


class _Collect:
    """A packet sink that assembles frames for ``on_frame`` (and never asks for keyframes)."""

    def __init__(self, on_frame: Callable[[EncodedFrame], None]) -> None:
        self._assembler = FrameAssembler(on_frame, lambda: None)

    def on_rtp(self, packet: RtpPacket, data: bytes) -> bool:
        self._assembler.add(packet.sequence_number, packet.timestamp, bool(packet.marker),
                            packet.payload, data)
        return False


async def wait_until(condition: Any, timeout: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout} s: {what}")
        await asyncio.sleep(0.02)


@pytest.fixture
def ffmpeg_children() -> Iterator[None]:
    """Fail the test if it leaves an ffmpeg child process of this process running."""
    yield
    leftover = [p for p in _children() if "ffmpeg" in p[1]]
    assert not leftover, f"ffmpeg processes left running: {leftover}"


def _children() -> list[tuple[int, str]]:
    me = os.getpid()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == me:
                found.append((int(entry.name), (entry / "cmdline").read_text()))
        except (OSError, IndexError, ValueError):
            continue
    return found
