"""The demo notebook in a real JupyterLab and a real Chromium with a synthetic camera.

Runs inside the suite's private loopback namespace (tools/netns-run). Screenshots
go to ``test-artifacts/`` (not tracked); the path is printed.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Page, sync_playwright

from ..conftest import decode_errors, ffprobe_video

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = "/usr/lib/chromium/chromium"
TOKEN = "echo-widget-test"
CHROMIUM_ARGS = [
    "--no-sandbox", "--headless=new", "--disable-gpu", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
    "--allow-loopback-in-peer-connection",
]

pytestmark = pytest.mark.usefixtures("peer_network")


@dataclass
class Server:
    url: str
    root: Path
    process: subprocess.Popen[bytes]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def jupyterlab(tmp_path: Path) -> Iterator[Server]:
    root = tmp_path / "root"
    root.mkdir()
    shutil.copy(ROOT / "notebooks" / "echo.ipynb", root / "echo.ipynb")
    home = tmp_path / "home"
    env = {**os.environ, "HOME": str(home), "JUPYTER_CONFIG_DIR": str(home / "config"),
           "JUPYTER_DATA_DIR": str(home / "data"), "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
           "IPYTHONDIR": str(home / "ipython"), "JUPYTER_PLATFORM_DIRS": "1"}
    port = _free_port()
    log = (tmp_path / "jupyter.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--allow-root", "--no-browser",
         "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
         f"--ServerApp.root_dir={root}", f"--IdentityProvider.token={TOKEN}",
         "--LabApp.expose_app_in_browser=True", "--LabApp.news_url=",
         "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
        cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"{url}/api/status?token={TOKEN}", timeout=2):
                break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("JupyterLab did not start:\n" +
                                     (tmp_path / "jupyter.log").read_text()[-3000:]) from None
            time.sleep(0.2)
    try:
        yield Server(url, root, process)
    finally:
        os.killpg(process.pid, 15)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
            process.wait()
        log.close()


FRAMES_PLAYED = """async (selector) => {
  const video = document.querySelector(selector);
  if (!video) return {width: 0, frames: 0};
  let frames = 0;
  const tick = () => { frames += 1; video.requestVideoFrameCallback(tick); };
  video.requestVideoFrameCallback(tick);
  await new Promise((resolve) => setTimeout(resolve, 2000));
  return {width: video.videoWidth, frames};
}"""


def _numbers(text: str) -> dict[str, int]:
    found = re.search(r"received (\d+), forwarded (\d+), recorded (\d+)", text)
    assert found, f"no frame counts in the stats line {text!r}"
    return dict(zip(("received", "forwarded", "recorded"), map(int, found.groups()), strict=True))


def _run_demo(page: Page, server: Server) -> None:
    page.goto(f"{server.url}/lab/tree/echo.ipynb?token={TOKEN}")
    page.wait_for_function("() => window.jupyterapp !== undefined", timeout=60_000)
    page.evaluate("() => window.jupyterapp.restored")
    page.wait_for_function(
        """() => {
          const panel = window.jupyterapp.shell.currentWidget;
          return panel && panel.sessionContext && panel.sessionContext.session &&
                 panel.sessionContext.session.kernel &&
                 panel.sessionContext.session.kernel.status === 'idle';
        }""", timeout=60_000)
    page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")


def test_demo_notebook_echoes_the_camera_through_the_kernel(jupyterlab: Server) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(permissions=["camera"],
                                      viewport={"width": 1280, "height": 900})
        page = context.new_page()
        _run_demo(page, jupyterlab)
        widget = page.locator(".echo-widget")
        try:
            widget.wait_for(timeout=60_000)
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "jupyterlab-failure.png"))
            outputs = page.locator(".jp-OutputArea-output").all_inner_texts()
            raise AssertionError(f"the widget did not render; cell outputs: {outputs}, "
                                 f"screenshot: {ARTIFACTS / 'jupyterlab-failure.png'}") from None
        page.wait_for_function(
            "() => document.querySelector('.echo-widget')?.dataset.status === 'connected'",
            timeout=30_000)
        local = page.evaluate(FRAMES_PLAYED, ".echo-widget-figure:nth-child(1) video")
        echo = page.evaluate(FRAMES_PLAYED, ".echo-widget-figure:nth-child(2) video")
        assert local["width"] > 0, "the local webcam video shows nothing"
        assert local["frames"] > 10, f"the local video is not playing: {local}"
        assert echo["width"] > 0, "the echo video shows nothing"
        assert echo["frames"] > 10, f"the echo video is not playing: {echo}"
        first = _numbers(widget.locator(".echo-widget-stats").inner_text())
        page.wait_for_timeout(1500)
        second = _numbers(widget.locator(".echo-widget-stats").inner_text())
        assert second["received"] > first["received"] > 0, (first, second)
        assert second["forwarded"] > first["forwarded"] > 0, (first, second)
        assert second["recorded"] > 0, second
        assert widget.locator(".echo-widget-error").inner_text() == ""
        assert "connected" in widget.locator(".echo-widget-status").inner_text()
        shot = ARTIFACTS / "jupyterlab-echo.png"
        page.screenshot(path=str(shot))
        print(f"\nscreenshot: {shot}")
        page.close()  # closing the tab ends the session and finalizes the recording
        recording = jupyterlab.root / "echo.webm"
        deadline = time.monotonic() + 20
        while _ffmpeg_running(jupyterlab.root) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _ffmpeg_running(jupyterlab.root), "ffmpeg still runs after the tab closed"
        context.close()
        browser.close()
    probe = ffprobe_video(recording)
    assert probe["codec_name"] == "vp8"
    assert int(probe["nb_read_packets"]) >= second["recorded"]
    assert decode_errors(recording) == ""


def _ffmpeg_running(root: Path) -> bool:
    result = subprocess.run(["pgrep", "-f", f"ffmpeg.*{root}"], capture_output=True, check=False)
    return result.returncode == 0
