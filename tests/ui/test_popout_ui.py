"""VS Code's webview blocks the camera: the view offers the pop-out page, which a second
browser context (as the user's own browser) opens; it echoes and records while the notebook's
view shows its status and stats. VS Code itself can't run here: its webview is reproduced
in Chromium (``acquireVsCodeApi`` defined, ``getUserMedia`` rejected as it does)."""

from __future__ import annotations

import socket
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from playwright.sync_api import Browser

from tests.conftest import decode_errors, ffprobe_video

from .conftest import (
    Server,
    assert_playing,
    kernel_json,
    new_page,
    open_and_run_all,
    screenshot,
    wait_for_status,
    write_notebook,
)
from .test_widget_ui import VSCODE_WEBVIEW, wait_error, wait_kernel

pytestmark = pytest.mark.usefixtures("peer_network")


def http_status(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_vscode_view_opens_a_popout_page_that_echoes_and_records(
        lab: Server, browser: Browser) -> None:
    notebook = write_notebook(lab, "popout.ipynb", [
        "from echo_widget import EchoWidget\nw = EchoWidget(record_to='popout.webm')\nw"])
    page = new_page(browser, init_script=VSCODE_WEBVIEW)
    open_and_run_all(page, lab, notebook)
    shown = wait_error(page, "VS Code's notebook view", "popout-vscode")
    assert "Open in a browser tab" in shown
    kernel = lab.kernel(notebook)
    popout_button = page.locator("[data-control=popout]")
    assert popout_button.is_visible()
    assert not page.locator("[data-control=popout-link]").is_visible()
    popout_button.click()
    link = page.locator("[data-control=popout-link]")
    link.wait_for(state="visible", timeout=10_000)
    assert not popout_button.is_visible()
    url = link.get_attribute("href")
    assert url is not None
    assert url.startswith("http://127.0.0.1:")
    assert link.get_attribute("target") == "_blank"
    port = int(url.split(":")[2].split("/")[0])
    note = page.locator(".echo-widget-popout-note").inner_text()
    assert f"ssh -L {port}:127.0.0.1:{port}" in note
    assert "TURN" in note
    assert kernel_json(kernel, "import json; print(json.dumps(w._popout['url']))") == url

    # the token is enforced
    assert http_status(url)[0] == 200
    token = url.rstrip("/").rsplit("/", 1)[1]
    for bad in (f"http://127.0.0.1:{port}/", url.replace(token, token[::-1]),
                f"http://127.0.0.1:{port}/{token}x/widget.js"):
        assert http_status(bad) == (403, b""), bad

    # the user's own browser opens the link: a view of its own, with the camera
    popout = new_page(browser)
    started = time.monotonic()
    popout.goto(url)
    wait_for_status(popout, "connected")
    assert_playing(popout)
    print(f"\npop-out page: link opened -> connected in {time.monotonic() - started:.1f} s")
    assert popout.locator("[data-control=popout]").is_hidden()
    assert popout.locator("[data-control=popout-link]").is_hidden()
    # the notebook's view (no camera there) shows the pop-out session's status and stats
    page.wait_for_function(
        "() => document.querySelector('.echo-widget-popout-status')?.textContent"
        ".includes('1 open · status connected')", timeout=10_000)
    # and its own status says where the echo is, not that it failed
    page.wait_for_function(
        "() => document.querySelector('.echo-widget-status')?.textContent === "
        "\"Status: in the browser tab (this page can't use the camera)\"", timeout=10_000)
    page.wait_for_function(
        "() => Number(document.querySelector('[data-stat=fps]')?.textContent) > 5",
        timeout=15_000)
    state = wait_kernel(kernel, lambda s: s["recording_bytes"] >= 4096,
                        "the pop-out session recorded")
    assert state["sessions"] == 1
    assert state["status"] == "connected"
    screenshot(popout, "popout-page")
    screenshot(page, "popout-notebook-view")

    # closing the page ends its session within 2 s and finalizes the recording
    popout.context.close()
    closed_at = time.monotonic()
    wait_kernel(kernel, lambda s: s["sessions"] == 0, "the pop-out session ended", 5)
    took = time.monotonic() - closed_at
    assert took < 2.0, f"the session ended {took:.1f} s after the page closed"
    state = wait_kernel(kernel, lambda s: s["recordings"], "the recording finalized", 10)
    recording = Path(state["recordings"][0])
    assert recording == lab.root / "popout.webm"
    assert int(ffprobe_video(recording)["nb_read_packets"]) > 30
    assert decode_errors(recording) == ""
    page.wait_for_function(
        "() => document.querySelector('.echo-widget-popout-status')?.textContent"
        ".includes('0 open')", timeout=5_000)

    # aclose() stops the endpoint: nothing listens, and the view offers the button again
    assert listening(port)
    kernel_json(kernel, "await w.aclose()\nprint(1)")
    assert not listening(port), "the pop-out endpoint still listens after aclose()"
    popout_button.wait_for(state="visible", timeout=5_000)
    assert link.is_hidden()
    page.context.close()
