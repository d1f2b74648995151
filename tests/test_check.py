"""The connection check without a browser: the verdict rules, TURN allocation attempts against
the local coturn, a dead server and wrong credentials, and ``w.check()`` with an aiortc peer
standing in for a view (its report and its no-server probe offer).

Run inside a private network namespace (tools/netns-run), ``iceServers=[]`` for every peer.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from echo_widget import EchoWidget
from echo_widget.check import (
    DIRECT,
    NEEDS_TURN,
    NO_VIEW,
    TURN_UNREACHABLE,
    TurnResult,
    ViewReport,
    allocate,
    parse_report,
    verdict,
)

from .conftest import Signaling, wait_until
from .ui.test_turn import TURN_PASSWORD, TURN_USER, coturn  # noqa: F401 (a fixture)

pytestmark = pytest.mark.usefixtures("peer_network")

DEAD_TURN = "turn:127.0.0.1:9"


def test_verdicts() -> None:
    ok, dead = TurnResult("turn:a", None), TurnResult("turn:b", "no answer")
    direct, blocked = ViewReport("v", direct=True), ViewReport("w", direct=False)
    assert verdict([], [direct])[0] == DIRECT
    assert verdict([], [blocked])[0] == NEEDS_TURN
    assert "configure a TURN server" in verdict([], [blocked])[1]
    assert verdict([ok], [blocked]) == (NEEDS_TURN, verdict([ok], [blocked])[1])
    assert "is reachable" in verdict([ok], [blocked])[1]
    assert verdict([dead], [direct])[0] == f"{TURN_UNREACHABLE}: no answer"
    assert verdict([dead, ok], [blocked])[0] == NEEDS_TURN, "one reachable server is enough"
    assert verdict([], [])[0] == NO_VIEW
    assert verdict([ok], [], relay_only=True)[0].startswith("relay through TURN")


def test_a_hostile_report_is_read_as_unknown() -> None:
    view, offer = parse_report({"session": "s" * 500, "report": {
        "secure": "yes", "camera": 5, "candidates": ["host", "evil", 3, "relay"],
        "page": "x" * 100, "problem": ["no"]}, "offer": 7})
    assert len(view.view) == 128
    assert view.secure is None
    assert view.camera == "unknown"
    assert view.candidates == ["host", "relay"]
    assert len(view.page) == 40
    assert view.problem == ""
    assert offer is None
    assert parse_report({"report": "nope"})[0].candidates == []


async def test_allocation_on_the_local_coturn_a_dead_server_and_wrong_credentials(
        coturn: str) -> None:  # noqa: F811
    assert (await allocate(coturn, TURN_USER, TURN_PASSWORD, 5)).ok
    wrong = await allocate(coturn, TURN_USER, "wrong", 5)
    assert not wrong.ok
    assert "401" in str(wrong.error)
    assert "username and credential" in str(wrong.error)
    loop = asyncio.get_running_loop()
    started = loop.time()
    dead = await allocate(DEAD_TURN, "u", "p", 1.0)
    assert dead.error == "no answer from 127.0.0.1:9 (udp) within 1 s"
    assert loop.time() - started < 2
    assert "not a turn:" in str((await allocate("turn:", None, None, 1)).error)


def unroutable(sdp: str) -> str:
    """The SDP with every candidate's address replaced by one this namespace has no route to."""
    return re.sub(r"(a=candidate:\S+ \d+ udp \d+) \S+ (\d+)", r"\1 10.255.255.1 \2", sdp)


