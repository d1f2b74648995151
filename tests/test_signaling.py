"""The signaling protocol and the widget's message routing: bad input gets an error reply."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from echo_widget import EchoWidget
from echo_widget.config import (
    ICE_POLICY_ENV,
    ICE_SERVERS_ENV,
    check_ice_servers,
    to_rtc_ice_servers,
)
from echo_widget.protocol import (
    BrowserError,
    Bye,
    Ice,
    Offer,
    ProtocolError,
    Setup,
    parse_message,
)

from .conftest import EchoClient, Signaling, wait_until

CANDIDATE = "candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host"


def test_parse_valid_messages() -> None:
    assert parse_message({"type": "offer", "session": "s", "sdp": "v=0"}) == Offer("s", "v=0")
    assert parse_message({"type": "bye", "session": "s"}) == Bye("s")
    end = parse_message({"type": "ice", "session": "s", "candidate": None})
    assert end == Ice("s", None)
    assert parse_message({"type": "ice", "session": "s", "candidate": {
        "candidate": "", "sdpMid": "0", "sdpMLineIndex": 0}}) == Ice("s", None)
    ice = parse_message({"type": "ice", "session": "s", "candidate": {
        "candidate": CANDIDATE, "sdpMid": "0", "sdpMLineIndex": 0}})
    assert isinstance(ice, Ice)
    assert ice.candidate is not None
    assert (ice.candidate.ip, ice.candidate.port, ice.candidate.sdpMid) == ("127.0.0.1", 50000, "0")
    setup = parse_message({"type": "setup", "session": "s", "started_at": 1.7e12,
                           "phases": {"first_frame": 90, "camera": 180.5}})
    assert setup == Setup("s", {"camera": 180.5, "first_frame": 90.0}, 1.7e12)
    assert list(setup.phases) == ["camera", "first_frame"], "in the order they happen"


@pytest.mark.parametrize(("content", "words", "session"), [
    ("offer", "JSON object", None),
    ([], "JSON object", None),
    ({"type": "offer"}, "'session'", None),
    ({"type": "offer", "session": 7}, "'session'", None),
    ({"type": "offer", "session": "x" * 500}, "'session'", None),
    ({"type": "offer", "session": "s"}, "'sdp'", "s"),
    ({"type": "offer", "session": "s", "sdp": "v" * 200_000}, "longer", "s"),
    ({"type": "dance", "session": "s"}, "Unknown message type", "s"),
    ({"type": "setup", "session": "s"}, "'phases'", "s"),
    ({"type": "setup", "session": "s", "phases": {}}, "'phases'", "s"),
    ({"type": "setup", "session": "s", "phases": {"lunch": 5}}, "'phases'", "s"),
    ({"type": "setup", "session": "s", "phases": {"camera": -1}}, "numbers of ms", "s"),
    ({"type": "setup", "session": "s", "phases": {"camera": float("nan")}}, "numbers of ms", "s"),
    ({"type": "setup", "session": "s", "phases": {"camera": True}}, "numbers of ms", "s"),
    ({"type": "setup", "session": "s", "phases": {"camera": 1e9}}, "numbers of ms", "s"),
    ({"type": "setup", "session": "s", "phases": {"camera": 1}, "started_at": "now"},
     "'started_at'", "s"),
    ({"type": "setup", "session": "s", "phases": {"camera": 1}, "elapsed": -5}, "'elapsed'", "s"),
    ({"session": "s"}, "Unknown message type", "s"),
    ({"type": "ice", "session": "s"}, "'candidate'", "s"),
    ({"type": "ice", "session": "s", "candidate": "x"}, "object or null", "s"),
    ({"type": "ice", "session": "s", "candidate": {"candidate": 5}}, "candidate string", "s"),
    ({"type": "ice", "session": "s", "candidate": {"candidate": CANDIDATE}}, "sdpMid", "s"),
    ({"type": "ice", "session": "s", "candidate": {"candidate": CANDIDATE, "sdpMid": 1}},
     "sdpMid", "s"),
    ({"type": "ice", "session": "s", "candidate": {"candidate": CANDIDATE,
                                                  "sdpMLineIndex": True}}, "sdpMLineIndex", "s"),
    ({"type": "ice", "session": "s", "candidate": {"candidate": "candidate:garbage",
                                                  "sdpMid": "0"}}, "Could not parse", "s"),
])
def test_malformed_messages_are_rejected_with_a_reason(
        content: Any, words: str, session: str | None) -> None:
    with pytest.raises(ProtocolError, match=words) as raised:
        parse_message(content)
    assert raised.value.session == session


async def test_bad_messages_get_error_replies_and_never_raise() -> None:
    widget = EchoWidget(ice_servers=[])
    signaling = Signaling(widget)
    for content in ["nonsense", {"type": "ice", "session": "nobody", "candidate": None},
                    {"type": "bye", "session": "nobody"}, {"type": 1, "session": "a"}]:
        signaling.deliver(content)
    replies = signaling.sent
    assert [r["type"] for r in replies] == ["error"] * 4
    assert [r["session"] for r in replies] == [None, "nobody", "nobody", "a"]
    assert [r["code"] for r in replies] == ["bad-message", "unknown-session", "unknown-session",
                                            "bad-message"]
    assert "Unknown or ended session" in replies[1]["message"]
    assert widget.status == "idle"
    await widget.aclose()


@pytest.mark.parametrize(("sdp", "words"), [
    ("this is not sdp", "could not be parsed"),
    ("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"
     "c=IN IP4 0.0.0.0\r\na=rtpmap:111 opus/48000/2\r\na=sendrecv\r\n", "no video"),
    ("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 102\r\n"
     "c=IN IP4 0.0.0.0\r\na=rtpmap:102 H264/90000\r\na=sendrecv\r\n", "no VP8"),
    ("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n"
     "c=IN IP4 0.0.0.0\r\na=rtpmap:96 VP8/90000\r\n", "without a direction"),
    ("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n"
     "c=IN IP4 0.0.0.0\r\na=rtpmap:96 VP8/90000\r\na=recvonly\r\n", "recvonly: it must be"),
    ("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n"
     "c=IN IP4 0.0.0.0\r\na=rtpmap:96 VP8/90000\r\na=sendonly\r\n", "sendonly: it must be"),
])
async def test_unusable_offers_fail_the_session_with_a_reason(sdp: str, words: str) -> None:
    widget = EchoWidget(ice_servers=[])
    signaling = Signaling(widget)
    signaling.deliver({"type": "offer", "session": "s", "sdp": sdp})
    reply = await signaling.wait_for("error", "s")
    assert words in reply["message"]
    assert (reply["code"], reply["fatal"]) == ("bad-offer", True)
    await wait_until(lambda: widget.status == "failed", 2, "status failed")
    assert words in widget.error
    await widget.aclose()
    assert widget.hub.unfinished == frozenset()
    # the ended session id can't be reused
    signaling.deliver({"type": "offer", "session": "s", "sdp": sdp})
    assert "ended" in signaling.sent[-1]["message"]
    assert signaling.sent[-1]["code"] == "session-ended"


def test_offer_without_a_running_loop_gets_an_error() -> None:
    widget = EchoWidget(ice_servers=[])
    signaling = Signaling(widget)
    signaling.deliver({"type": "offer", "session": "s", "sdp": "v=0"})
    assert signaling.sent[-1]["type"] == "error"
    assert "event loop" in signaling.sent[-1]["message"]
    assert signaling.sent[-1]["code"] == "no-loop"


def test_ice_servers_come_from_the_argument_or_the_environment(
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert EchoWidget().ice_servers == []
    turn = [{"urls": "turn:127.0.0.1:3478", "username": "u", "credential": "p"}]
    monkeypatch.setenv(ICE_SERVERS_ENV, json.dumps(turn))
    assert EchoWidget().ice_servers == turn
    assert EchoWidget(ice_servers=[]).ice_servers == []
    monkeypatch.setenv(ICE_SERVERS_ENV, "[{")
    with pytest.raises(ValueError, match="not valid JSON"):
        EchoWidget()
    bad_lists = ([{"url": "turn:x"}], [{"urls": "http://x"}], "turn:x",
                 [{"urls": "stun:x", "p": 1}])
    for bad in bad_lists:
        with pytest.raises(ValueError, match="ice"):
            EchoWidget(ice_servers=bad)  # type: ignore[arg-type]


def test_every_ice_server_field_reaches_aiortc() -> None:
    servers = check_ice_servers([
        {"urls": ["turn:127.0.0.1:3478", "turns:127.0.0.1:5349"], "username": "u",
         "credential": "p", "credentialType": "password"},
        {"urls": "stun:127.0.0.1:3478"}])
    turn, stun = to_rtc_ice_servers(servers)
    assert (turn.urls, turn.username, turn.credential, turn.credentialType) == (
        ["turn:127.0.0.1:3478", "turns:127.0.0.1:5349"], "u", "p", "password")
    assert (stun.urls, stun.username, stun.credential) == ("stun:127.0.0.1:3478", None, None)
    with pytest.raises(ValueError, match="credential"):
        check_ice_servers([{"urls": "turn:x", "credential": 5}])


def test_the_ice_policy_comes_from_the_argument_or_the_environment(
        monkeypatch: pytest.MonkeyPatch) -> None:
    turn = [{"urls": "turn:127.0.0.1:3478", "username": "u", "credential": "p"}]
    assert EchoWidget().ice_transport_policy == "all"
    monkeypatch.setenv(ICE_POLICY_ENV, "relay")
    assert EchoWidget(ice_servers=turn).ice_transport_policy == "relay"
    assert EchoWidget(ice_servers=turn, ice_transport_policy="all").ice_transport_policy == "all"
    with pytest.raises(ValueError, match="needs a TURN server"):
        EchoWidget(ice_servers=[])
    monkeypatch.setenv(ICE_POLICY_ENV, "sometimes")
    with pytest.raises(ValueError, match="ECHO_WIDGET_ICE_TRANSPORT_POLICY must be"):
        EchoWidget()


def test_a_browser_error_code_is_parsed_and_checked() -> None:
    parsed = parse_message({"type": "error", "session": "s", "message": "denied",
                            "code": "camera-denied"})
    assert parsed == BrowserError("s", "denied", "camera-denied")
    assert parse_message({"type": "error", "session": "s", "message": "x"}) == BrowserError(
        "s", "x", None)
    for bad in (5, "", "x" * 65):
        with pytest.raises(ProtocolError, match="'code'"):
            parse_message({"type": "error", "session": "s", "message": "x", "code": bad})


@pytest.mark.usefixtures("peer_network")
async def test_candidates_right_after_the_offer_are_accepted_and_replies_carry_the_session(
        vp8_clip: Any) -> None:
    widget = EchoWidget(ice_servers=[])
    signaling = Signaling(widget)
    client = EchoClient(signaling, vp8_clip, "early")
    await client.pc.setLocalDescription(await client.pc.createOffer())
    signaling.deliver({"type": "offer", "session": "early", "sdp": client.pc.localDescription.sdp})
    # trickled candidates and end-of-candidates before the answer is sent
    signaling.deliver({"type": "ice", "session": "early", "candidate": {
        "candidate": CANDIDATE, "sdpMid": "0", "sdpMLineIndex": 0}})
    signaling.deliver({"type": "ice", "session": "early", "candidate": None})
    # a second offer on a live session is refused; the session goes on
    signaling.deliver({"type": "offer", "session": "early", "sdp": "v=0"})
    answer = await signaling.wait_for("answer", "early")
    assert "VP8" in answer["sdp"]
    session = widget.hub.live["early"]
    await wait_until(lambda: session.queued == 0, 5, "the queued candidates were applied")
    await asyncio.sleep(0.05)  # a rejected candidate's reply would be sent by now
    errors = [m for m in signaling.of("early") if m["type"] == "error"]
    assert len(errors) == 1
    assert "already has an offer" in errors[0]["message"]
    assert all("session" in m for m in signaling.sent)
    await asyncio.sleep(0.1)
    assert widget.status == "connecting"
    await client.pc.close()
    await widget.aclose()
    assert widget.status == "closed"


@pytest.mark.parametrize("audio", [False, True])
async def test_an_audio_m_line_with_no_known_codec_is_a_bad_offer(audio: bool) -> None:
    """aiortc refuses any m-line it has no codec for: the offer is bad, not the kernel broken."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("video", direction="sendrecv")
    pc.addTransceiver("audio", direction="sendrecv")
    await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    for name in ("opus/48000/2", "PCMU/8000", "PCMA/8000", "G722/8000"):
        sdp = sdp.replace(name, "nonsense/8000")
    await pc.close()
    widget = EchoWidget(ice_servers=[], audio=audio)
    signaling = Signaling(widget)
    signaling.deliver({"type": "offer", "session": "s", "sdp": sdp})
    reply = await signaling.wait_for("error", "s")
    assert (reply["code"], reply["fatal"]) == ("bad-offer", True), reply
    assert "could not be used" in reply["message"]
    await widget.aclose()


