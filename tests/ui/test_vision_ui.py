"""The kernel can see, in JupyterLab with Chromium's synthetic camera: the frames notebook,
the processed video, and a box drawn over the echo on the frame it belongs to."""

from __future__ import annotations

import io
import shutil
import time
from typing import Any

import pytest
from PIL import Image
from playwright.sync_api import Browser, Page

from .conftest import (
    FRAMES_PLAYED,
    ROOT,
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

VISION = ("import json; print(json.dumps({k: w.stats[k] for k in ('frames_decoded', "
          "'frames_skipped', 'processed_fps', 'processed_age_ms', 'transform_ms')}))")
MAGENTA = (255, 0, 255)
BOX = {"x": 200, "y": 120, "w": 240, "h": 200}


def start_marking(kernel: Any, box: dict[str, Any], model_s: float = 0.0) -> None:
    """In the kernel, annotate every frame from ``w.frames()`` with ``box``, each after
    ``model_s`` seconds (a model's time); ``marker`` is the task."""
    kernel_json(kernel, (
        "import asyncio, json\n"
        "async def mark():\n"
        "    async for frame in w.frames():\n"
        f"        await asyncio.sleep({model_s})\n"
        f"        w.annotate(frame, [{box!r}])\n"
        "marker = asyncio.ensure_future(mark())\n"
        "print(json.dumps(True))"))


def wait_processed_playing(page: Page, timeout: float = 30) -> dict[str, Any]:
    video = page.locator(".echo-widget-processed video").first
    video.scroll_into_view_if_needed()  # an off-screen video reports no frames
    deadline = time.monotonic() + timeout
    while True:
        played: dict[str, Any] = video.evaluate(FRAMES_PLAYED)
        if played["width"] > 0 and played["frames"] > 3:
            return played
        if time.monotonic() > deadline:
            screenshot(page, "failure-processed")
            raise AssertionError(f"the processed video is not playing: {played}")


def test_the_frames_notebook_runs_with_run_all(lab: Server, browser: Browser) -> None:
    shutil.copy(ROOT / "notebooks" / "frames.ipynb", lab.root / "frames.ipynb")
    page = new_page(browser)
    try:
        open_and_run_all(page, lab, "frames.ipynb")
        wait_for_status(page, "connected")
        assert_playing(page)
        page.wait_for_selector(".jp-OutputArea-output img", timeout=30_000)  # the snapshot
        wait_processed_playing(page)
        page.locator(".echo-widget").first.scroll_into_view_if_needed()
        page.wait_for_function(
            "() => Number(document.querySelector('canvas.echo-widget-overlay')?.dataset"
            ".shapes ?? 0) > 0", timeout=30_000)  # the motion box
        kernel = lab.kernel("frames.ipynb")
        state = poll_kernel(kernel, VISION, lambda s: s["processed_fps"] > 0, "processing", 30)
        assert state["frames_decoded"] > 0
        assert state["transform_ms"] is not None
        page.locator(".echo-widget").first.scroll_into_view_if_needed()
        screenshot(page, "jupyterlab-frames")
    finally:
        page.context.close()


def test_a_box_is_drawn_over_the_echo_on_its_own_frame(lab: Server, browser: Browser) -> None:
    notebook = write_notebook(lab, "annotate.ipynb", [
        "from echo_widget import EchoWidget\nw = EchoWidget()\nw"])
    page = new_page(browser)
    try:
        open_and_run_all(page, lab, notebook)
        wait_for_status(page, "connected")
        kernel = lab.kernel(notebook)
        start_marking(kernel, {"type": "box", **BOX, "color": "#ff00ff"})
        canvas = page.locator("canvas.echo-widget-overlay").first
        page.wait_for_function(
            "() => document.querySelector('canvas.echo-widget-overlay')?.dataset.shapes === '1'",
            timeout=20_000)
        time.sleep(1)  # a first late box holds the echo back (see the next test); then
        late, ticks = [], []
        for _ in range(20):  # each new annotation is placed anew: sample a few
            late.append(int(canvas.get_attribute("data-late-frames") or -1))
            ticks.append(int(canvas.get_attribute("data-late-ticks") or -1))
            time.sleep(0.1)
        assert max(late) <= 1, f"drawn over one shown frame after its own: {late}, ticks {ticks}"
        assert min(late) >= 0
        # The box's left edge, in the video's pixels, mapped to the page.
        spot = page.evaluate("""([x, y, h]) => {
          const video = document.querySelectorAll('.echo-widget video')[1];
          const r = video.getBoundingClientRect();
          const scale = Math.min(r.width / video.videoWidth, r.height / video.videoHeight);
          const left = r.left + (r.width - video.videoWidth * scale) / 2;
          const top = r.top + (r.height - video.videoHeight * scale) / 2;
          return {x: left + x * scale, y: top + (y + h / 2) * scale,
                  inside: left + (x + 20) * scale, size: [video.videoWidth, video.videoHeight]};
        }""", [BOX["x"], BOX["y"], BOX["h"]])
        assert spot["size"] == [640, 480]
        shot = Image.open(io.BytesIO(page.screenshot())).convert("RGB")
        edge = [shot.getpixel((round(spot["x"]) + dx, round(spot["y"]))) for dx in (-1, 0, 1)]
        assert any(all(abs(c - m) < 60 for c, m in zip(pixel, MAGENTA, strict=True))
                   for pixel in edge), f"no magenta at the box's edge: {edge}"
        inside = shot.getpixel((round(spot["inside"]), round(spot["y"])))
        assert not all(abs(c - m) < 60 for c, m in zip(inside, MAGENTA, strict=True)), \
            "the box is outlined, not filled"
        screenshot(page, "jupyterlab-annotate")
        errors = kernel_json(kernel, (
            "import json\nmessages = []\n"
            "for shapes in ([{'type': 'box'}], [{'type': 'box', 'x': 1, 'y': 1, 'w': 1, "
            "'h': float('nan')}], 'box'):\n"
            "    try:\n        w.annotate(None, shapes)\n"
            "    except ValueError as exc:\n        messages.append(str(exc))\n"
            "marker.cancel()\nw.annotate(None, [])\n"
            "print(json.dumps(messages))"))
        assert len(errors) == 3, errors
        assert "needs" in errors[0]
        assert "finite" in errors[1]
        page.wait_for_function(
            "() => document.querySelector('canvas.echo-widget-overlay')?.dataset.shapes === '0'",
            timeout=5_000)
    finally:
        page.context.close()


def test_a_slow_models_boxes_land_on_their_frames_by_holding_the_echo_back(
        lab: Server, browser: Browser) -> None:
    notebook = write_notebook(lab, "slow-model.ipynb", [
        "from echo_widget import EchoWidget\nw = EchoWidget()\nw"])
    page = new_page(browser)
    try:
        open_and_run_all(page, lab, notebook)
        wait_for_status(page, "connected")
        kernel = lab.kernel(notebook)
        start_marking(kernel, {"type": "box", **BOX}, model_s=0.1)  # 100 ms a frame
        canvas = page.locator("canvas.echo-widget-overlay").first
        page.wait_for_function(
            "() => Number(document.querySelector('canvas.echo-widget-overlay')?.dataset.holdMs)"
            " >= 100", timeout=20_000)
        time.sleep(2)  # the browser's jitter buffer grows to its new target
        late, ticks, hold = [], [], []
        for _ in range(20):
            late.append(int(canvas.get_attribute("data-late-frames") or -1))
            ticks.append(int(canvas.get_attribute("data-late-ticks") or -1))
            hold.append(int(canvas.get_attribute("data-hold-ms") or -1))
            time.sleep(0.1)
        assert max(late) <= 1, f"drawn late: {late} frames, ticks {ticks}, hold {hold} ms"
        assert max(hold) <= 300
        kernel_json(kernel, "import json\nmarker.cancel()\nw.annotate(None, [])\n"
                            "print(json.dumps(True))")
        page.wait_for_function(
            "() => document.querySelector('canvas.echo-widget-overlay')?.dataset.holdMs === '0'",
            timeout=5_000)
    finally:
        page.context.close()
