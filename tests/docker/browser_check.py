"""The real-browser echo against the containerized JupyterLab (run by tools/docker-smoke).

Usage (inside the namespace where the container runs with --network host):
    python tests/docker/browser_check.py URL TOKEN
Opens the image's own demo notebook in Chromium with a synthetic camera, runs it, and checks
that both videos play and the kernel in the container forwards frames; then runs the frames
notebook (PyAV decoding, numpy, Pillow in the container): its snapshot shows, its processed
video plays and the motion box is drawn. Exits non-zero if not.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

from playwright.sync_api import sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.ui.conftest import (
    BASE_ARGS,
    CHROMIUM,
    GRANT_CAMERA,
    assert_playing,
    open_and_run_all,
    screenshot,
    wait_for_status,
)
from tests.ui.test_vision_ui import wait_processed_playing


class ContainerServer:
    """The container's JupyterLab, as the browser-test helpers expect a server."""

    kind = "lab"

    def __init__(self, url: str, token: str) -> None:
        self.url, self.token = url, token

    def notebook_url(self, name: str) -> str:
        return f"{self.url}/lab/workspaces/container/tree/{name}?reset&token={self.token}"


def frame_counts(text: str) -> tuple[int, int]:
    """Frames received and echoed, from the stats panel's "in / echo / rec" value."""
    found = re.fullmatch(r"(\d+) / (\d+) / \d+", text.strip())
    assert found, f"no frame counts in {text!r}"
    return int(found.group(1)), int(found.group(2))


def main(url: str, token: str) -> None:
    server: Any = ContainerServer(url, token)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[*BASE_ARGS, GRANT_CAMERA])
        page = browser.new_context(permissions=["camera"],
                                   viewport={"width": 1280, "height": 1000}).new_page()
        open_and_run_all(page, server, "notebooks/echo.ipynb")
        wait_for_status(page, "connected")
        assert_playing(page)
        stats = page.locator("[data-stat=frames]")
        page.wait_for_function("() => /^[1-9]/.test(document.querySelector('[data-stat=frames]')"
                               "?.textContent ?? '')", timeout=15_000)
        before = frame_counts(stats.inner_text())
        page.wait_for_timeout(1500)
        after = frame_counts(stats.inner_text())
        assert after[0] > before[0] > 0, (before, after)
        assert after[1] > before[1] > 0, (before, after)
        assert page.locator(".echo-widget-error").inner_text() == ""
        # Run All leaves the notebook at its end: show the widget, once a frame is painted
        page.locator(".echo-widget").first.scroll_into_view_if_needed()
        page.locator(".echo-widget video").nth(1).evaluate(
            "(v) => new Promise((done) => v.requestVideoFrameCallback(() => done(true)))")
        screenshot(page, "container-jupyterlab-echo")
        page.context.close()  # the tab closes: the session ends, the recording is finalized
        print("browser echo against the container: OK", after)

        page = browser.new_context(permissions=["camera"],
                                   viewport={"width": 1280, "height": 1000}).new_page()
        open_and_run_all(page, server, "notebooks/frames.ipynb")
        wait_for_status(page, "connected")
        assert_playing(page)
        page.wait_for_selector(".jp-OutputArea-output img", timeout=30_000)  # the snapshot
        played = wait_processed_playing(page)
        page.locator(".echo-widget").first.scroll_into_view_if_needed()
        page.wait_for_function(
            "() => Number(document.querySelector('canvas.echo-widget-overlay')?.dataset"
            ".shapes ?? 0) > 0", timeout=30_000)  # the motion box
        screenshot(page, "container-jupyterlab-frames")
        page.context.close()
        browser.close()
    print("frames notebook in the container: OK", played)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