async def test_a_legal_offer_at_the_size_limit_is_taken_and_one_past_it_refused(
        vp8_clip: Path) -> None:
    from echo_widget.protocol import MAX_SDP_LENGTH

    widget = EchoWidget(ice_servers=[])
    signaling = Signaling(widget)
    client = EchoClient(signaling, vp8_clip, "big")
    await client.pc.setLocalDescription(await client.pc.createOffer())
    sdp = client.pc.localDescription.sdp
    head, rest = sdp.split("\r\nm=", 1)
    filler = MAX_SDP_LENGTH - len(sdp) - len("a=x-pad:\r\n")
    padded = f"{head}\r\na=x-pad:{'p' * filler}\r\nm={rest}"  # an attribute nobody knows
    assert len(padded) == MAX_SDP_LENGTH
    signaling.deliver({"type": "offer", "session": "over", "sdp": padded + " "})
    refused = await signaling.wait_for("error", "over")
    assert "longer than" in refused["message"]
    signaling.deliver({"type": "offer", "session": "big", "sdp": padded})
    answer = await signaling.wait_for("answer", "big")
    await client.pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
    await wait_until(lambda: len(client.echoed) > 10, 10, "the echo of the padded offer")
    await client.close()
    await widget.aclose()


async def test_video_m_lines_past_the_second_are_answered_inactive(vp8_clip: Path) -> None:
    widget = EchoWidget(ice_servers=[])
    signaling = Signaling(widget)
    client = EchoClient(signaling, vp8_clip, "many", processed=True)
    for _ in range(2):
        client.pc.addTransceiver("video", direction="recvonly")
    await client.connect()
    sections = signaling.of("many")[0]["sdp"].split("\r\nm=")[1:]
    assert [section.split(" ", 1)[0] for section in sections] == ["video"] * 4
    directions = [next(line for line in section.split("\r\n")
                       if line in ("a=sendrecv", "a=sendonly", "a=recvonly", "a=inactive"))
                  for section in sections]
    assert directions == ["a=sendrecv", "a=sendonly", "a=inactive", "a=inactive"], \
        "the echo; the processed video; nothing for the others"
    await wait_until(lambda: len(client.echoed) > 10, 10, "the echo")
    widget.transform = lambda frame: frame
    await wait_until(lambda: client.processed_count > 5, 15, "processed video on the second")
    await client.close()
    await widget.aclose()


