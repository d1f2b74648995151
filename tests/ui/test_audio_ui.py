"""Audio in JupyterLab with Chromium's fake devices (a moving picture and a beeping
microphone): both echoes play, Listen unmutes, the level meter moves, the recording has both
tracks; a denied microphone leaves the video going and says so."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest
from playwright.sync_api import Browser

from .conftest import (
    Server,
    assert_playing,
    kernel_json,
    new_page,
    open_and_run_all,
    poll_kernel,
    screenshot,
    wait_for_status,
    write_notebook,
)

pytestmark = pytest.mark.usefixtures("peer_network")

AUDIO_STATS = ("import json; print(json.dumps({k: w.stats[k] for k in ('audio_packets_received', "
               "'audio_packets_forwarded', 'audio_level', 'av_offset_ms', 'recording_seconds', "
               "'frames_recorded')}))")
LEVEL = "() => Number(document.querySelector('.echo-widget [data-control=level]').value)"


def probe(path: str) -> dict[str, Any]:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "stream=codec_name,duration,start_time"
         ":format=duration", "-of", "json", path], check=True, capture_output=True, text=True)
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def test_audio_is_echoed_metered_and_recorded(lab: Server, browser: Browser) -> None:
    page = new_page(browser, microphone=True)
    name = write_notebook(lab, "audio.ipynb", [
        "from echo_widget import EchoWidget\nw = EchoWidget(audio=True, record_to='av.webm')\nw"])
    try:
        open_and_run_all(page, lab, name)
        wait_for_status(page, "connected")
        assert_playing(page)
        kernel = lab.kernel(name)
        # the echoed microphone plays, muted until Listen; the meter shows the kernel's level
        page.wait_for_function(
            "() => document.querySelector('.echo-widget-echo-audio')?.srcObject"
            "?.getAudioTracks().length === 1", timeout=15_000)
        audio = page.locator(".echo-widget-echo-audio")
        assert audio.evaluate("(a) => a.muted") is True
        page.wait_for_function(f"() => ({LEVEL})() > 0.01", timeout=15_000)
        listen = page.locator("[data-control=listen]")
        listen.click()
        assert audio.evaluate("(a) => a.muted") is False
        assert listen.inner_text() == "Mute"
        assert audio.evaluate("(a) => !a.paused") is True
        # the kernel forwards the audio and hears the beeps through the packets' level headers
        stats = poll_kernel(kernel, AUDIO_STATS,
                            lambda s: s["audio_packets_received"] > 150
                            and s["recording_seconds"] >= 4 and s["av_offset_ms"] is not None,
                            "audio for 4 s of recording")
        assert stats["audio_packets_forwarded"] >= stats["audio_packets_received"] - 5, stats
        assert stats["audio_level"] is not None
        assert -60 < stats["audio_level"] < 0, stats
        assert abs(stats["av_offset_ms"]) <= 20, stats
        page.locator(".echo-widget").first.scroll_into_view_if_needed()
        screenshot(page, "jupyterlab-audio")
        [path] = kernel_json(kernel, "import json; print(json.dumps(await w.stop_recording()))")
        info = probe(path)
        assert [s["codec_name"] for s in info["streams"]] == ["vp8", "opus"], info
        duration = float(info["format"]["duration"])
        assert duration >= 4, info
        kernel_json(kernel, "await w.aclose(); print(1)")
    finally:
        page.context.close()


MICROPHONE_DENIED = """
const getUserMedia = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
navigator.mediaDevices.getUserMedia = (constraints) => constraints.audio
  ? Promise.reject(new DOMException("Permission denied", "NotAllowedError"))
  : getUserMedia(constraints);
"""


def test_a_denied_microphone_leaves_the_video_and_says_so(lab: Server, browser: Browser) -> None:
    """The microphone is denied and the camera allowed (reproduced by rejecting requests for
    audio as a browser does when only the microphone is blocked)."""
    page = new_page(browser, microphone=True, init_script=MICROPHONE_DENIED)
    name = write_notebook(lab, "no-mic.ipynb", [
        "from echo_widget import EchoWidget\nw = EchoWidget(audio=True)\nw"])
    try:
        open_and_run_all(page, lab, name)
        wait_for_status(page, "connected")
        assert_playing(page)
        shown = page.locator(".echo-widget-error").first.inner_text()
        assert "without sound" in shown, shown
        assert "NotAllowedError" in shown, shown
        kernel = lab.kernel(name)
        state = poll_kernel(kernel, "import json; print(json.dumps({'error': w.error, "
                            "'status': w.status, 'audio': w.stats['audio_packets_received']}))",
                            lambda s: s["error"] == shown, "the microphone error in w.error")
        assert state["status"] == "connected", state
        assert state["audio"] == 0, state
        assert page.evaluate("() => document.querySelector('.echo-widget').dataset.audio") == "off"
        kernel_json(kernel, "await w.aclose(); print(1)")
    finally:
        page.context.close()
