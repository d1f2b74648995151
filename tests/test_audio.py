"""Audio over loopback: an aiortc client sends a VP8 + Opus clip (a white frame and a tone
burst's onset together, once a second); the echo, the recording's lip sync, audio_frames()."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from aiortc.codecs import opus

from echo_widget import EchoWidget
from echo_widget.testing import lip_sync

from .conftest import EchoClient, Signaling, decode_errors, wait_until

pytestmark = pytest.mark.usefixtures("peer_network", "ffmpeg_children")


@pytest.fixture
def opus_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record every aiortc Opus decoder or encoder made (the kernel must make none)."""
    calls: list[str] = []
    for cls in (opus.OpusDecoder, opus.OpusEncoder):
        original = cls.__init__

        def spy(self, *args, _name=cls.__name__, _original=original, **kwargs):  # type: ignore[no-untyped-def]
            calls.append(_name)
            _original(self, *args, **kwargs)

        monkeypatch.setattr(cls, "__init__", spy)
    return calls


def streams(path: Path) -> list[str]:
    with av.open(str(path)) as container:
        return [s.codec_context.name for s in container.streams]


async def stream_clip(widget: EchoWidget, clip: Path, **options: float) -> EchoClient:
    client = EchoClient(Signaling(widget), clip, "a", audio=True, **options)  # type: ignore[arg-type]
    await client.connect()
    assert client.av is not None
    av_clip = client.av
    await wait_until(lambda: len(av_clip.sent["audio"]) == len(av_clip.packets["audio"]),
                     15, "the clip was sent")
    await wait_until(lambda: widget.hub.snapshot()["audio_packets_received"]
                     == len(client.audio_sent), 5, "the kernel received what left the client")
    return client


@pytest.mark.parametrize(("loss", "container"), [(0.0, "webm"), (0.05, "mkv")])
async def test_audio_is_echoed_byte_identical_and_recorded_in_sync(
        av_clip: Path, tmp_path: Path, opus_calls: list[str], loss: float,
        container: str) -> None:
    widget = EchoWidget(ice_servers=[], audio=True, record_to=tmp_path / f"av.{container}")
    client = await stream_clip(widget, av_clip, audio_loss=loss)
    await wait_until(lambda: len(client.echo_audio) >= len(client.audio_sent) - 5, 5,
                     "the audio came back")
    stats = widget.hub.snapshot()
    await client.close()
    await widget.aclose()

    # the echo: the payloads that left the client, in order, byte for byte, and nothing else
    echoed = [p.payload for p in client.echo_audio]
    sent = [payload for _, payload in client.audio_sent]
    start = sent.index(echoed[0])
    assert echoed == sent[start:start + len(echoed)]
    assert start <= 3  # from the first packets on: audio needs no keyframe
    assert len({p.ssrc for p in client.echo_audio}) == 1
    steps = {(b.timestamp - a.timestamp) & 0xFFFFFFFF
             for a, b in zip(client.echo_audio, client.echo_audio[1:], strict=False)}
    assert steps <= {960 * k for k in range(1, 10)}  # shifted by a fixed offset: gaps stay gaps
    assert opus_calls == ["OpusEncoder"]  # the client's packetizer; the kernel made none
    if loss:
        assert client.audio_lost >= 10
    assert stats["audio_packets_received"] == len(client.audio_sent)
    assert stats["audio_packets_forwarded"] == len(echoed)
    assert stats["audio_bytes_received"] == sum(map(len, sent))
    assert stats["audio_level"] is None  # this client writes no level into its headers

    # the recording: finalized at once, both tracks copied, decoding cleanly, each tone with
    # its flash
    assert widget.error == ""
    [path] = widget.recordings
    assert streams(Path(path)) == ["vp8", "opus"]
    assert decode_errors(Path(path)) == ""
    offsets = lip_sync(Path(path))
    assert len(offsets) >= 4, offsets
    assert all(abs(offset) <= 20 for offset in offsets), offsets
    assert stats["av_offset_ms"] is not None
    assert abs(stats["av_offset_ms"]) <= 20


