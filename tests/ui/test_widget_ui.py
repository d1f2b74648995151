"""The widget as a user handles it in JupyterLab: controls, live stats, layout and themes,
and every error a user meets, each shown in the widget and in ``w.error``."""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, Playwright

from tests.conftest import decode_errors, ffprobe_video

from .conftest import (
    ARTIFACTS,
    BASE_ARGS,
    CHROMIUM,
    FAKE_CAMERA,
    GRANT_CAMERA,
    INSECURE_HOST,
    KEEP_PEERS,
    SENDING,
    TOKEN,
    Server,
    assert_playing,
    copy_demo,
    kernel_json,
    new_page,
    open_and_run_all,
    poll_kernel,
    screenshot,
    wait_for_status,
    wait_playing,
    write_notebook,
)

pytestmark = pytest.mark.usefixtures("peer_network")

STATE = ("import json; print(json.dumps({'status': w.status, 'error': w.error, "
         "'sessions': len(w.hub.live), 'video': w.video, 'recordings': w.recordings, "
         "**{k: w.stats[k] for k in ('width', 'height', 'fps', 'frames_received', "
         "'recording', 'recording_bytes')}}))")


def wait_kernel(kernel: Any, condition: Any, what: str, timeout: float = 20) -> dict[str, Any]:
    state: dict[str, Any] = poll_kernel(kernel, STATE, condition, what, timeout)
    return state


def stat(page: Page, key: str) -> str:
    return page.locator(f"[data-stat={key}]").first.inner_text()


def wait_error(page: Page, words: str, name: str, timeout: float = 30_000) -> str:
    try:
        page.wait_for_function(
            "(words) => [...document.querySelectorAll('.echo-widget-error')]"
            ".some((e) => e.textContent.includes(words))", arg=words, timeout=timeout)
    except Exception:
        shot = screenshot(page, f"failure-{name}")
        raise AssertionError(f"no error with {words!r} shown: "
                             f"{page.locator('.echo-widget').all_inner_texts()}; {shot}") from None
    page.locator(".echo-widget-error", has_text=words).first.scroll_into_view_if_needed()
    screenshot(page, f"error-{name}")  # the view that shows it, scrolled into sight
    return page.locator(".echo-widget-error").first.inner_text()


