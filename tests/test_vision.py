"""The kernel can see: snapshots, frames(), the transform and annotations, over loopback.

An aiortc client sends a real VP8 clip; the kernel decodes only while someone asks, in its
own threads, and the echo stays byte-identical throughout.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from echo_widget import EchoWidget

from .conftest import EchoClient, Signaling, clip_frames, wait_until
from .test_loopback import assert_contiguous_run

pytestmark = pytest.mark.usefixtures("peer_network", "ffmpeg_children")

RED = np.zeros((120, 160, 3), np.uint8)
RED[..., 0] = 255


def worker_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("echo-widget-")]


def reference_frames(clip: Path) -> list[np.ndarray[Any, Any]]:
    """The clip's frames as PyAV decodes them from the file."""
    with av.open(str(clip)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def psnr(a: np.ndarray[Any, Any], b: np.ndarray[Any, Any]) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255 ** 2 / mse)


async def connected(clip: Path, *, processed: bool = False, **kwargs: Any
                    ) -> tuple[EchoWidget, Signaling, EchoClient]:
    widget = EchoWidget(ice_servers=[], **kwargs)
    signaling = Signaling(widget)
    client = EchoClient(signaling, clip, "s", loop=True, processed=processed)
    await client.connect()
    return widget, signaling, client


async def test_no_decoding_without_a_consumer(vp8_clip: Path) -> None:
    widget, _, client = await connected(vp8_clip)
    await wait_until(lambda: len(client.echoed) > 45, 10, "the echo runs")
    session = widget.hub.current
    assert session is not None
    assert not session.decoding
    assert worker_threads() == []
    assert widget.stats["frames_decoded"] == 0
    await client.close()
    await widget.aclose()


async def test_a_snapshot_is_the_frame_that_was_sent_and_decoding_stops_after(
        vp8_clip: Path) -> None:
    widget, _, client = await connected(vp8_clip)
    references = reference_frames(vp8_clip)
    await wait_until(lambda: len(client.echoed) > 30, 10, "streaming for a second")
    requests = len(client.keyframe_requests)
    offsets = set()
    for _ in range(2):
        frame = await widget.snapshot(timeout=5)
        assert len(client.keyframe_requests) > requests, "a starting decoder asks for a keyframe"
        requests = len(client.keyframe_requests)
        assert isinstance(frame, av.VideoFrame)
        assert (frame.width, frame.height) == (640, 360)
        assert frame.time_base == Fraction(1, 90000)
        image = frame.to_ndarray(format="rgb24")
        scores = [psnr(image, reference) for reference in references]
        index = int(np.argmax(scores))
        assert scores[index] > 45, f"best PSNR {scores[index]:.1f} dB: not a frame of the clip"
        assert frame.pts is not None
        offsets.add((frame.pts - index * 3000) % (1 << 32))
    # The clip loops every 120 frames, so the index is known modulo its length.
    assert len({offset % (120 * 3000) for offset in offsets}) == 1, "pts is the RTP timestamp"
    await wait_until(lambda: worker_threads() == [], 5, "the decoder stops with its consumer")
    session = widget.hub.current
    assert session is not None
    assert not session.decoding
    await client.close()
    await widget.aclose()


