"""The pop-out page's endpoint, without a browser: the token, an aiortc page echoing over the
WebSocket, hostile frames, and nothing listening once no page is open or after aclose().

Run inside a private network namespace (tools/netns-run), ``iceServers=[]``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import socket
from pathlib import Path
from typing import Any

import pytest
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from tornado.websocket import WebSocketClientConnection, websocket_connect

from echo_widget import EchoWidget
from echo_widget.popout import MAX_FRAME_BYTES

from .conftest import EchoClient, Signaling, decode_errors, ffprobe_video, wait_until

pytestmark = pytest.mark.usefixtures("peer_network", "ffmpeg_children")

STATIC = Path(__file__).resolve().parents[1] / "echo_widget" / "static" / "widget.js"


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


async def fetch(url: str) -> tuple[int, bytes, dict[str, str]]:
    response = await AsyncHTTPClient().fetch(HTTPRequest(url, request_timeout=5),
                                             raise_error=False)
    return response.code, response.body or b"", dict(response.headers)


def ws_url(url: str) -> str:
    return url.replace("http://", "ws://") + "ws"


class PageSignaling:
    """A pop-out page's model shim, in Python: signaling messages over the page's WebSocket."""

    def __init__(self, connection: WebSocketClientConnection) -> None:
        self.connection = connection
        self.frames: list[dict[str, Any]] = []
        self._changed = asyncio.Event()
        self._reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        while (text := await self.connection.read_message()) is not None:
            assert isinstance(text, str)
            self.frames.append(json.loads(text))
            self._changed.set()
        self._changed.set()

    @property
    def closed(self) -> bool:
        return self._reader.done()

    def deliver(self, content: Any) -> None:
        self.send_frame({"custom": content})

    def send_frame(self, frame: Any) -> None:
        if isinstance(frame, bytes):
            self.connection.write_message(frame, binary=True)
        else:
            self.connection.write_message(frame if isinstance(frame, str) else json.dumps(frame))

    @property
    def custom(self) -> list[dict[str, Any]]:
        return [f["custom"] for f in self.frames if "custom" in f]

    async def wait_frame(self, check: Any, timeout: float = 5) -> dict[str, Any]:
        async def find() -> dict[str, Any]:
            seen = 0
            while True:
                for frame in self.frames[seen:]:
                    if check(frame):
                        return frame
                seen = len(self.frames)
                if self.closed:
                    raise AssertionError(f"socket closed: {self.connection.close_code}")
                self._changed.clear()
                await self._changed.wait()

        return await asyncio.wait_for(find(), timeout)

    async def wait_for(self, kind: str, session: str | None, timeout: float = 5) -> dict[str, Any]:
        frame = await self.wait_frame(lambda f: f.get("custom", {}).get("type") == kind
                                      and f["custom"].get("session") == session, timeout)
        return dict(frame["custom"])

    async def close(self) -> None:
        self.connection.close()
        await asyncio.wait_for(self._reader, 5)


async def open_page(url: str) -> PageSignaling:
    return PageSignaling(await websocket_connect(ws_url(url)))


async def test_token_is_enforced_and_nothing_listens_after_aclose(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    widget = EchoWidget(ice_servers=[], audio=True)
    comm = Signaling(widget)
    assert widget._popout == {"url": "", "pages": 0}
    link = widget.popout()
    url = str(link)
    assert url.startswith("http://127.0.0.1:")
    assert widget.popout().url == url, "a second call gives the running endpoint"
    assert widget._popout == {"url": url, "pages": 0}
    port = int(url.split(":")[2].split("/")[0])
    token = url.rstrip("/").rsplit("/", 1)[1]
    assert len(token) >= 32
    assert f"ssh -L {port}:127.0.0.1:{port}" in repr(link)
    assert "TURN" in link._repr_html_()

    code, body, headers = await fetch(url)
    assert code == 200
    assert b'import widget, { popoutPage } from "./widget.js"' in body
    assert headers["Cache-Control"] == "no-store"
    code, body, _ = await fetch(url + "widget.js")
    assert (code, body) == (200, STATIC.read_bytes()), "the page runs the notebook's own bundle"
    assert (await fetch(url + "widget.css"))[0] == 200
    base = f"http://127.0.0.1:{port}"
    for bad in ("/", f"/{token[:-1]}x/", f"/{token[:-1]}x/widget.js", f"/{token}x/",
                "/favicon.ico", f"/?token={token}", f"//{token}/", f"/{token.upper()}/ws"):
        code, body, headers = await fetch(base + bad)
        assert (code, body) == (403, b""), (bad, code, body)
        assert "Server" not in headers
    assert (await fetch(url + "nothing-here"))[0] == 404
    with pytest.raises(HTTPClientError) as refused:
        await websocket_connect(f"ws://127.0.0.1:{port}/wrong/ws")
    assert refused.value.code == 403
    with pytest.raises(HTTPClientError) as refused:
        await websocket_connect(f"ws://127.0.0.1:{port}/ws")
    assert refused.value.code == 403
    assert widget._popouts is not None
    assert widget._popouts.refused >= 10

    page = await open_page(url)
    state = await page.wait_frame(lambda f: "state" in f)
    assert state["state"]["_in_popout"] is True
    assert state["state"]["ice_servers"] == []
    assert state["state"]["audio"] is True  # the page asks for the microphone as the view does
    await wait_until(lambda: widget._popout["pages"] == 1, 2, "the page counted")
    await widget.aclose()
    assert not listening(port), "something listens after aclose()"
    assert widget._popout == {"url": "", "pages": 0}
    await wait_until(lambda: page.closed, 2, "the page's socket closed by aclose()")
    assert comm.sent == [], "the endpoint sent nothing over the widget's comm"
    assert "-> 403" in caplog.text
    assert token[:8] not in caplog.text, "the token reached a log"


async def test_closing_the_widget_stops_the_endpoint() -> None:
    widget = EchoWidget(ice_servers=[])
    Signaling(widget)
    url = widget.popout().url
    page = await open_page(url)
    await page.wait_frame(lambda f: "state" in f)
    port = int(url.split(":")[2].split("/")[0])
    widget.close()
    await wait_until(lambda: not listening(port) and page.closed, 5, "the endpoint stopped")
    assert page.connection.close_code == 1001


async def test_a_page_echoes_and_records_over_its_websocket_and_closing_it_ends_the_session(
        vp8_clip: Path, tmp_path: Path) -> None:
    widget = EchoWidget(record_to=tmp_path / "popout.webm", ice_servers=[])
    comm = Signaling(widget)
    url = widget.popout().url
    assert widget._popouts is not None
    widget._popouts.linger = 0.5
    port = widget._popouts.port
    assert port is not None
    page = await open_page(url)
    page.deliver({"type": "hello", "session": "page-view"})
    client = EchoClient(page, vp8_clip, "page-1")  # type: ignore[arg-type]
    await client.connect()  # the client's side is up; the kernel's follows on its own event
    await wait_until(lambda: widget.status == "connected", 5, "the kernel's side connected")
    assert widget.hub.views_started == 1
    await wait_until(lambda: len(client.echoed) >= 30, 10, "30 echoed frames")
    assert client.echoed[0].keyframe
    # the answer came over the page's socket, not over the notebook's comm
    assert any(m["type"] == "answer" for m in page.custom)
    assert comm.sent == []
    # the page follows the widget's stats
    await page.wait_frame(lambda f: f.get("state", {}).get("stats", {}).get("frames_forwarded",
                                                                            0) > 0)
    await wait_until(lambda: widget.stats["frames_recorded"] >= 30, 10, "frames recorded")
    # an error for the page's session goes back to it
    page.deliver({"type": "offer", "session": "page-1", "sdp": "v=0"})
    error = await page.wait_for("error", "page-1")
    assert error["code"] == "duplicate-offer"
    # the page's camera picker sets the widget's video; a bad value is refused to the page
    page.send_frame({"set": {"video": {"width": 320, "height": 240}}})
    await wait_until(lambda: widget.video == {"width": 320, "height": 240}, 2, "video set")
    await page.wait_frame(lambda f: f.get("state", {}).get("video") == {"width": 320,
                                                                         "height": 240})
    page.send_frame({"set": {"video": {"width": -1}}})
    refused = await page.wait_for("error", None)
    assert "video refused" in refused["message"]

    # closing the page (no bye) ends its session at once and finalizes the recording
    loop = asyncio.get_running_loop()
    closed_at = loop.time()
    await page.close()
    await wait_until(lambda: not widget.hub.live, 2, "the session ended with the page")
    assert loop.time() - closed_at < 2.0
    await wait_until(lambda: widget.recordings, 10, "the recording finalized")
    await client.close(bye=False)
    recording = Path(widget.recordings[0])
    assert int(ffprobe_video(recording)["nb_read_packets"]) >= 30
    assert decode_errors(recording) == ""
    # no page left: the endpoint stops after its linger time
    await wait_until(lambda: widget._popout["url"] == "", 3, "the idle endpoint stopped")
    assert not listening(port)
    # and popout() starts a new one, with a new token
    again = widget.popout().url
    assert again != url
    await widget.aclose()
    assert not listening(int(again.split(":")[2].split("/")[0]))


async def test_an_unopened_link_expires() -> None:
    widget = EchoWidget(ice_servers=[])
    Signaling(widget)
    widget.popout()
    assert widget._popouts is not None
    port = widget._popouts.port
    assert port is not None
    widget._popouts._arm(0.2)  # as `unopened` seconds passing with no page
    await wait_until(lambda: widget._popout["url"] == "", 2, "the unopened endpoint stopped")
    assert not listening(port)
    await widget.aclose()


async def test_popout_while_the_endpoint_stops_gives_a_new_one_that_stays_shown() -> None:
    widget = EchoWidget(ice_servers=[])
    Signaling(widget)
    first = widget.popout().url
    page = await open_page(first)
    await page.wait_frame(lambda f: "state" in f)
    assert widget._popouts is not None
    widget._popouts.close_soon()  # stopping, its page still to be closed
    second = widget.popout().url
    assert second != first
    await wait_until(lambda: page.closed, 5, "the old endpoint's page closed")
    await asyncio.sleep(0.2)
    assert widget._popout["url"] == second, "the old endpoint's stop cleared the new link"
    assert listening(int(second.split(":")[2].split("/")[0]))
    await widget.aclose()
    for url in (first, second):
        assert not listening(int(url.split(":")[2].split("/")[0]))


def mangle(rng: random.Random, valid: dict[str, Any]) -> Any:
    """A hostile frame made from a valid message."""
    text = json.dumps({"custom": valid})
    choice = rng.randrange(10)
    if choice == 0:
        return text[: rng.randrange(len(text))]  # truncated JSON
    if choice == 1:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64)))  # binary
    if choice == 2:
        return json.dumps(rng.choice([[], 1, "x", None, {"custom": 1}, {"set": 1},
                                      {"custom": valid, "set": {}}, {"other": valid}]))
    if choice == 3:
        return json.dumps({"custom": {**valid, "session": rng.choice([None, 1, "", "s" * 200])}})
    if choice == 4:
        return json.dumps({"custom": {**valid, "type": rng.choice(["popout-start", "x", None,
                                                                   7, "answer"])}})
    if choice == 5:
        return json.dumps({"set": rng.choice([{"video": "big"}, {"status": "connected"},
                                              {"video": {"width": "1"}}, {}])})
    if choice == 6:
        return json.dumps({"custom": {**valid, "sdp": "v=0\r\n" + "a=x\r\n" * 50}})
    if choice == 7:
        return json.dumps({"custom": {**valid, "candidate": {"candidate": "candidate:garbage",
                                                             "sdpMid": "0"}}})
    if choice == 8:
        return json.dumps({"custom": {"type": "check-report", "session": valid["session"],
                                      "check": rng.choice([1, "x", None]), "report": 5}})
    return text


async def test_hostile_frames_get_refusals_and_the_endpoint_goes_on(
        caplog: pytest.LogCaptureFixture) -> None:
    widget = EchoWidget(ice_servers=[])
    comm = Signaling(widget)
    url = widget.popout().url
    page = await open_page(url)
    await page.wait_frame(lambda f: "state" in f)

    # each malformed frame is answered with a clear error, over the socket
    cases: list[tuple[Any, str]] = [
        (b"\x00\x01binary", "Binary frames are not accepted"),
        ("{not json", "must be JSON text"),
        ("[1, 2]", 'must be {"custom": message}'),
        ('{"custom": 5}', "'session' string"),
        ('{"custom": {"type": "offer"}}', "'session' string"),
        ('{"custom": {"type": "popout-start", "session": "s"}}', "Unknown message type"),
        ('{"set": {"status": "connected"}}', 'may only set "video"'),
        ('{"custom": {"type": "ice", "session": "nobody", "candidate": null}}',
         "Unknown or ended session"),
        ('{"custom": {"type": "offer", "session": "bad", "sdp": "not sdp"}}', ""),
    ]
    for frame, words in cases:
        before = len(page.custom)
        page.send_frame(frame)
        await wait_until(lambda n=before: len(page.custom) > n, 5, f"a reply to {frame!r}")
        reply = page.custom[before]
        assert reply["type"] == "error", (frame, reply)
        assert words in reply["message"], (frame, reply)
    assert not widget.hub.live

    # a storm of mangled frames: never a crash, and the socket stays open
    rng = random.Random(18)
    valid = [{"type": "hello", "session": "v"}, {"type": "bye", "session": "gone"},
             {"type": "offer", "session": "o", "sdp": "v=0"},
             {"type": "ice", "session": "i", "candidate": None},
             {"type": "error", "session": "e", "message": "m", "code": "camera-denied"}]
    for i in range(300):
        page.send_frame(mangle(rng, {**rng.choice(valid), "session": f"f{i}"}))
        if i % 50 == 0:
            await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)
    assert not page.closed
    assert "could not handle" not in caplog.text
    assert all(m.get("type") == "error" for m in page.custom), "only error replies"
    # an oversized frame closes that socket with 1009 (message too big)
    page.send_frame(json.dumps({"custom": {"type": "offer", "session": "big",
                                           "sdp": "x" * MAX_FRAME_BYTES}}))
    await wait_until(lambda: page.closed, 5, "the oversized frame closed the socket")
    assert page.connection.close_code == 1009
    # the endpoint still serves pages and sockets
    assert (await fetch(url))[0] == 200
    fresh = await open_page(url)
    await fresh.wait_frame(lambda f: "state" in f)
    fresh.deliver({"type": "bye", "session": "nobody"})
    assert (await fresh.wait_for("error", "nobody"))["code"] == "unknown-session"
    assert all(m.get("type") != "answer" for m in comm.sent)
    await widget.aclose()