async def test_an_ivf_recording_with_audio_on_holds_the_video_alone(
        av_clip: Path, tmp_path: Path) -> None:
    """IVF holds VP8 but not Opus: the video is recorded, whole, and nothing fails."""
    widget = EchoWidget(ice_servers=[], audio=True, record_to=tmp_path / "av.ivf")
    client = await stream_clip(widget, av_clip)
    await wait_until(lambda: len(client.echo_audio) >= len(client.audio_sent) - 5, 5,
                     "the audio came back")
    await client.close()
    await widget.aclose()
    assert widget.error == ""
    [path] = widget.recordings
    assert streams(Path(path)) == ["vp8"]
    assert decode_errors(Path(path)) == ""
    with av.open(path) as container:
        assert container.format.name == "ivf"
        frames = sum(1 for packet in container.demux(video=0) if packet.size)
    assert frames >= widget.hub.snapshot()["frames_recorded"] - 1 > 30


async def test_audio_frames_decode_what_was_sent(av_clip: Path) -> None:
    widget = EchoWidget(ice_servers=[], audio=True)
    client = EchoClient(Signaling(widget), av_clip, "a", audio=True, loop=True)
    await client.connect()
    session = widget.hub.current
    assert session is not None
    assert session.audio is not None
    await wait_until(lambda: len(client.echo_audio) > 20, 5, "audio echo")
    assert not session.decoding_audio  # nobody iterates: no decoder

    frames: list[av.AudioFrame] = []
    async for frame in widget.audio_frames():
        assert session.decoding_audio
        frames.append(frame)
        if len(frames) == 40:
            break
    await wait_until(lambda: not session.decoding_audio, 2, "decoding stops with the loop")
    await client.close()
    await widget.aclose()

    assert {f.sample_rate for f in frames} == {48_000}
    assert {f.time_base for f in frames} == {Fraction(1, 48_000)}
    # a reference decoder started on the same packet gives the same samples
    sent = dict(client.audio_sent)
    order = [ts for ts, _ in client.audio_sent]
    first = order.index(frames[0].pts)
    reference = av.CodecContext.create("opus", "r")
    reference.sample_rate = 48_000
    reference.layout = "mono"
    expected = {}
    for ts in order[first:first + 200]:
        for decoded in reference.decode(av.Packet(sent[ts])):
            expected[ts] = decoded.to_ndarray()
    compared = 0
    for frame in frames:
        if frame.pts in expected:
            np.testing.assert_array_equal(frame.to_ndarray(), expected[frame.pts])
            compared += 1
    assert compared >= 30  # a few may be skipped (newest wins), most are compared


async def test_audio_off_answers_the_microphone_inactive(av_clip: Path) -> None:
    widget = EchoWidget(ice_servers=[])  # audio=False
    client = EchoClient(Signaling(widget), av_clip, "a", audio=True, loop=True)
    await client.connect()
    await wait_until(lambda: len(client.echoed) > 30, 5, "video echo")
    answer = client.pc.remoteDescription.sdp
    audio_section = answer[answer.index("m=audio"):]
    assert "a=inactive" in audio_section.split("m=", 2)[1]
    assert client.echo_audio == []
    assert widget.hub.snapshot()["audio_packets_received"] == 0
    await client.close()
    await widget.aclose()


async def test_the_answer_keeps_the_offers_opus_parameters(av_clip: Path) -> None:
    """In-band FEC and stereo as a browser offers them (aiortc's own offer has none)."""
    widget = EchoWidget(ice_servers=[], audio=True)
    signaling = Signaling(widget)
    client = EchoClient(signaling, av_clip, "a", audio=True)
    await client.pc.setLocalDescription(await client.pc.createOffer())
    offer = client.pc.localDescription.sdp
    payload_type = next(line.split(":")[1].split()[0] for line in offer.splitlines()
                        if line.startswith("a=rtpmap:") and "opus/48000" in line)
    fmtp = f"a=fmtp:{payload_type} minptime=10;useinbandfec=1;stereo=1"
    rtpmap = next(line for line in offer.splitlines() if line.startswith(
        f"a=rtpmap:{payload_type} "))
    signaling.deliver({"type": "offer", "session": "a",
                       "sdp": offer.replace(rtpmap, f"{rtpmap}\r\n{fmtp}")})
    answer = (await signaling.wait_for("answer", "a"))["sdp"]
    audio = answer[answer.index("m=audio"):]
    [line] = [x for x in audio.splitlines() if x.startswith(f"a=fmtp:{payload_type} ")]
    assert {"useinbandfec=1", "stereo=1", "minptime=10"} <= set(line.split(" ", 1)[1].split(";"))
    await client.close()
    await widget.aclose()
