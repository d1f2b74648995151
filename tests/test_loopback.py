"""An aiortc client echoes a real VP8 stream through EchoWidget on loopback.

Run inside a private network namespace (tools/netns-run), ``iceServers=[]``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiortc.codecs import vpx
from aiortc.rtp import (
    RTCP_PSFB_APP,
    AnyRtcpPacket,
    RtcpPsfbPacket,
    RtcpSrPacket,
    RtpPacket,
    is_rtcp,
    unpack_remb_fci,
)

from echo_widget import EchoWidget, session

from .conftest import (
    EchoClient,
    Signaling,
    clip_frames,
    decode_errors,
    ffprobe_video,
    wait_until,
)

pytestmark = pytest.mark.usefixtures("peer_network", "ffmpeg_children")


@pytest.fixture
def codec_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record every VP8 decoder creation and every VP8 encode()/decode() call."""
    calls: list[str] = []

    def spy(name: str, original):  # type: ignore[no-untyped-def]
        def wrapper(*args, **kwargs):  # type: ignore[no-untyped-def]
            calls.append(name)
            return original(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(vpx.Vp8Decoder, "__init__", spy("Vp8Decoder()", vpx.Vp8Decoder.__init__))
    monkeypatch.setattr(vpx.Vp8Decoder, "decode", spy("decode", vpx.Vp8Decoder.decode))
    monkeypatch.setattr(vpx.Vp8Encoder, "encode", spy("encode", vpx.Vp8Encoder.encode))
    return calls


def assert_contiguous_run(echoed: list[bytes], sent: list[bytes]) -> int:
    """The echoed frames are a run of the sent frames, byte for byte; returns where it starts."""
    assert echoed, "no frame came back"
    starts = [i for i, frame in enumerate(sent) if frame == echoed[0]]
    assert starts, "the first echoed frame is not byte-identical to any frame sent"
    for start in starts:
        if sent[start:start + len(echoed)] == echoed:
            return start
    raise AssertionError("the echoed frames are not the sent frames, in order, byte for byte")


async def test_echo_is_byte_identical_and_recorded(
        vp8_clip: Path, tmp_path: Path, codec_calls: list[str]) -> None:
    widget = EchoWidget(record_to=tmp_path / "echo.webm", ice_servers=[])
    signaling = Signaling(widget)
    client = EchoClient(signaling, vp8_clip, "s1")
    loop = asyncio.get_running_loop()
    await client.connect()
    connected_at = loop.time()
    # the client's side is up; the kernel's follows on its own connection-state event
    await wait_until(lambda: widget.status == "connected", 5, "the kernel's side connected")

    await wait_until(lambda: len(client.echoed) >= 60, 10, "60 echoed frames")
    sent = clip_frames(vp8_clip)
    assert_contiguous_run([f.data for f in client.echoed], sent)
    assert client.echoed[0].keyframe, "the echo must start on a keyframe"

    # The kernel asked the browser for a keyframe as soon as the session connected.
    assert client.keyframe_requests, "no keyframe request on connect"
    assert client.keyframe_requests[0] - connected_at < 1.0

    # Keyframe-request forwarding: a PLI on the echo reaches the sending side.
    before = len(client.keyframe_requests)
    await asyncio.sleep(0.6)  # past the kernel's PLI rate limit
    client.request_keyframe_from_kernel()
    await wait_until(lambda: len(client.keyframe_requests) > before, 3,
                     "the viewer's PLI was not forwarded to the sender")

    await client.close()
    await widget.aclose()
    stats = widget.stats
    assert stats["plis_received"] >= 1
    assert stats["plis_sent"] >= 2
    assert stats["frames_forwarded"] >= len(client.echoed)
    assert stats["frames_received"] >= stats["frames_forwarded"]
    assert widget.status == "closed"

    # Nothing on the echo path decoded or encoded video.
    assert codec_calls == []

    # The recording is finalized and valid.
    assert widget.recordings == [str(tmp_path / "echo.webm")]
    recording = Path(widget.recordings[0])
    probe = ffprobe_video(recording)
    assert probe["codec_name"] == "vp8"
    assert (probe["width"], probe["height"]) == (640, 360)
    assert int(probe["nb_read_packets"]) == stats["frames_recorded"] > 30
    assert decode_errors(recording) == ""


async def test_the_echo_is_forwarded_packet_by_packet_with_its_rtcp_right(vp8_clip: Path) -> None:
    """What aiortc's own sender would give the viewer, without its packetizer: every echoed
    packet is a received one, re-stamped; sender reports match the echoed stream; and the
    browser still gets the kernel's bandwidth estimate (REMB) for what it sends."""
    widget = EchoWidget(ice_servers=[])
    client = EchoClient(Signaling(widget), vp8_clip, "rtcp", loop=True)
    sent: set[bytes] = set()
    transport = client.transceiver.sender.transport  # what the client puts on the wire
    send_rtp = transport._send_rtp

    async def record(data: bytes) -> None:
        if not is_rtcp(data):
            sent.add(RtpPacket.parse(data).payload)
        await send_rtp(data)

    transport._send_rtp = record  # type: ignore[method-assign]
    client.echo_payloads = []
    await client.connect()

    def rembs(packets: list[AnyRtcpPacket]) -> list[tuple[int, list[int]]]:
        return [unpack_remb_fci(p.fci) for p in packets
                if isinstance(p, RtcpPsfbPacket) and p.fmt == RTCP_PSFB_APP]

    own_ssrc = client.transceiver.sender._ssrc
    await wait_until(lambda: any(own_ssrc in ssrcs for _, ssrcs in rembs(client.rtcp_in)), 15,
                     "the kernel sent no REMB for the browser's stream")
    await wait_until(lambda: len([p for p in client.rtcp_in if isinstance(p, RtcpSrPacket)]) >= 2,
                     5, "two sender reports on the echo")
    reports = [p for p in client.rtcp_in if isinstance(p, RtcpSrPacket)]
    echo_session = widget.hub._latest
    assert echo_session is not None
    fast = echo_session._fast_receive
    protocols = [p for f in fast for p in f._protocols]
    assert fast
    assert all("datagram_received" in vars(p) for p in protocols)
    # the lean path keeps the transport's own counts (aiortc's getStats) right
    assert echo_session._pc is not None
    transport_stats = [s for s in (await echo_session._pc.getStats()).values()
                       if s.type == "transport"]
    counts = widget.hub.book.counters
    assert transport_stats[0].packetsReceived >= counts.packets_received > 0
    assert transport_stats[0].packetsSent >= counts.packets_forwarded > 0
    await client.close()
    await widget.aclose()
    stats = widget.stats
    # Media packets were read in the socket's callback, not through aioice's queue; closing
    # gave aioice its own path back.
    assert sum(f.packets for f in fast) > 0.8 * stats["packets_received"] > 0
    assert not any("datagram_received" in vars(p) for p in protocols)

    # Packet level: one echoed packet per received packet, not a re-packetized frame.
    assert stats["packets_forwarded"] >= client.echo_packets > 0
    assert stats["packets_forwarded"] <= stats["packets_received"]
    # Sender reports: the echo's SSRC, a timestamp that was echoed, counts that add up.
    echo_ssrc = reports[-1].ssrc
    assert echo_ssrc != own_ssrc
    for report in reports:
        assert report.sender_info.rtp_timestamp in client.echo_timestamps
        assert 0 < report.sender_info.packet_count <= stats["packets_forwarded"]
        assert report.sender_info.octet_count > 1000 * report.sender_info.packet_count // 2
    assert reports[-1].sender_info.packet_count > reports[0].sender_info.packet_count
    # The estimate is the kernel's fixed cap (see the compat test for when it goes out).
    estimates = rembs(client.rtcp_in)
    assert {bitrate for bitrate, _ in estimates} == {session.REMB_BITRATE}
    assert own_ssrc in estimates[0][1]
    # Every echoed packet carries a payload the client sent, under the reports' SSRC.
    echoed = client.echo_payloads
    assert len(echoed) > 100
    assert {ssrc for ssrc, _ in echoed} == {echo_ssrc}
    strangers = [payload[:8] for _, payload in echoed if payload not in sent]
    assert strangers == [], f"{len(strangers)} echoed payloads were never sent"


async def test_two_sessions_are_independent_and_record_to_separate_files(
        vp8_clip: Path, tmp_path: Path) -> None:
    widget = EchoWidget(record_to=tmp_path / "echo.webm", ice_servers=[])
    signaling = Signaling(widget)
    first = EchoClient(signaling, vp8_clip, "view-1")
    second = EchoClient(signaling, vp8_clip, "view-2")
    await asyncio.gather(first.connect(), second.connect())
    await wait_until(lambda: len(first.echoed) > 30 and len(second.echoed) > 30, 10,
                     "both views echo")
    # Ending one session leaves the other echoing.
    await first.close()
    count = len(second.echoed)
    await wait_until(lambda: len(second.echoed) > count + 15, 5, "second view still echoes")
    await second.close()
    await widget.aclose()
    assert sorted(widget.recordings) == [str(tmp_path / "echo-1.webm"), str(tmp_path / "echo.webm")]
    for path in widget.recordings:
        assert decode_errors(Path(path)) == ""


async def test_two_widgets_stream_at_once_each_with_its_own_sessions_and_files(
        vp8_clip: Path, tmp_path: Path) -> None:
    widgets = [EchoWidget(record_to=tmp_path / "echo.webm", ice_servers=[]) for _ in range(2)]
    clients = [EchoClient(Signaling(w), vp8_clip, "view") for w in widgets]  # the same id
    await asyncio.gather(*(c.connect() for c in clients))
    await wait_until(lambda: all(len(c.echoed) > 30 for c in clients), 10, "both echo")
    assert [len(w.hub.live) for w in widgets] == [1, 1]
    assert all(w.hub.snapshot()["frames_received"] > 30 for w in widgets), "each its own"
    await clients[0].close()
    await widgets[0].aclose()
    count = len(clients[1].echoed)
    await wait_until(lambda: len(clients[1].echoed) > count + 15, 5,
                     "the other widget still echoes")
    assert widgets[1].status == "connected"
    await clients[1].close()
    await widgets[1].aclose()
    files = sorted(p for w in widgets for p in w.recordings)
    assert files == [str(tmp_path / "echo-1.webm"), str(tmp_path / "echo.webm")]
    for path in files:
        assert decode_errors(Path(path)) == ""


async def test_client_vanishing_without_bye_is_noticed(vp8_clip: Path, tmp_path: Path) -> None:
    widget = EchoWidget(record_to=tmp_path / "echo.webm", ice_servers=[])
    signaling = Signaling(widget)
    client = EchoClient(signaling, vp8_clip, "gone")
    await client.connect()
    await wait_until(lambda: len(client.echoed) > 30, 10, "echo")
    client.track.player.video.stop()  # the camera stops sending; no bye, peer still open
    loop = asyncio.get_running_loop()
    stopped = loop.time()
    await wait_until(lambda: widget.status == "closed", 10, "session closed by the watchdog")
    assert loop.time() - stopped < 5
    assert "no video" in widget.error
    await widget.aclose()
    assert len(widget.recordings) == 1
    assert decode_errors(Path(widget.recordings[0])) == ""
    await client.close(bye=False)


async def test_close_schedules_teardown_and_finalizes_the_recording(
        vp8_clip: Path, tmp_path: Path) -> None:
    widget = EchoWidget(record_to=tmp_path / "echo.webm", ice_servers=[])
    signaling = Signaling(widget)
    client = EchoClient(signaling, vp8_clip, "c")
    await client.connect()
    await wait_until(lambda: widget.stats["frames_recorded"] > 0 or
                     len(client.echoed) > 40, 10, "recording")
    widget.close()  # ipywidgets' close: sync, schedules aclose on the loop
    assert widget.hub.closing is not None
    await widget.hub.closing
    assert widget.status == "closed"
    assert widget.recordings == [str(tmp_path / "echo.webm")]
    assert decode_errors(tmp_path / "echo.webm") == ""
    await client.close(bye=False)


async def test_without_a_working_ffmpeg_the_echo_still_runs(
        vp8_clip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ECHO_WIDGET_FFMPEG", str(tmp_path / "no-ffmpeg-here"))
    widget = EchoWidget(record_to=tmp_path / "echo.webm", ice_servers=[])
    signaling = Signaling(widget)
    client = EchoClient(signaling, vp8_clip, "f")
    await client.connect()
    await wait_until(lambda: "ECHO_WIDGET_FFMPEG" in widget.error, 5, "ffmpeg error shown")
    error = await signaling.wait_for("error", "f")
    assert "ECHO_WIDGET_FFMPEG" in error["message"]
    await wait_until(lambda: len(client.echoed) > 30, 10, "echo without recording")
    assert widget.status == "connected"
    await client.close()
    await widget.aclose()
    assert widget.recordings == []
    assert list(tmp_path.iterdir()) == []


async def test_messages_from_another_thread_run_on_the_widgets_loop(
        vp8_clip: Path, tmp_path: Path) -> None:
    """As with JupyterLab's kernel subshells: comm messages arrive on another thread's loop."""
    import threading

    widget = EchoWidget(record_to=tmp_path / "echo.webm", ice_servers=[])
    signaling = Signaling(widget)
    main_loop = asyncio.get_running_loop()
    sent_from: set[str] = set()
    capture = widget.send

    def send(content, buffers=None):  # type: ignore[no-untyped-def]
        sent_from.add(threading.current_thread().name)
        capture(content)

    widget.send = send  # type: ignore[method-assign]
    client = EchoClient(signaling, vp8_clip, "sub")
    await client.pc.setLocalDescription(await client.pc.createOffer())
    offer = {"type": "offer", "session": "sub", "sdp": client.pc.localDescription.sdp}

    def subshell() -> None:
        async def deliver() -> None:
            widget._handle_custom_msg(offer, [])
        asyncio.run(deliver())

    thread = threading.Thread(target=subshell, name="subshell")
    thread.start()
    thread.join()
    answer = await signaling.wait_for("answer", "sub")
    from aiortc import RTCSessionDescription

    await client.pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
    await wait_until(lambda: len(client.echoed) > 30, 10, "echo")
    assert sent_from == {threading.current_thread().name}
    assert widget.hub.loop is main_loop

    closed: list[list[str]] = []

    def close_from_other_loop() -> None:
        async def close() -> None:
            await widget.aclose()
            closed.append(list(widget.recordings))
        asyncio.run(close())

    other = threading.Thread(target=close_from_other_loop)
    other.start()
    await wait_until(lambda: bool(closed), 15, "aclose from another loop")
    other.join()
    assert closed == [[str(tmp_path / "echo.webm")]]
    assert widget.status == "closed"
    await client.close(bye=False)


async def test_close_from_another_thread_closes_everything_on_the_widgets_loop(
        vp8_clip: Path, tmp_path: Path) -> None:
    """ipywidgets' close() may come from any thread: nothing of the loop is touched there."""
    import threading
    import urllib.error
    import urllib.request

    asyncio.get_running_loop().set_debug(True)  # a call from the wrong thread raises
    widget = EchoWidget(record_to=tmp_path / "echo.webm", ice_servers=[])
    signaling = Signaling(widget)
    client = EchoClient(signaling, vp8_clip, "t")
    await client.connect()
    link = widget.popout()
    checking = asyncio.ensure_future(widget.check(timeout=30))  # no view answers: it waits
    await wait_until(lambda: widget.stats["frames_recorded"] > 10, 10, "recording")
    failures: list[BaseException] = []

    def close() -> None:
        try:
            widget.close()
        except BaseException as exc:
            failures.append(exc)

    thread = threading.Thread(target=close)
    thread.start()
    await asyncio.to_thread(thread.join)
    assert failures == []
    await wait_until(lambda: widget.hub.closing is not None and widget.hub.closing.done(), 15,
                     "the sessions closed")
    with pytest.raises(asyncio.CancelledError):
        await checking
    assert widget.status == "closed"
    assert widget.recordings == [str(tmp_path / "echo.webm")]
    assert decode_errors(tmp_path / "echo.webm") == ""
    await wait_until(lambda: widget._popout.get("url") == "", 10, "the pop-out stopped")

    def fetch() -> None:
        urllib.request.urlopen(link.url, timeout=2)

    with pytest.raises(urllib.error.URLError):
        await asyncio.to_thread(fetch)
    await client.close(bye=False)


async def test_a_live_session_starts_no_lingering_thread(vp8_clip: Path) -> None:
    """aiortc's decoder thread is not a daemon: an idle one per session would pile up and
    keep the interpreter from exiting. The tap ends it at once."""
    import threading

    widget = EchoWidget(ice_servers=[])
    signaling = Signaling(widget)
    client = EchoClient(signaling, vp8_clip, "t")
    await client.connect()
    await wait_until(lambda: len(client.echoed) > 10, 10, "echo")
    assert not [t.name for t in threading.enumerate() if "decoder" in t.name]
    await client.close()
    await widget.aclose()