class FakeView:
    """An aiortc peer answering the kernel's check request as a view does."""

    def __init__(self, signaling: Signaling, *, unreachable: bool = False) -> None:
        self.signaling = signaling
        self.unreachable = unreachable
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        request = await self.signaling.wait_for("check", None, timeout=5)
        self.pc.createDataChannel("check")
        await self.pc.setLocalDescription(await self.pc.createOffer())
        sdp = self.pc.localDescription.sdp
        if self.unreachable:  # neither side reaches the other's addresses (no route to them)
            sdp = unroutable(sdp)
        self.signaling.deliver({"type": "check-report", "session": "view-1",
                                "check": request["check"], "offer": sdp, "report": {
                                    "page": "notebook", "secure": True, "camera": "granted",
                                    "microphone": "prompt", "candidates": ["host"]}})
        answer = await self.signaling.wait_for("check-answer", "view-1", timeout=5)
        sdp = unroutable(answer["sdp"]) if self.unreachable else answer["sdp"]
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp, "answer"))

    async def close(self) -> None:
        if self.task is not None:
            await self.task
        await self.pc.close()


async def run_check(widget: EchoWidget, *, unreachable: bool = False,
                    timeout: float = 3) -> Any:
    signaling = Signaling(widget)
    view = FakeView(signaling, unreachable=unreachable)
    view.start()
    try:
        return await widget.check(timeout=timeout)
    finally:
        await view.close()
        await widget.aclose()


async def test_check_with_no_turn_and_a_reachable_view_says_direct() -> None:
    widget = EchoWidget(ice_servers=[])
    report = await run_check(widget)
    assert report.verdict == DIRECT
    assert report.kernel_candidates == ["host"]
    assert report.turn == []
    [view] = report.views
    assert view.direct is True
    text = str(report)
    assert text.startswith(f"Verdict: {DIRECT}.")
    assert "TURN: none configured." in text
    assert "the notebook's view: a secure context; camera permission granted, microphone " \
           "permission prompt; candidates gathered: host; direct connection to the kernel " \
           "connected." in text
    assert widget._check["verdict"] == DIRECT
    assert widget._check["text"] == text


async def test_check_with_no_view_says_so() -> None:
    widget = EchoWidget(ice_servers=[])
    Signaling(widget)
    report = await widget.check(timeout=1)
    assert report.verdict == NO_VIEW
    assert "Views: none answered" in str(report)
    await widget.aclose()


async def test_check_with_an_unreachable_view_and_the_local_coturn_says_needs_turn(
        coturn: str) -> None:  # noqa: F811
    widget = EchoWidget(ice_servers=[{"urls": coturn, "username": TURN_USER,
                                      "credential": TURN_PASSWORD}])
    report = await run_check(widget, unreachable=True)
    assert report.verdict == NEEDS_TURN, str(report)
    assert "the configured TURN server is reachable" in report.reason
    assert report.kernel_candidates == ["host", "relay"]
    assert report.views[0].direct is False
    assert f"TURN {coturn}: reachable (a relay was allocated)." in str(report)


async def test_check_with_a_dead_turn_server_says_unreachable() -> None:
    widget = EchoWidget(ice_servers=[{"urls": DEAD_TURN, "username": "u", "credential": "p"}])
    report = await run_check(widget, timeout=1.5)
    assert report.verdict == (f"{TURN_UNREACHABLE}: no answer from 127.0.0.1:9 (udp) within "
                              "1.5 s")
    assert report.views[0].direct is True
    assert "relay" not in report.kernel_candidates


async def test_a_check_started_by_a_view_ends_in_the_check_trait() -> None:
    widget = EchoWidget(ice_servers=[])
    signaling = Signaling(widget)
    signaling.deliver({"type": "check-start", "session": "view-1"})
    await wait_until(lambda: widget._check.get("running") is True, 2, "the check started")
    await wait_until(lambda: widget._check.get("running") is False, 10, "the check ended")
    assert widget._check["verdict"] == NO_VIEW
    # a request without a usable session gets the reply every bad message gets
    for bad in ({"type": "check-start"}, {"type": "popout-start", "session": 5},
                {"type": "check-report", "session": ""}):
        signaling.deliver(bad)
        assert signaling.sent[-1]["type"] == "error", bad
        assert signaling.sent[-1]["code"] == "bad-message", bad
    assert widget._popout["url"] == ""
    await widget.aclose()