def luminance(css_color: str) -> float:
    r, g, b = (float(v) for v in re.findall(r"[\d.]+", css_color)[:3])
    return (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255


def test_controls_stats_plot_layout_and_themes(lab: Server, browser: Browser) -> None:
    notebook = copy_demo(lab)
    page = new_page(browser, init_script=KEEP_PEERS)
    open_and_run_all(page, lab, notebook)
    wait_for_status(page, "connected")
    # the kernel's REMB cap, sent from the first packet on, lets the browser send at full
    # quality at once (with aiortc's own estimate it stayed near 300 kb/s for seconds)
    connected = time.monotonic()
    sending = page.evaluate(SENDING)
    while sending.get("available", 0) < 2_000_000 and time.monotonic() - connected < 3:
        time.sleep(0.2)
        sending = page.evaluate(SENDING)
    assert sending["available"] >= 2_000_000, sending
    assert sending["width"] == 640, sending
    assert_playing(page)
    kernel = lab.kernel(notebook)

    # the live stats panel, refreshed every second from the kernel
    page.wait_for_function("() => Number(document.querySelector('[data-stat=fps]')?.textContent)"
                           " > 5 && document.querySelector('.echo-widget-sparkline')"
                           ".dataset.samples >= 8", timeout=25_000)
    assert stat(page, "resolution") == "640\u00d7480"
    assert stat(page, "rtt").endswith(" ms")
    assert stat(page, "lost") == "0"
    assert "KiB" in stat(page, "recording") or "MiB" in stat(page, "recording")
    plot = page.locator("img[src^='data:image/png']")
    assert plot.count() >= 1, "w.plot() showed no figure"
    screenshot(page, "jupyterlab-controls")
    # re-run the demo's w.plot() cell now that there is history: a new figure replaces it
    first_plot = plot.first.get_attribute("src")
    page.evaluate("""() => {
      const notebook = window.jupyterapp.shell.currentWidget.content;
      notebook.activeCellIndex = notebook.widgets.findIndex(
        (cell) => cell.model.sharedModel.getSource().trim() === 'w.plot()');
      return window.jupyterapp.commands.execute('notebook:run-cell');
    }""")
    page.wait_for_function("(old) => { const img = document.querySelector("
                           "\"img[src^='data:image/png']\"); return img && img.src !== old; }",
                           arg=first_plot, timeout=15_000)
    plot.first.scroll_into_view_if_needed()
    plot.first.screenshot(path=str(ARTIFACTS / "jupyterlab-plot.png"))
    history = kernel_json(kernel, "import json; print(json.dumps(len(w.stats_history)))")
    assert history >= 8

    # hide and show the echo
    page.click("[data-control=echo]")
    assert page.locator(".echo-widget").get_attribute("data-echo") == "hidden"
    assert page.locator(".echo-widget video").nth(1).evaluate(
        "(v) => getComputedStyle(v).visibility") == "hidden"
    page.click("[data-control=echo]")
    assert page.locator(".echo-widget video").nth(1).evaluate(
        "(v) => getComputedStyle(v).visibility") == "visible"

    # resolution from the picker reaches the kernel's `video` and the forwarded stream
    page.select_option("[data-control=resolution]", "1280x720")
    page.wait_for_function("() => document.querySelector('.echo-widget video').videoWidth "
                           "=== 1280", timeout=15_000)
    # the browser's encoder may scale down (CPU, bandwidth): the kernel sees a 16:9 stream
    state = wait_kernel(kernel, lambda s: s["height"] and s["width"] * 9 == s["height"] * 16,
                        "the 16:9 stream")
    assert state["video"]["width"] == 1280  # no renegotiation
    assert state["sessions"] == 1
    # ... and from Python to the browser
    kernel_json(kernel, "w.video = {'width': 320, 'height': 240, 'frameRate': 15}\nprint(1)")
    page.wait_for_function("() => document.querySelector('.echo-widget video').videoWidth "
                           "=== 320", timeout=15_000)
    assert page.locator("[data-control=resolution]").input_value() == "320x240"
    assert page.locator("[data-control=frameRate]").input_value() == "15"
    wait_kernel(kernel, lambda s: s["width"] == 320 and s["height"] == 240,
                "the 320x240 stream")
    # the camera picker lists the cameras; choosing one pins it by deviceId in `video`
    assert page.locator("[data-control=device] option").count() >= 1
    device = page.locator("[data-control=device]").evaluate(
        "(s) => { s.value = s.options[0].value; s.dispatchEvent(new Event('change')); "
        "return s.value; }")
    state = wait_kernel(kernel, lambda s: s["video"].get("deviceId") == device,
                        "the chosen camera in w.video")
    page.wait_for_function("() => document.querySelector('.echo-widget video').videoWidth "
                           "=== 320", timeout=15_000)
    wait_playing(page)

    # recording driven from Python on the live session, shown in the panel
    stopped = kernel_json(kernel, "import json; print(json.dumps(await w.stop_recording()))")
    assert stopped == [str(lab.root / "echo.webm")]  # the demo's record_to
    [take] = kernel_json(kernel, "import json; print(json.dumps(w.start_recording('take.webm')))")
    # The kernel's own numbers first: the panel may still show the stopped recording's size.
    wait_kernel(kernel, lambda s: s["recording"] and s["recording_bytes"] >= 1024,
                "the take has its first keyframe in the file")
    page.wait_for_function("() => /KiB|MiB/.test(document.querySelector('[data-stat=recording]')"
                           ".textContent)", timeout=15_000)
    assert kernel_json(kernel, "import json; print(json.dumps(await w.stop_recording()))") == [
        take]
    assert decode_errors(Path(take)) == ""
    assert int(ffprobe_video(Path(take))["nb_read_packets"]) > 0

    # hang up (camera kept) during a recording: the session ends at once (bye, not the
    # watchdog) and the recording is finalized; then reconnect: a new session
    [hung] = kernel_json(kernel, "import json; print(json.dumps(w.start_recording('hung.webm')))")
    wait_kernel(kernel, lambda s: s["recording_bytes"] >= 1024, "the take before hanging up")
    page.click("[data-control=call]")
    hung_up_at = time.monotonic()
    wait_for_status(page, "closed")
    state = wait_kernel(kernel, lambda s: s["sessions"] == 0, "the hung-up session ended", 5)
    took = time.monotonic() - hung_up_at
    assert took < 2.0, f"the session ended {took:.1f} s after hanging up: no bye?"
    state = wait_kernel(kernel, lambda s: hung in s["recordings"], "hang-up finalized it", 10)
    assert len(state["recordings"]) == 3, state  # echo.webm and take.webm, stopped from Python
    assert int(ffprobe_video(Path(hung))["nb_read_packets"]) > 0
    assert decode_errors(Path(hung)) == ""
    assert page.locator(".echo-widget video").first.evaluate("(v) => v.srcObject !== null")
    page.click("[data-control=call]")
    wait_for_status(page, "connected")
    assert_playing(page)
    # stop the camera: the session ends too; start it again
    page.click("[data-control=camera]")
    wait_for_status(page, "closed")
    assert page.locator(".echo-widget video").first.evaluate("(v) => v.srcObject === null")
    wait_kernel(kernel, lambda s: s["sessions"] == 0 and len(s["recordings"]) == 4,
                "the camera-stopped session ended and its recording (record_to) finalized")
    page.click("[data-control=camera]")
    wait_for_status(page, "connected")
    assert_playing(page)

    # narrow output: the videos stack and nothing overflows the cell
    page.set_viewport_size({"width": 520, "height": 1000})
    page.evaluate("() => window.jupyterapp.shell.collapseLeft()")
    page.wait_for_timeout(500)
    boxes = [page.locator(".echo-widget-figure").nth(i).bounding_box() for i in (0, 1)]
    assert boxes[0] is not None
    assert boxes[1] is not None
    assert boxes[1]["y"] >= boxes[0]["y"] + boxes[0]["height"] - 1, f"not stacked: {boxes}"
    overflow = page.locator(".echo-widget").evaluate("(e) => e.scrollWidth - e.clientWidth")
    assert overflow <= 1, f"the widget overflows its cell by {overflow}px"
    screenshot(page, "jupyterlab-narrow")
    page.set_viewport_size({"width": 1280, "height": 1000})

    # themes: the widget follows JupyterLab's CSS variables
    light = page.locator(".echo-widget").evaluate("(e) => getComputedStyle(e).color")
    page.evaluate("() => window.jupyterapp.commands.execute('apputils:change-theme', "
                  "{theme: 'JupyterLab Dark'})")
    page.wait_for_function("() => document.body.dataset.jpThemeLight === 'false'",
                           timeout=15_000)
    page.wait_for_timeout(500)
    dark = page.locator(".echo-widget").evaluate("(e) => getComputedStyle(e).color")
    panel = page.locator(".echo-widget-button").first.evaluate(
        "(e) => getComputedStyle(e).backgroundColor")
    assert luminance(light) < 0.5 < luminance(dark), (light, dark)
    assert luminance(panel) < 0.5, f"buttons stay light in the dark theme: {panel}"
    screenshot(page, "jupyterlab-dark")
    page.evaluate("() => window.jupyterapp.commands.execute('apputils:change-theme', "
                  "{theme: 'JupyterLab Light'})")
    page.wait_for_function("() => document.body.dataset.jpThemeLight === 'true'",
                           timeout=15_000)
    kernel_json(kernel, "await w.aclose()\nprint(1)")
    page.context.close()


ERRORS_NOTEBOOK = [
    "from echo_widget import EchoWidget\nw = EchoWidget()\nw",
]


@pytest.fixture
def browser_without_camera(playwright: Playwright) -> Iterator[Browser]:
    """Chromium with no camera at all (no fake device), permission granted."""
    browser = playwright.chromium.launch(
        executable_path=CHROMIUM, args=[a for a in BASE_ARGS if a != FAKE_CAMERA] + [GRANT_CAMERA])
    yield browser
    browser.close()


def run_error_notebook(server: Server, page: Page, name: str, cells: list[str],
                       url: str | None = None) -> Any:
    notebook = write_notebook(server, f"{name}.ipynb", cells)
    open_and_run_all(page, server, notebook, url=url)
    return server.kernel(notebook)


def assert_kernel_error(kernel: Any, shown: str) -> None:
    state = wait_kernel(kernel, lambda s: s["error"] != "", "w.error set")
    assert state["error"] == shown, state
    assert state["sessions"] == 0, state


def test_no_camera(lab: Server, browser_without_camera: Browser) -> None:
    page = new_page(browser_without_camera)
    kernel = run_error_notebook(lab, page, "no-camera", ERRORS_NOTEBOOK)
    shown = wait_error(page, "No camera was found", "no-camera")
    assert page.locator(".echo-widget").get_attribute("data-status") == "failed"
    assert_kernel_error(kernel, shown)
    page.context.close()


def test_camera_in_use(lab: Server, browser: Browser) -> None:
    # Chromium's fake camera can't be held by another program here, so getUserMedia fails
    # the way it does then (NotReadableError), through the widget's real code path.
    in_use = ("navigator.mediaDevices.getUserMedia = () => Promise.reject("
              "new DOMException('Could not start video source', 'NotReadableError'));")
    page = new_page(browser, init_script=in_use)
    kernel = run_error_notebook(lab, page, "in-use", ERRORS_NOTEBOOK)
    shown = wait_error(page, "in use by another application", "camera-in-use")
    assert_kernel_error(kernel, shown)
    page.context.close()


def test_not_a_secure_context(lab: Server, playwright: Playwright) -> None:
    browser = playwright.chromium.launch(
        executable_path=CHROMIUM,
        args=[*BASE_ARGS, GRANT_CAMERA, f"--host-resolver-rules=MAP {INSECURE_HOST} 127.0.0.1"])
    try:
        page = new_page(browser)
        notebook = "insecure.ipynb"
        url = lab.notebook_url(notebook).replace("127.0.0.1", INSECURE_HOST)
        assert url.startswith(f"http://{INSECURE_HOST}:")
        assert TOKEN in url
        kernel = run_error_notebook(lab, page, "insecure", ERRORS_NOTEBOOK, url=url)
        shown = wait_error(page, "only available on a secure page", "insecure-context")
        assert f"http://{INSECURE_HOST}:" in shown
        assert "SSH tunnel" in shown
        assert "Open in a browser tab" in shown
        assert page.locator("[data-control=popout]").is_visible()  # the pop-out page's button
        assert_kernel_error(kernel, shown)
    finally:
        browser.close()


VSCODE_WEBVIEW = """
window.acquireVsCodeApi = () => ({postMessage() {}, getState() {}, setState() {}});
navigator.mediaDevices.getUserMedia = () =>
  Promise.reject(new DOMException("Permission denied", "NotAllowedError"));
"""


def test_vscode_webview_is_named_as_what_blocks_the_camera(
        lab: Server, browser: Browser) -> None:
    """VS Code's notebook webview rejects getUserMedia; reproduced here with its API present
    and the same rejection, since VS Code itself can't run on this machine."""
    page = new_page(browser, init_script=VSCODE_WEBVIEW)
    try:
        kernel = run_error_notebook(lab, page, "vscode", ERRORS_NOTEBOOK)
        shown = wait_error(page, "VS Code's notebook view", "vscode-webview")
        assert "microsoft/vscode#119127" in shown
        assert "JupyterLab" in shown
        assert page.locator("[data-control=popout]").is_visible()  # the pop-out page's button
        assert_kernel_error(kernel, shown)
    finally:
        page.context.close()


def test_ffmpeg_missing_is_said_and_the_echo_runs(lab: Server, browser: Browser) -> None:
    page = new_page(browser)
    kernel = run_error_notebook(lab, page, "no-ffmpeg", [
        "import os\nos.environ['ECHO_WIDGET_FFMPEG'] = '/nonexistent/ffmpeg'\n"
        "from echo_widget import EchoWidget\nw = EchoWidget(record_to='never.webm')\nw"])
    shown = wait_error(page, "ECHO_WIDGET_FFMPEG", "ffmpeg-missing")
    wait_for_status(page, "connected")
    assert_playing(page)
    state = kernel_json(kernel, STATE)
    assert state["error"] == shown, state
    assert state["status"] == "connected", state
    assert not (lab.root / "never.webm").exists()
    kernel_json(kernel, "await w.aclose()\nprint(1)")
    page.context.close()


def test_ice_failure_says_to_configure_turn(lab: Server, browser: Browser) -> None:
    page = new_page(browser)
    kernel = run_error_notebook(lab, page, "ice-failed", [
        "from echo_widget import EchoWidget\n"
        "w = EchoWidget(ice_servers=[{'urls': 'turn:127.0.0.1:9', 'username': 'u', "
        "'credential': 'p'}], ice_transport_policy='relay', connect_timeout=4)\nw"])
    shown = wait_error(page, "TURN server", "ice-failed")
    wait_for_status(page, "failed")
    assert "ice_servers" in shown
    assert "ECHO_WIDGET_ICE_SERVERS" in shown
    state = wait_kernel(kernel, lambda s: s["status"] == "failed", "the session failed")
    assert "TURN server" in state["error"]
    assert state["sessions"] == 0
    # the kernel's error says how far ICE got: no relay candidate of its own
    seen = re.search(r"What the kernel saw: (.*)", shown)
    assert seen, shown
    assert "; kernel candidates []; browser candidates [" in seen[1], shown
    page.context.close()


def test_a_kernel_that_stops_answering_or_restarts_is_said(
        lab: Server, browser: Browser) -> None:
    page = new_page(browser)
    kernel = run_error_notebook(lab, page, "kernel-stopped", ERRORS_NOTEBOOK)
    wait_for_status(page, "connected")
    pid = kernel_json(kernel, "import os; print(os.getpid())")
    os.kill(pid, signal.SIGSTOP)  # as a kernel that is busy, restarting or gone
    try:
        shown = wait_error(page, "The kernel stopped answering", "kernel-stopped")
        assert "re-run the cell" in shown
    finally:
        os.kill(pid, signal.SIGCONT)
    wait_for_status(page, "connected")
    page.wait_for_function("() => document.querySelector('.echo-widget-error').textContent "
                           "=== ''", timeout=15_000)
    wait_playing(page)  # the echo restarts at the browser's next keyframe

    # a restarted kernel: the view left on the page says so (its peer is gone)
    page.evaluate("() => window.jupyterapp.shell.currentWidget.sessionContext.session"
                  ".kernel.restart()")
    shown = wait_error(page, "The kernel stopped answering", "kernel-restarted")
    assert "restarting" in shown
    page.context.close()


def assert_echo_goes_on_with_error(page: Page, kernel: Any, shown: str) -> None:
    """A recording error leaves the echo playing, and w.error says what the view shows;
    then the widget is closed and the page too."""
    wait_for_status(page, "connected")
    wait_playing(page)
    assert kernel_json(kernel, STATE)["error"] == shown
    kernel_json(kernel, "await w.aclose()\nprint(1)")
    page.context.close()


def test_a_killed_kernel_is_said_lost(lab: Server, browser: Browser) -> None:
    page = new_page(browser)
    kernel = run_error_notebook(lab, page, "kernel-killed", ERRORS_NOTEBOOK)
    wait_for_status(page, "connected")
    pid = kernel_json(kernel, "import os; print(os.getpid())")
    os.kill(pid, signal.SIGKILL)  # its peer connection goes with it
    shown = wait_error(page, "The connection to the kernel was lost", "kernel-lost",
                       timeout=60_000)
    assert "Re-run the cell" in shown
    wait_for_status(page, "failed")
    page.context.close()


def test_a_view_past_the_session_cap_is_refused_and_stops_waiting(
        lab: Server, browser: Browser) -> None:
    page = new_page(browser)
    kernel = run_error_notebook(lab, page, "session-cap", [
        "from echo_widget import EchoWidget\nw = EchoWidget(max_sessions=1)\nw", "w"])
    page.wait_for_function(
        "() => { const s = [...document.querySelectorAll('.echo-widget')]"
        ".map((v) => v.dataset.status).sort().join(' '); return s === 'connected failed'; }",
        timeout=30_000)
    wait_error(page, "already has 1 live session", "session-cap")
    [shown] = [e for e in page.locator(".echo-widget-error").all_inner_texts() if e]
    assert "max_sessions" in shown
    state = kernel_json(kernel, STATE)
    assert (state["status"], state["sessions"]) == ("connected", 1), state
    page.context.close()


def test_ffmpeg_exiting_is_said_in_the_view_and_the_echo_goes_on(
        lab: Server, browser: Browser) -> None:
    page = new_page(browser)
    kernel = run_error_notebook(lab, page, "ffmpeg-exited", [
        "from echo_widget import EchoWidget\nw = EchoWidget(record_to='cut.webm')\nw"])
    wait_for_status(page, "connected")
    wait_kernel(kernel, lambda s: s["recording_bytes"] > 0, "recording")
    kernel_json(kernel, "import os, signal\n"
                        "os.kill(w.hub.current.recorder.pid, signal.SIGKILL)\nprint(1)")
    shown = wait_error(page, "ffmpeg exited", "ffmpeg-exited")
    assert "the echo goes on" in shown
    assert_echo_goes_on_with_error(page, kernel, shown)


def test_no_ffmpeg_found_is_said_and_the_echo_runs(lab: Server, browser: Browser) -> None:
    page = new_page(browser)
    kernel = run_error_notebook(lab, page, "no-ffmpeg-found", [
        "import os, sys\nos.environ.pop('ECHO_WIDGET_FFMPEG', None)\n"
        "os.environ['PATH'] = ''  # no ffmpeg on PATH\n"
        "sys.modules['imageio_ffmpeg'] = None  # and none bundled\n"
        "from echo_widget import EchoWidget\nw = EchoWidget(record_to='never.webm')\nw"])
    shown = wait_error(page, "No ffmpeg found", "no-ffmpeg-found")
    assert "apt install ffmpeg" in shown
    assert_echo_goes_on_with_error(page, kernel, shown)
    assert not (lab.root / "never.webm").exists()


def test_widget_javascript_that_fails_to_load_is_said(lab: Server, browser: Browser) -> None:
    page = new_page(browser)
    kernel = run_error_notebook(lab, page, "broken-js", [
        "from echo_widget import EchoWidget\n"
        "class BrokenEcho(EchoWidget):\n"
        "    _esm = 'export default { render( }'  # a syntax error: the module can't load\n"
        "    view_timeout = 3.0\n"
        "w = BrokenEcho()\nw"])
    state = wait_kernel(kernel, lambda s: s["error"] != "", "w.error set", timeout=30)
    assert "JavaScript did not load" in state["error"]
    assert "anywidget" in state["error"]
    assert page.locator(".echo-widget").count() == 0
    screenshot(page, "error-broken-js")
    page.context.close()
