"""The demo notebook, as a user meets it, in any Jupyter front end."""

from __future__ import annotations

import time

from playwright.sync_api import Browser

from tests.conftest import decode_errors, ffprobe_video

from .conftest import (
    Server,
    assert_playing,
    copy_demo,
    kernel_json,
    new_page,
    open_and_run_all,
    screenshot,
    wait_for_status,
)

STATS = "import json; print(json.dumps({**w.stats, 'status': w.status, 'error': w.error, " \
        "'recordings': w.recordings, 'sessions': len(w.hub.live)}))"


def run_demo(server: Server, browser: Browser, shot_name: str) -> None:
    notebook = copy_demo(server)
    page = new_page(browser)
    open_and_run_all(page, server, notebook)
    wait_for_status(page, "connected")
    assert_playing(page)
    widget = page.locator(".echo-widget")
    assert widget.locator(".echo-widget-error").inner_text() == ""
    assert "connected" in widget.locator(".echo-widget-status").inner_text()

    # The echo really goes through the kernel: its counters grow.
    kernel = server.kernel(notebook)
    before = kernel_json(kernel, STATS)
    time.sleep(2)
    after = kernel_json(kernel, STATS)
    assert after["status"] == "connected"
    assert after["error"] == ""
    assert after["frames_received"] > before["frames_received"] > 0
    assert after["frames_forwarded"] > before["frames_forwarded"] > 0
    # Chrome re-sends old packets over RTX to probe bandwidth: none is echoed twice.
    assert after["frames_forwarded"] <= after["frames_received"] + after["losses"], after
    assert after["frames_recorded"] > 0
    assert after["fps"] > 5
    # the stats panel shows the kernel's numbers; the demo's w.plot() cell drew a figure
    page.wait_for_function("() => Number(document.querySelector('[data-stat=fps]')"
                           "?.textContent) > 5", timeout=10_000)
    resolution = widget.locator("[data-stat=resolution]").inner_text()
    assert resolution == "640\u00d7480", f"the stats panel shows {resolution!r}"
    assert page.locator("img[src^='data:image/png']").count() >= 1, "w.plot() drew nothing"
    # Run All leaves the notebook at its end: show the widget, once a frame is painted
    page.locator(".echo-widget").first.scroll_into_view_if_needed()
    page.locator(".echo-widget video").nth(1).evaluate(
        "(v) => new Promise((done) => v.requestVideoFrameCallback(() => done(true)))")
    screenshot(page, shot_name)
    # the view measured its way to the first echoed frame, phase by phase
    setup = kernel_json(kernel, STATS)["setup_ms"]
    assert setup is not None, "the view sent no setup phases"
    assert list(setup) == ["view", "camera", "signaling", "connect", "first_frame", "total"], setup
    assert 0 < setup["total"] < 30_000, setup

    # Closing the tab ends the session at once (the view's bye, not the 3.5 s watchdog) and
    # finalizes the recording.
    page.context.close()
    closed_at = time.monotonic()
    state = kernel_json(kernel, STATS)
    while state["sessions"] and time.monotonic() < closed_at + 5:
        time.sleep(0.05)
        state = kernel_json(kernel, STATS)
    took = time.monotonic() - closed_at
    assert state["sessions"] == 0, state
    assert took < 2.0, f"the session ended {took:.1f} s after the tab closed: no bye?"
    deadline = time.monotonic() + 20
    while not state["recordings"] and time.monotonic() < deadline:
        time.sleep(0.25)
        state = kernel_json(kernel, STATS)
    assert state["status"] == "closed", state
    assert len(state["recordings"]) == 1, state
    final = kernel_json(kernel, "await w.aclose()\n" + STATS)
    recording = final["recordings"][0]
    assert recording == str(server.root / "echo.webm")
    probe = ffprobe_video(server.root / "echo.webm")
    assert probe["codec_name"] == "vp8"
    assert int(probe["nb_read_packets"]) == final["frames_recorded"]
    assert decode_errors(server.root / "echo.webm") == ""
    children = kernel_json(kernel, "import os, json; print(json.dumps([open(f'/proc/{p}/cmdline')"
                           ".read() for p in os.listdir('/proc') if p.isdigit() and "
                           "open(f'/proc/{p}/stat').read().rsplit(')', 1)[1].split()[1] == "
                           "str(os.getpid())]))")
    assert not [c for c in children if "ffmpeg" in c], children
