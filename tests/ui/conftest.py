"""Real Jupyter front ends and a real Chromium, inside the suite's private loopback namespace.

A server runs per test module (JupyterLab or Notebook 7) in a temporary root with isolated
config/data/runtime dirs and a token. ``Server.kernel(path)`` attaches a second client to the
kernel of an open notebook, so a test can read the widget's state on the kernel side.
Screenshots go to ``test-artifacts/`` (not tracked).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat
import pytest
from jupyter_client import BlockingKernelClient
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = "/usr/lib/chromium/chromium"
TOKEN = "echo-widget-test"
BASE_ARGS = [
    "--no-sandbox", "--headless=new", "--disable-gpu", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--use-fake-device-for-media-stream", "--allow-loopback-in-peer-connection",
]
GRANT_CAMERA = "--use-fake-ui-for-media-stream"
FAKE_CAMERA = "--use-fake-device-for-media-stream"
INSECURE_HOST = "echo.test"
LOCAL_HOSTNAMES = f"['localhost', '{INSECURE_HOST}']"


@dataclass
class Server:
    kind: str
    url: str
    root: Path
    runtime: Path
    process: subprocess.Popen[bytes]
    kernels: list[BlockingKernelClient] = field(default_factory=list)

    def notebook_url(self, name: str) -> str:
        if self.kind == "lab":  # a fresh workspace per notebook: no other notebook restored
            workspace = name.replace(".", "-")
            return f"{self.url}/lab/workspaces/{workspace}/tree/{name}?reset&token={TOKEN}"
        return f"{self.url}/notebooks/{name}?token={TOKEN}"

    def kernel(self, notebook: str) -> BlockingKernelClient:
        """A client on the kernel that the front end started for ``notebook``."""
        with urllib.request.urlopen(f"{self.url}/api/sessions?token={TOKEN}") as response:
            sessions = json.load(response)
        kernel_id = next(s["kernel"]["id"] for s in sessions if s["path"] == notebook)
        connection_file = self.runtime / f"kernel-{kernel_id}.json"
        client = BlockingKernelClient(connection_file=str(connection_file))
        client.load_connection_file()
        client.start_channels()
        # Not wait_for_ready(): it drains IOPub until it is quiet for 0.2 s, which never
        # happens while a widget streams messages (annotations 30 times a second).
        reply = client.get_shell_msg(timeout=30) if client.kernel_info() else None
        assert reply is not None, "the kernel did not answer kernel_info"
        assert reply["msg_type"] == "kernel_info_reply", reply["msg_type"]
        self.kernels.append(client)
        return client


def kernel_json(client: BlockingKernelClient, code: str, timeout: float = 60) -> Any:
    """Run ``code`` in the kernel; its last printed line is parsed as JSON."""
    printed: list[str] = []

    def hook(message: dict[str, Any]) -> None:
        if message["msg_type"] == "stream":
            printed.append(message["content"]["text"])
        elif message["msg_type"] == "error":
            printed.append("\n".join(message["content"]["traceback"]))

    reply = client.execute_interactive(code, timeout=timeout, output_hook=hook)
    text = "".join(printed)
    assert reply["content"]["status"] == "ok", f"kernel code failed:\n{text}"
    return json.loads(text.strip().splitlines()[-1])


def poll_kernel(client: BlockingKernelClient, code: str, condition: Any, what: str,
                timeout: float = 20) -> Any:
    """Run ``code`` (see :func:`kernel_json`) until ``condition(result)``, or fail saying what."""
    deadline = time.monotonic() + timeout
    while True:
        state = kernel_json(client, code)
        if condition(state):
            return state
        if time.monotonic() > deadline:
            raise AssertionError(f"kernel side: {what} did not happen in {timeout} s: {state}")
        time.sleep(0.25)


def start_server(kind: str, base: Path) -> Server:
    root, home = base / "root", base / "home"
    root.mkdir()
    env = {**os.environ, "HOME": str(home), "JUPYTER_CONFIG_DIR": str(home / "config"),
           "JUPYTER_DATA_DIR": str(home / "data"), "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
           "IPYTHONDIR": str(home / "ipython"), "JUPYTER_PLATFORM_DIRS": "1"}
    (home / "config" / "lab" / "user-settings" / "@jupyterlab" / "apputils-extension").mkdir(
        parents=True)
    (home / "config" / "lab" / "user-settings" / "@jupyterlab" / "apputils-extension" /
     "notification.jupyterlab-settings").write_text('{"fetchNews": "false"}')
    app, expose = (("jupyterlab", "--LabApp.expose_app_in_browser=True") if kind == "lab" else
                   ("notebook", "--JupyterNotebookApp.expose_app_in_browser=True"))
    log = (base / f"{kind}.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", app, "--allow-root", "--no-browser", "--ServerApp.ip=127.0.0.1",
         # The server picks a free port itself and says which in its runtime file: no
         # port is reserved here and released for another process to take first.
         "--ServerApp.port=0", "--ServerApp.port_retries=0", f"--ServerApp.root_dir={root}",
         f"--IdentityProvider.token={TOKEN}", expose,
         # echo.test (mapped to 127.0.0.1 by the browser) is the "remote" http:// page
         f"--ServerApp.local_hostnames={LOCAL_HOSTNAMES}"],
        cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    log.close()
    info = home / "runtime" / f"jpserver-{process.pid}.json"
    url = ""
    deadline = time.monotonic() + 60
    while True:
        try:
            if not url:
                url = f"http://127.0.0.1:{json.loads(info.read_text())['port']}"
            with urllib.request.urlopen(f"{url}/api/status?token={TOKEN}", timeout=2):
                break
        except (OSError, ValueError, KeyError):
            if process.poll() is not None or time.monotonic() > deadline:
                stop_server(process)
                raise AssertionError(f"{app} did not start:\n" +
                                     (base / f"{kind}.log").read_text()[-3000:]) from None
            time.sleep(0.2)
    return Server(kind, url, root, home / "runtime", process)


def stop_server(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, 15)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
            process.wait()


def _server(kind: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_server(kind, tmp_path_factory.mktemp(kind))
    try:
        yield server
    finally:
        for client in server.kernels:
            client.stop_channels()
        stop_server(server.process)
        leftover = subprocess.run(["pgrep", "-f", f"ffmpeg.*{server.root}"],
                                  capture_output=True, text=True, check=False).stdout
        assert not leftover, f"ffmpeg processes left after the server stopped: {leftover}"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from _server("lab", tmp_path_factory)


@pytest.fixture(scope="module")
def notebook7(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from _server("notebook", tmp_path_factory)


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    """Chromium with a synthetic camera that is granted without a prompt."""
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=[*BASE_ARGS, GRANT_CAMERA])
    yield browser
    browser.close()


_OPEN_CONTEXTS: list[BrowserContext] = []
"""Contexts made by :func:`new_page`; any a test leaves open (it failed before closing it)
is closed after the test, so the next test starts with a quiet browser."""


@pytest.fixture(autouse=True)
def _close_left_contexts() -> Iterator[None]:
    yield
    while _OPEN_CONTEXTS:
        context = _OPEN_CONTEXTS.pop()
        with contextlib.suppress(Exception):  # closed already, or its browser is gone
            context.close()


def new_page(browser: Browser, *, camera: bool = True, microphone: bool = False,
             init_script: str | None = None) -> Page:
    permissions = ["camera"] if camera else []
    context = browser.new_context(permissions=[*permissions, "microphone"] if microphone
                                  else permissions,
                                  viewport={"width": 1280, "height": 1000})
    _OPEN_CONTEXTS.append(context)
    if init_script is not None:
        context.add_init_script(init_script)
    return context.new_page()


KEEP_PEERS = """(() => {
  const Native = window.RTCPeerConnection;
  window.__peers = [];
  window.RTCPeerConnection = function (...args) {
    const pc = new Native(...args);
    window.__peers.push(pc);
    return pc;
  };
  window.RTCPeerConnection.prototype = Native.prototype;
  Object.setPrototypeOf(window.RTCPeerConnection, Native);
})();"""
"""An init script that keeps the page's peer connections in ``window.__peers``."""

