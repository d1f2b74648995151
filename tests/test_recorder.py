"""The recorder: IVF into ffmpeg, finalized files that ffprobe reads, clear errors."""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import signal
import struct
from pathlib import Path

import av
import imageio_ffmpeg
import pytest

from echo_widget.media.vp8 import EncodedFrame, is_keyframe
from echo_widget.recording import Recorder, RecorderError, find_ffmpeg, reserve_path
from echo_widget.recording.ivf import ivf_file_header, ivf_frame_header
from echo_widget.recording.recorder import AudioInput
from echo_widget.recording.sync import SenderClock
from echo_widget.stats import MediaCounters
from echo_widget.testing import AvClip

from .conftest import clip_frames, decode_errors, ffprobe_video, recorded_positions, wait_until

pytestmark = pytest.mark.usefixtures("ffmpeg_children")


def frames_of(clip: Path) -> list[EncodedFrame]:
    return [EncodedFrame(data, 3000 * i + 123_456, is_keyframe(data))
            for i, data in enumerate(clip_frames(clip))]


def test_ivf_headers_follow_the_format(tmp_path: Path, vp8_clip: Path) -> None:
    header = ivf_file_header(640, 360)
    assert len(header) == 32
    assert header[:4] == b"DKIF"
    assert struct.unpack_from("<HH4sHHII", header, 4) == (0, 32, b"VP80", 640, 360, 90000, 1)
    assert ivf_frame_header(1000, 3000) == struct.pack("<IQ", 1000, 3000)
    # A file written with these headers is read by ffprobe, frame for frame.
    frames = clip_frames(vp8_clip)
    path = tmp_path / "direct.ivf"
    path.write_bytes(header + b"".join(ivf_frame_header(len(f), 3000 * i) + f
                                       for i, f in enumerate(frames)))
    probe = ffprobe_video(path)
    assert (probe["codec_name"], probe["width"], probe["height"]) == ("vp8", 640, 360)
    assert int(probe["nb_read_packets"]) == len(frames)


async def test_recording_starts_on_a_keyframe_and_keeps_every_frame(
        tmp_path: Path, vp8_clip: Path) -> None:
    counters = MediaCounters()
    errors: list[str] = []
    recorder = Recorder.open(tmp_path / "rec.webm", counters, on_error=errors.append)
    frames = frames_of(vp8_clip)
    first_key = next(i for i, f in enumerate(frames) if f.keyframe and i > 0)
    for frame in frames[first_key - 3:]:  # three delta frames before a keyframe
        recorder.push(frame)
        await asyncio.sleep(0)
    path = await recorder.aclose()
    assert errors == []
    assert path == tmp_path / "rec.webm"
    assert counters.frames_dropped == 3
    assert counters.frames_recorded == len(frames) - first_key
    assert int(ffprobe_video(path)["nb_read_packets"]) == counters.frames_recorded
    assert decode_errors(path) == ""
    with av.open(str(path)) as container:  # the frames are stored as they came, not re-encoded
        stored = [bytes(p) for p in container.demux(video=0) if p.size]
    assert stored == [f.data for f in frames[first_key:]]


async def test_frames_less_than_a_millisecond_apart_keep_their_order_in_the_file(
        tmp_path: Path, vp8_clip: Path) -> None:
    """A browser answering a keyframe request may send a refreshed frame right after the last
    one; Matroska counts in milliseconds, so the file steps it 1 ms on."""
    counters = MediaCounters()
    recorder = Recorder.open(tmp_path / "close.webm", counters, on_error=print)
    frames = frames_of(vp8_clip)[:10]
    frames[2] = EncodedFrame(frames[2].data, frames[1].timestamp + 9, frames[2].keyframe)
    for frame in frames:
        recorder.push(frame)
        await asyncio.sleep(0)
    path = await recorder.aclose()
    assert counters.frames_recorded == 10
    assert decode_errors(path) == ""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        times = [round(float(p.pts * stream.time_base) * 1000) for p in container.demux(stream)
                 if p.size and p.pts is not None]
    assert times[:4] == [0, 33, 34, 100], times


def test_reserve_path_never_reuses_a_file(tmp_path: Path) -> None:
    wanted = tmp_path / "echo.webm"
    assert reserve_path(wanted) == wanted
    assert reserve_path(wanted) == tmp_path / "echo-1.webm"
    assert reserve_path(wanted) == tmp_path / "echo-2.webm"
    with pytest.raises(RecorderError, match="does not exist"):
        reserve_path(tmp_path / "missing" / "echo.webm")