async def test_the_views_setup_phases_reach_the_stats(vp8_clip: Path) -> None:
    import time

    widget = EchoWidget(ice_servers=[])
    widget._repr_mimebundle_()  # displayed now: the view's start is measured from here
    signaling = Signaling(widget)
    client = EchoClient(signaling, vp8_clip, "s")
    await client.connect()
    await wait_until(lambda: len(client.echoed) > 0, 10, "the echo")
    assert widget.hub.snapshot()["setup_ms"] is None, "nothing before the view says"
    started_at = time.time() * 1000 + 150  # the view started 150 ms after the display
    signaling.deliver({"type": "setup", "session": "s", "started_at": started_at, "phases": {
        "camera": 180, "signaling": 80.04, "connect": 60, "first_frame": 90}})
    setup = widget.hub.snapshot()["setup_ms"]
    assert setup is not None
    assert list(setup) == ["view", "camera", "signaling", "connect", "first_frame", "total"]
    assert 140 <= setup["view"] <= 400, setup
    assert setup["signaling"] == 80.0
    assert setup["total"] == round(setup["view"] + 180 + 80 + 60 + 90, 1)
    # a view on another machine (its clock far off): the view's start is left out
    signaling.deliver({"type": "setup", "session": "s", "started_at": 1000.0,
                       "phases": {"first_frame": 90}})
    assert widget.hub.snapshot()["setup_ms"] == {"first_frame": 90.0, "total": 90.0}
    # phases that overlapped (the camera opened while the session negotiated): the view's
    # own elapsed time is the total, not their sum
    signaling.deliver({"type": "setup", "session": "s", "elapsed": 260, "phases": {
        "camera": 180, "signaling": 145, "connect": 50, "first_frame": 60}})
    assert widget.hub.snapshot()["setup_ms"]["total"] == 260.0
    await client.close()
    await widget.aclose()
