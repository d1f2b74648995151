"""The session registry on its own, driven by a stand-in for the widget."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from echo_widget.hub import SessionHub
from echo_widget.session import SessionConfig
from echo_widget.stats import Stats

from .conftest import wait_until

NO_VIDEO = ("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"
            "c=IN IP4 0.0.0.0\r\na=rtpmap:111 opus/48000/2\r\na=sendrecv\r\n")


class Owner:
    """Records what the hub tells its widget."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.statuses: list[str] = []
        self.errors: list[tuple[str | None, str]] = []
        self.views = 0
        self.recordings: list[Path] = []
        self.stats: list[Stats] = []

    def send(self, content: dict[str, Any]) -> None:
        self.sent.append(content)

    def session_config(self) -> SessionConfig:
        return SessionConfig()

    def show_status(self, status: str) -> None:
        self.statuses.append(status)

    def show_error(self, code: str | None, message: str) -> None:
        self.errors.append((code, message))

    def view_started(self) -> None:
        self.views += 1

    def recording_finalized(self, path: Path) -> None:
        self.recordings.append(path)

    def publish_stats(self, stats: Stats) -> None:
        self.stats.append(stats)


async def test_a_failed_offer_ends_its_session_and_its_id_stays_ended() -> None:
    owner = Owner()
    hub = SessionHub(owner, max_sessions=2)
    hub.handle({"type": "offer", "session": "a", "sdp": NO_VIDEO})
    assert set(hub.live) == {"a"}
    await hub.aclose()
    assert hub.live == {}
    assert hub.unfinished == frozenset()
    assert owner.statuses == ["connecting", "failed", "closed"]
    assert owner.errors[-1][0] == "bad-offer"
    assert [m["code"] for m in owner.sent] == ["bad-offer"]
    hub.handle({"type": "offer", "session": "a", "sdp": NO_VIDEO})
    assert owner.sent[-1]["code"] == "session-ended"
    assert owner.stats[-1]["sessions"] == 0


async def test_the_cap_counts_live_sessions_only() -> None:
    owner = Owner()
    hub = SessionHub(owner, max_sessions=1)
    hub.handle({"type": "offer", "session": "a", "sdp": NO_VIDEO})
    hub.handle({"type": "offer", "session": "b", "sdp": NO_VIDEO})
    assert owner.sent[-1]["code"] == "too-many-sessions"
    hub.handle({"type": "offer", "session": "a", "sdp": NO_VIDEO})
    assert owner.sent[-1]["code"] == "duplicate-offer"
    await wait_until(lambda: not hub.live, 5, "the failed session frees its slot")
    hub.handle({"type": "offer", "session": "b", "sdp": NO_VIDEO})
    assert "b" in hub.live
    await hub.aclose()
    with pytest.raises(ValueError, match="at least 1"):
        SessionHub(owner, max_sessions=0)


async def test_a_view_that_never_starts_is_reported_and_a_hello_settles_it() -> None:
    owner = Owner()
    hub = SessionHub(owner, max_sessions=1)
    hub.expect_view(0.05)
    await wait_until(lambda: bool(owner.errors), 5, "the view timeout")
    assert [code for code, _ in owner.errors] == ["view-timeout"]
    hub.expect_view(0.05)
    hub.handle({"type": "hello", "session": "v"})
    await asyncio.sleep(0.15)
    assert owner.views == 1
    assert [code for code, _ in owner.errors] == ["view-timeout"], "no second report"


async def test_a_crashed_view_is_reported_with_its_code_not_as_one_that_never_started() -> None:
    owner = Owner()
    hub = SessionHub(owner, max_sessions=1)
    hub.expect_view(0.05)
    hub.handle({"type": "error", "session": "v", "message": "boom", "code": "view-crashed"})
    await asyncio.sleep(0.15)
    assert owner.errors == [("view-crashed", "boom")]


async def test_a_browser_error_without_a_code_is_still_shown() -> None:
    owner = Owner()
    hub = SessionHub(owner, max_sessions=1)
    hub.handle({"type": "error", "session": "v", "message": "camera denied"})
    assert owner.errors == [("view", "camera denied")]
    await hub.aclose()
    assert owner.statuses == [], "no session ever started: the status stays"
