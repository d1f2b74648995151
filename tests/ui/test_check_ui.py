"""The connection check with a real page: a widget in this process serves its pop-out page to
Chromium (async Playwright on this test's loop; no Jupyter server needed), and ``w.check()``
or the page's "Check connection" gives each verdict: no TURN and a reachable browser, a dead
TURN server, and the local coturn with a browser that can't reach the kernel directly
(Chromium without ``--allow-loopback-in-peer-connection`` gathers nothing on loopback, as a
browser far from a remote kernel reaches none of its addresses)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from playwright.async_api import Page, async_playwright

from echo_widget import EchoWidget
from echo_widget.check import DIRECT, NEEDS_TURN, TURN_UNREACHABLE

from .conftest import ARTIFACTS, BASE_ARGS, CHROMIUM, GRANT_CAMERA
from .test_turn import TURN_PASSWORD, TURN_USER, coturn  # noqa: F401 (a fixture)

pytestmark = pytest.mark.usefixtures("peer_network")

LOOPBACK = "--allow-loopback-in-peer-connection"
DEAD_TURN = "turn:127.0.0.1:9"
FAR_AWAY = r"""
// The kernel's addresses are out of this browser's reach, as a remote kernel's are: every
// candidate in an answer is rewritten to an address the namespace has no route to.
const setRemote = RTCPeerConnection.prototype.setRemoteDescription;
RTCPeerConnection.prototype.setRemoteDescription = function (description) {
  const sdp = description?.sdp?.replace(
    /(a=candidate:\S+ \d+ udp \d+) \S+ (\d+)/g, "$1 10.255.255.1 $2");
  return setRemote.call(this, sdp ? { type: description.type, sdp } : description);
};
"""


@asynccontextmanager
async def open_popout(widget: EchoWidget, *, far: bool = False) -> AsyncIterator[Page]:
    """The widget's pop-out page in Chromium; ``far``: a browser that can't reach the
    kernel's addresses (no loopback candidates of its own, the kernel's rewritten)."""
    args = [*BASE_ARGS, GRANT_CAMERA]
    if far:
        args.remove(LOOPBACK)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=args)
        try:
            context = await browser.new_context(permissions=["camera"],
                                                viewport={"width": 1280, "height": 1000})
            if far:
                await context.add_init_script(FAR_AWAY)
            page = await context.new_page()
            await page.goto(widget.popout().url)
            await page.wait_for_selector(".echo-widget [data-control=check]")
            yield page
        finally:
            await widget.aclose()
            await browser.close()


async def check_in(page: Page, widget: EchoWidget, name: str) -> Any:
    report = await widget.check(timeout=3)
    await page.wait_for_function(
        "(verdict) => document.querySelector('.echo-widget-check')?.dataset.verdict === verdict",
        arg=report.verdict, timeout=5_000)
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / f"check-{name}.png"), full_page=True)
    print(f"\n{report}")
    return report


async def test_no_turn_and_a_browser_on_the_kernel_machine_is_direct() -> None:
    widget = EchoWidget(ice_servers=[])
    async with open_popout(widget) as page:
        report = await check_in(page, widget, "direct")
        assert report.verdict == DIRECT
        [view] = report.views
        assert (view.page, view.secure, view.camera) == ("popout", True, "granted")
        assert "host" in view.candidates
        assert view.direct is True
        shown = await page.inner_text(".echo-widget-check")
        assert shown.startswith(f"Verdict: {DIRECT}.")


async def test_a_dead_turn_server_is_named_from_the_pages_control() -> None:
    widget = EchoWidget(ice_servers=[{"urls": DEAD_TURN, "username": "u", "credential": "p"}])
    async with open_popout(widget) as page:
        await page.click("[data-control=check]")
        await page.wait_for_function(
            "() => document.querySelector('.echo-widget-check')?.dataset.verdict"
            ".startsWith('TURN configured but unreachable')", timeout=15_000)
        shown = await page.inner_text(".echo-widget-check")
        assert f"{TURN_UNREACHABLE}: no answer from 127.0.0.1:9 (udp)" in shown
        assert "a pop-out page: a secure context; camera permission granted" in shown
        ARTIFACTS.mkdir(exist_ok=True)
        await page.screenshot(path=str(ARTIFACTS / "check-dead-turn.png"), full_page=True)


async def test_a_browser_that_cant_reach_the_kernel_needs_the_local_coturn(
        coturn: str) -> None:  # noqa: F811
    widget = EchoWidget(ice_servers=[{"urls": coturn, "username": TURN_USER,
                                      "credential": TURN_PASSWORD}])
    async with open_popout(widget, far=True) as page:
        report = await check_in(page, widget, "needs-turn")
        assert report.verdict == NEEDS_TURN
        assert "the configured TURN server is reachable" in report.reason
        assert report.views[0].direct is False
        assert report.turn[0].ok