SENDING = """async () => {
  const pc = window.__peers[window.__peers.length - 1];
  const out = {};
  (await pc.getStats()).forEach((s) => {
    if (s.type === 'outbound-rtp' && s.kind === 'video') {
      out.width = s.frameWidth; out.target = s.targetBitrate;
    }
    if (s.type === 'candidate-pair' && s.nominated) out.available = s.availableOutgoingBitrate;
  });
  return out;
}"""
"""What the page's latest peer connection sends: frame width, the encoder's target bitrate,
and the bandwidth the browser estimates it has (from the kernel's REMB)."""


def write_notebook(server: Server, name: str, cells: list[str]) -> str:
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                       "language": "python"}
    notebook.cells = [nbformat.v4.new_code_cell(source) for source in cells]
    nbformat.write(notebook, server.root / name)
    return name


def copy_demo(server: Server) -> str:
    shutil.copy(ROOT / "notebooks" / "echo.ipynb", server.root / "echo.ipynb")
    return "echo.ipynb"


def open_and_run_all(page: Page, server: Server, notebook: str, *, url: str | None = None) -> None:
    """Open a notebook, wait for its kernel, and run all cells."""
    page.goto(url or server.notebook_url(notebook))
    page.wait_for_function("() => window.jupyterapp !== undefined", timeout=60_000)
    page.evaluate("() => window.jupyterapp.restored")
    page.wait_for_function(
        """() => {
          const panel = window.jupyterapp.shell.currentWidget;
          const kernel = panel?.sessionContext?.session?.kernel;
          return kernel && kernel.status === 'idle';
        }""", timeout=60_000)
    run_all(page)