def test_reserve_path_without_permission(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # CI runs as root, who may write anywhere: stand in for the kernel's EACCES.
    def denied(*args: object) -> int:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "open", denied)
    with pytest.raises(RecorderError, match="no permission to write in"):
        reserve_path(tmp_path / "echo.webm")


def test_find_ffmpeg_order(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("ECHO_WIDGET_FFMPEG", raising=False)
    assert find_ffmpeg() == shutil.which("ffmpeg")
    monkeypatch.setenv("PATH", str(tmp_path))  # no ffmpeg on PATH: imageio-ffmpeg's binary
    assert find_ffmpeg() == imageio_ffmpeg.get_ffmpeg_exe()
    monkeypatch.setenv("ECHO_WIDGET_FFMPEG", "/nonexistent/ffmpeg")
    with pytest.raises(RecorderError, match="ECHO_WIDGET_FFMPEG"):
        find_ffmpeg()


async def test_imageio_ffmpeg_records_too(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, vp8_clip: Path) -> None:
    monkeypatch.setenv("ECHO_WIDGET_FFMPEG", imageio_ffmpeg.get_ffmpeg_exe())
    counters = MediaCounters()
    recorder = Recorder.open(tmp_path / "rec.webm", counters, on_error=pytest.fail)
    for frame in frames_of(vp8_clip):
        recorder.push(frame)
        await asyncio.sleep(0)
    path = await recorder.aclose()
    assert path is not None
    assert int(ffprobe_video(path)["nb_read_packets"]) == counters.frames_recorded > 0


async def test_an_ffmpeg_that_cannot_run_is_a_clear_error(tmp_path: Path, vp8_clip: Path) -> None:
    errors: list[str] = []
    recorder = Recorder.open(tmp_path / "rec.webm", MediaCounters(), on_error=errors.append,
                             ffmpeg=str(tmp_path / "no-such-ffmpeg"))
    await asyncio.sleep(0.1)
    assert errors == [], "ffmpeg starts with the first frame, not before"
    recorder.push(frames_of(vp8_clip)[0])
    await wait_until(lambda: bool(errors), 5, "the failed start is reported")
    recorder.resync()  # a working recorder would now refuse a delta frame and want a keyframe
    assert not frames_of(vp8_clip)[1].keyframe
    assert recorder.push(frames_of(vp8_clip)[1]), "after the failure it asks for nothing"
    assert await recorder.aclose() is None
    assert len(errors) == 1
    assert "Could not start ffmpeg" in errors[0]
    assert list(tmp_path.iterdir()) == [], "the reserved file is removed"


async def test_an_unknown_container_is_reported(tmp_path: Path, vp8_clip: Path) -> None:
    errors: list[str] = []
    recorder = Recorder.open(tmp_path / "rec.unknownext", MediaCounters(),
                                    on_error=errors.append)
    for frame in frames_of(vp8_clip)[:10]:
        recorder.push(frame)
    await recorder.aclose()
    assert errors
    assert "ffmpeg" in errors[0]


async def test_ffmpeg_killed_mid_recording_keeps_what_was_recorded(
        tmp_path: Path, vp8_clip: Path) -> None:
    errors: list[str] = []
    counters = MediaCounters()
    recorder = Recorder.open(tmp_path / "rec.mkv", counters, on_error=errors.append)
    frames = frames_of(vp8_clip)
    for frame in frames[:60]:
        recorder.push(frame)
        await asyncio.sleep(0.005)
    await wait_until(lambda: counters.frames_recorded == 60, 10, "the 60 frames reach ffmpeg")
    assert recorder.pid is not None
    written = counters.frames_recorded
    os.kill(recorder.pid, signal.SIGKILL)
    await wait_until(lambda: len(errors) == 1, 10, "the kill is noticed")
    for frame in frames[60:]:  # pushing after the crash neither raises nor blocks
        assert recorder.push(frame)
    path = await recorder.aclose()
    assert len(errors) == 1
    assert "stopped" in errors[0]
    assert "-9" in errors[0]
    assert path is not None
    # What was written before the kill plays, from the start, losing at most its last second
    # (ffmpeg writes clusters of at most 1 s).
    positions = recorded_positions(path, [f.data for f in frames])
    assert positions == list(range(len(positions)))
    assert written - 30 <= len(positions) <= written, (written, len(positions))
    with av.open(str(path)) as container:
        assert sum(1 for _ in container.decode(video=0)) == len(positions)


async def test_a_stalled_ffmpeg_costs_frames_never_memory_or_a_wait(
        tmp_path: Path, vp8_clip: Path) -> None:
    """ffmpeg stopped (SIGSTOP): pushes still return at once, at most ``max_buffer`` bytes
    wait, frames are dropped; when it resumes, the recording goes on from a keyframe."""
    counters = MediaCounters()
    errors: list[str] = []
    max_buffer = 64 << 10
    recorder = Recorder(reserve_path(tmp_path / "rec.webm"), find_ffmpeg(), counters,
                        on_error=errors.append, max_buffer=max_buffer)
    clip = frames_of(vp8_clip)
    frames = [EncodedFrame(f.data, 3000 * i, f.keyframe)  # the clip 5 times, time going on
              for i, f in enumerate(clip * 5)]
    recorder.push(frames[0])
    await wait_until(lambda: recorder.streaming, 10, "ffmpeg is up, the start-up queue written")
    assert recorder.pid is not None
    os.kill(recorder.pid, signal.SIGSTOP)
    try:
        accepted = [recorder.push(frame) for frame in frames[1:3 * len(clip)]]
        transport = recorder._stdin.transport  # type: ignore[union-attr]
        waiting = transport.get_write_buffer_size()
    finally:
        os.kill(recorder.pid, signal.SIGCONT)
    assert not all(accepted), "a stalled ffmpeg must cost frames"
    assert waiting <= max_buffer + max(len(f.data) for f in frames) + 12
    assert counters.frames_dropped > 0
    for frame in frames[3 * len(clip):]:  # after the stall: on from the next keyframe
        recorder.push(frame)
        await asyncio.sleep(0.002)
    path = await recorder.aclose()
    assert errors == []
    assert path is not None
    assert int(ffprobe_video(path)["nb_read_packets"]) == counters.frames_recorded
    assert decode_errors(path) == ""
    positions = recorded_positions(path, [f.data for f in frames])  # resumed on a keyframe
    assert len(positions) == counters.frames_recorded
    assert any(b != a + 1 for a, b in itertools.pairwise(positions)), "no gap: nothing dropped"
    assert positions[-1] == len(frames) - 1, "the recording went on to the end"


async def test_a_stalled_ffmpeg_costs_audio_pages_never_a_wait(
        vp8_clip: Path, av_clip: Path, tmp_path: Path) -> None:
    """With audio, ffmpeg stopped (SIGSTOP): audio pushes return at once, at most
    ``max_buffer`` bytes of pages wait, the rest are dropped; the file is whole after it
    resumes, with both tracks."""
    video_clock, audio_clock = SenderClock(90_000), SenderClock(48_000)
    video_clock.update(1 << 32, 0)  # both tracks reported: placed at once, nothing held
    audio_clock.update(1 << 32, 0)
    audio = AudioInput(1, video_clock, audio_clock, max_buffer=16 << 10)
    errors: list[str] = []
    recorder = Recorder(reserve_path(tmp_path / "av.webm"), find_ffmpeg(), MediaCounters(),
                        on_error=errors.append, audio=audio)
    frames = frames_of(vp8_clip)
    sounds = [data for _, data in AvClip(av_clip).packets["audio"]]
    video_at = 0

    def push_video(count: int) -> None:
        nonlocal video_at
        for _ in range(count):
            f = frames[video_at % len(frames)]
            keyframe = f.keyframe or video_at == 0
            recorder.push(EncodedFrame(f.data, 3000 * video_at, keyframe, 3000 * video_at))
            video_at += 1

    push_video(1)
    await wait_until(lambda: recorder.streaming and audio.transport is not None, 10,
                     "ffmpeg is up, both pipes open")
    assert recorder.pid is not None
    os.kill(recorder.pid, signal.SIGSTOP)
    try:
        loop = asyncio.get_running_loop()
        started = loop.time()
        for i in range(2000):  # 40 s of audio while ffmpeg sleeps
            recorder.push_audio(960 * i, sounds[i % len(sounds)])
        took = loop.time() - started
        waiting = audio.transport.get_write_buffer_size()
    finally:
        os.kill(recorder.pid, signal.SIGCONT)
    assert took < 2, f"pushing audio to a stalled ffmpeg took {took:.1f} s"
    assert waiting <= (16 << 10) + 1000
    assert audio.pages_dropped > 0
    for i in range(2000, 2050):  # ffmpeg is back: on it goes
        push_video(1)
        recorder.push_audio(960 * i, sounds[i % len(sounds)])
        await asyncio.sleep(0.002)
    path = await recorder.aclose()
    assert errors == []
    assert path is not None
    assert decode_errors(path) == ""
    with av.open(str(path)) as container:
        assert [s.type for s in container.streams] == ["video", "audio"]