async def test_a_slow_consumer_skips_frames_and_never_falls_behind(vp8_clip: Path) -> None:
    widget, _, client = await connected(vp8_clip)
    session = widget.hub.current
    assert session is not None
    ages: list[float] = []
    steps: list[int] = []
    previous: int | None = None
    started = time.monotonic()
    async for frame in widget.frames():
        assert frame.pts is not None
        # How far behind the newest frame echoed right now is the one just yielded? (Negative
        # when the frame's own echo has not reached the client yet: the side branch was first.)
        echo_ts, newest = session.echo_timestamp(frame.pts), client.last_echo_timestamp
        assert echo_ts is not None
        assert newest is not None
        ages.append(((newest - echo_ts + (1 << 31)) % (1 << 32) - (1 << 31)) / 90000)
        if previous is not None:
            steps.append(((frame.pts - previous) % (1 << 32)) // 3000)
        previous = frame.pts
        await asyncio.sleep(0.2)  # a consumer six times slower than the camera
        if time.monotonic() - started > 3:
            break
    assert len(ages) >= 10
    assert max(ages) < 0.1, f"the consumer got old frames: ages {ages}"
    assert min(steps) >= 3, f"frames were queued, not skipped: steps {steps}"
    await wait_until(lambda: widget.stats["frames_skipped"] > 20, 3, "skips counted")
    await wait_until(lambda: worker_threads() == [], 5, "leaving the loop stops decoding")
    echoed = [f.data for f in client.echoed]
    assert_contiguous_run(echoed[:100], clip_frames(vp8_clip) * 3)
    await client.close()
    await widget.aclose()


async def test_the_transform_arrives_on_the_second_track_and_stops_when_unset(
        vp8_clip: Path) -> None:
    widget, _, client = await connected(vp8_clip, processed=True)
    calls: list[tuple[int, int]] = []

    def to_red(frame: av.VideoFrame) -> np.ndarray[Any, Any]:
        calls.append((frame.width, frame.height))
        return RED

    widget.transform = to_red
    assert widget._processing
    await wait_until(lambda: len(client.processed) >= 10, 10, "processed frames arrive")
    codec = av.CodecContext.create("vp8", "r")
    decoded = [f for encoded in client.processed for f in codec.decode(av.Packet(encoded.data))]
    image = decoded[-1].to_ndarray(format="rgb24")
    assert image.shape == RED.shape
    assert np.abs(image.astype(int) - RED).mean() < 8, "the processed video is the result"
    assert calls[0] == (640, 360), "the transform gets the camera's frames"
    await wait_until(lambda: widget.stats["processed_fps"] > 10, 5, "processed fps in stats")
    assert widget.stats["transform_ms"] is not None
    assert widget.stats["processed_age_ms"] is not None
    assert sorted(worker_threads()) == ["echo-widget-decoder", "echo-widget-transform"]

    widget.transform = None
    assert not widget._processing
    await wait_until(lambda: worker_threads() == [], 5, "the workers stop")
    count = len(client.processed)
    await asyncio.sleep(0.3)
    assert len(client.processed) == count, "nothing is encoded without a transform"
    echoed = [f.data for f in client.echoed]
    assert_contiguous_run(echoed[:100], clip_frames(vp8_clip) * 3)
    await client.close()
    await widget.aclose()


async def test_consumers_and_the_transform_each_get_their_own_frame(vp8_clip: Path) -> None:
    """PyAV deadlocks when one frame object is converted in two threads at once, as a
    transform and a consumer that converts in a thread (or two consumers) would do."""
    widget, _, client = await connected(vp8_clip, processed=True)
    widget.transform = lambda frame: frame.to_ndarray(format="rgb24")[:, :, ::-1].copy()
    seen: list[int] = []

    async def consume() -> None:
        async for frame in widget.frames():
            await asyncio.to_thread(frame.to_ndarray, format="gray")
            seen.append(id(frame))

    consumers = [asyncio.ensure_future(consume()) for _ in range(2)]
    await asyncio.sleep(1)
    processed, consumed = len(client.processed), len(seen)
    await asyncio.sleep(2)
    assert len(client.processed) > processed + 20, "the transform stalled"
    assert len(seen) > consumed + 40, "the consumers stalled"
    for task in consumers:
        task.cancel()
    await asyncio.gather(*consumers, return_exceptions=True)
    await client.close()
    await widget.aclose()
    assert worker_threads() == []


async def test_a_failing_transform_is_reported_and_the_echo_goes_on(vp8_clip: Path) -> None:
    widget, _, client = await connected(vp8_clip, processed=True)

    def broken(frame: av.VideoFrame) -> None:
        raise ZeroDivisionError("model exploded")

    widget.transform = broken
    await wait_until(lambda: "model exploded" in widget.error, 5, "the error is reported")
    assert "transform failed" in widget.error
    echoed = len(client.echoed)
    await wait_until(lambda: len(client.echoed) > echoed + 8, 5, "the echo goes on")

    widget.transform = lambda frame: np.zeros((10, 10), np.uint8)  # not an image
    await wait_until(lambda: "HxWx3" in widget.error, 5, "a bad result is explained")
    await client.close()
    await widget.aclose()
    assert worker_threads() == []


async def test_an_annotation_is_stamped_with_the_echo_frames_timestamp(vp8_clip: Path) -> None:
    """The overlay carries the echo's timestamp of the annotated frame. A frame the echo shed
    (a stalled loop on a loaded machine) is never echoed: then, and only then, a newer frame
    is tried."""
    widget, signaling, client = await connected(vp8_clip)
    counters = widget.hub.book.counters
    for attempt in range(3):
        shed = counters.packets_shed
        frame = await widget.snapshot(timeout=5)
        widget.annotate(frame, [{"type": "box", "x": 10, "y": 20, "w": 30, "h": 40,
                                 "label": "x"}])
        overlay = [m for m in signaling.of("s") if m["type"] == "overlay"][-1]
        assert overlay["shapes"] == [{"type": "box", "x": 10.0, "y": 20.0, "w": 30.0,
                                      "h": 40.0, "label": "x"}]
        stamp = overlay["timestamp"]
        try:
            await wait_until(lambda stamp=stamp: stamp in client.echo_timestamps, 3,
                             "the echo has a frame with the overlay's timestamp")
            break
        except AssertionError:
            if counters.packets_shed == shed or attempt == 2:
                raise
    widget.annotate(None, [])
    assert signaling.sent[-1] == {"type": "overlay", "session": "s", "timestamp": None,
                                  "shapes": []}
    await client.close()
    await widget.aclose()


async def test_everything_stops_on_close(vp8_clip: Path) -> None:
    widget, _, client = await connected(vp8_clip, processed=True)
    running = threading.Event()

    def slow(frame: av.VideoFrame) -> av.VideoFrame:
        running.set()
        time.sleep(0.4)  # still inside the transform when aclose() is called
        return frame

    widget.transform = slow
    frames = widget.frames()
    first = await anext(frames)
    assert isinstance(first, av.VideoFrame)
    await wait_until(running.is_set, 5, "the transform runs")
    await widget.aclose()
    assert worker_threads() == [], "aclose() returned before its threads were joined"
    with pytest.raises(StopAsyncIteration):
        await anext(frames)
    await client.close()


def test_bad_shapes_raise_naming_the_field() -> None:
    widget = EchoWidget(ice_servers=[])
    for shapes, field in [([{"type": "box", "x": 1, "y": 2, "w": 3}], "needs ['h']"),
                          ([{"type": "box", "x": "1", "y": 2, "w": 3, "h": 4}], "'x'"),
                          ([{"type": "points", "points": [[1, 2, 3]]}], "['points'][0]"),
                          ([{"type": "text", "x": 1, "y": 1, "text": 5}], "'text'"),
                          ([{"type": "oval"}], "'type'"),
                          ({"type": "box"}, "list")]:
        with pytest.raises(ValueError, match=re.escape(field)):
            widget.annotate(None, shapes)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"av\.VideoFrame"):
        widget.annotate("frame", [])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="function"):
        widget.transform = 5  # type: ignore[assignment]


async def test_a_snapshot_without_a_session_says_why() -> None:
    widget = EchoWidget(ice_servers=[])
    with pytest.raises(TimeoutError, match="no live session"):
        await widget.snapshot(timeout=0.1)
    assert worker_threads() == []
    await widget.aclose()