def run_all(page: Page) -> None:
    page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")


FRAMES_PLAYED = """async (video) => {
  let frames = 0;
  const tick = () => { frames += 1; video.requestVideoFrameCallback(tick); };
  video.requestVideoFrameCallback(tick);
  await new Promise((resolve) => setTimeout(resolve, 2000));
  return {width: video.videoWidth, frames};
}"""


def assert_playing(page: Page, widget_index: int = 0) -> None:
    """Both videos of a widget view advance frames and have a size."""
    widget = page.locator(".echo-widget").nth(widget_index)
    for caption, video in (("local", widget.locator("video").nth(0)),
                           ("echo", widget.locator("video").nth(1))):
        played = video.evaluate(FRAMES_PLAYED)
        assert played["width"] > 0, f"the {caption} video shows nothing: {played}"
        assert played["frames"] > 10, f"the {caption} video is not playing: {played}"


def wait_playing(page: Page, widget_index: int = 0, timeout: float = 20) -> None:
    """Like assert_playing, for an echo that is recovering (e.g. waiting for a keyframe)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            assert_playing(page, widget_index)
            return
        except AssertionError:
            if time.monotonic() > deadline:
                raise


def wait_for_status(page: Page, status: str, count: int = 1, timeout: float = 30_000) -> None:
    try:
        page.wait_for_function(
            """([status, count]) => {
              const views = [...document.querySelectorAll('.echo-widget')];
              return views.length >= count && views.every((v) => v.dataset.status === status);
            }""", arg=[status, count], timeout=timeout)
    except Exception:
        shot = screenshot(page, f"failure-{_current_test()}")
        statuses = page.locator(".echo-widget-status").all_inner_texts()
        errors = page.locator(".echo-widget-error").all_inner_texts()
        outputs = page.locator(".jp-OutputArea-output").all_inner_texts()
        raise AssertionError(f"widgets did not reach {status!r}: statuses {statuses}, errors "
                             f"{errors}, outputs {outputs}; screenshot {shot}") from None


def _current_test() -> str:
    """The running test's name, for a failure screenshot that the next failure won't overwrite."""
    current = os.environ.get("PYTEST_CURRENT_TEST", "unknown").split(" ")[0]
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in current.split("::")[-1])


def screenshot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    print(f"\nscreenshot: {path}")
    return path
