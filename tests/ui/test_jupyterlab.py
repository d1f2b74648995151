"""JupyterLab 4 + Chromium with a synthetic camera: the product as a user meets it."""

from __future__ import annotations

import time

import pytest
from playwright.sync_api import Browser, Playwright

from .conftest import (
    BASE_ARGS,
    CHROMIUM,
    Server,
    assert_playing,
    kernel_json,
    new_page,
    open_and_run_all,
    run_all,
    screenshot,
    wait_for_status,
    write_notebook,
)
from .demo_flow import run_demo

pytestmark = pytest.mark.usefixtures("peer_network")

TWO_VIEWS = [
    "from echo_widget import EchoWidget\nall_widgets = globals().setdefault('all_widgets', [])",
    "w = EchoWidget(record_to='two.webm')\nall_widgets.append(w)\nw",
    "w",
]
STATE = ("import json; print(json.dumps([{'status': x.status, 'sessions': len(x.hub.live), "
         "'recordings': x.recordings, 'error': x.error} for x in all_widgets]))")


def test_demo_notebook_echoes_the_camera_through_the_kernel(lab: Server, browser: Browser) -> None:
    run_demo(lab, browser, "jupyterlab-echo")


def test_two_views_echo_at_once_and_rerunning_tears_them_down(
        lab: Server, browser: Browser) -> None:
    notebook = write_notebook(lab, "two-views.ipynb", TWO_VIEWS)
    page = new_page(browser)
    open_and_run_all(page, lab, notebook)
    wait_for_status(page, "connected", count=2)
    assert_playing(page, 0)
    assert_playing(page, 1)
    kernel = lab.kernel(notebook)
    [first] = kernel_json(kernel, STATE)
    assert first["sessions"] == 2
    screenshot(page, "jupyterlab-two-views")

    # a camera change made in the kernel reaches both views at once, on their live sessions
    kernel_json(kernel, "import json\nall_widgets[-1].video = {'width': 320, 'height': 240}\n"
                        "print(json.dumps(None))")
    page.wait_for_function(
        "() => { const views = [...document.querySelectorAll('.echo-widget')];"
        " return views.length === 2 && views.every((v) => {"
        "   const [local, echo] = v.querySelectorAll('video');"
        "   return local.videoWidth === 320 && echo.videoWidth === 320; }); }",
        timeout=30_000)
    wait_for_status(page, "connected", count=2)
    [changed] = kernel_json(kernel, STATE)
    assert (changed["sessions"], changed["error"]) == (2, ""), changed

    run_all(page)  # re-run: a new widget; the old views go away and say bye
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        state = kernel_json(kernel, STATE)
        if len(state) == 2 and state[0]["sessions"] == 0 and len(state[0]["recordings"]) == 2:
            break
        time.sleep(0.25)
    old = state[0]
    assert old["status"] == "closed", state
    assert old["sessions"] == 0, state
    assert sorted(old["recordings"]) == [str(lab.root / "two-1.webm"), str(lab.root / "two.webm")]
    wait_for_status(page, "connected", count=2)
    assert_playing(page, 0)
    assert_playing(page, 1)
    new = kernel_json(kernel, STATE)[1]
    assert new["sessions"] == 2
    # closing every widget from a cell while its sessions are live finalizes everything
    kernel_json(kernel, "import asyncio, json\nawait asyncio.gather(*(x.aclose() for x in "
                "all_widgets))\nprint(json.dumps(None))")
    final = kernel_json(kernel, STATE)
    assert [s["sessions"] for s in final] == [0, 0]
    assert [s["status"] for s in final] == ["closed", "closed"]
    assert len(final[1]["recordings"]) == 2
    page.context.close()


def test_denied_camera_says_so_and_opens_no_session(lab: Server, playwright: Playwright) -> None:
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=BASE_ARGS)
    try:
        page = new_page(browser, camera=False)
        notebook = write_notebook(lab, "denied.ipynb", TWO_VIEWS[:2])
        open_and_run_all(page, lab, notebook)
        wait_for_status(page, "failed")
        message = page.locator(".echo-widget-error").inner_text()
        assert "Camera permission was denied" in message
        screenshot(page, "jupyterlab-camera-denied")
        kernel = lab.kernel(notebook)
        deadline = time.monotonic() + 10
        [state] = kernel_json(kernel, STATE)
        while not state["error"] and time.monotonic() < deadline:
            time.sleep(0.25)
            [state] = kernel_json(kernel, STATE)
        assert state["error"] == message  # the view reports it: w.error says it too
        assert state["sessions"] == 0
        assert state["status"] == "idle"
    finally:
        browser.close()
