"""One recording: VP8 frames as IVF into an ffmpeg process that remuxes them, never re-encoding.

The recorder writes an IVF stream (:mod:`.ivf`) to ffmpeg's stdin, so a slow ffmpeg costs
dropped recorder frames, never a stalled echo. ffmpeg runs ``-f ivf -i pipe:0 -c copy FILE``
and chooses the container from the file's extension (WebM by default).

With audio, the same ffmpeg also reads an Ogg Opus stream (:mod:`.ogg`) from a second pipe,
and copies both into the one file. Where each audio packet goes on the video's timeline is
:class:`~.sync.AudioPlacement`'s business (the browser's sender reports); ``-copyts`` keeps
the timestamps written, so the two tracks line up as placed.

ffmpeg is started in its own session, so that when the kernel dies its pipe
closes and ffmpeg still finalizes the file instead of being killed with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from echo_widget.media.vp8 import VIDEO_CLOCK_RATE, EncodedFrame, keyframe_size
from echo_widget.stats import MediaCounters

from .files import MATROSKA_SUFFIXES, find_ffmpeg, reserve_path
from .ivf import ivf_file_header, ivf_frame_header
from .ogg import OggOpusWriter
from .sync import AudioPlacement, Page, SenderClock

logger = logging.getLogger(__name__)

MIN_FRAME_STEP = VIDEO_CLOCK_RATE // 1000
"""The least a frame's timestamp steps from the one before in the file: 1 ms (Matroska's
unit), in 90 kHz units."""

_FFMPEG_EXIT_TIMEOUT = 10.0
_MAX_AUDIO_BACKLOG = 500
"""Ogg pages kept while ffmpeg starts (10 s of 20 ms packets)."""


class AudioInput:
    """The audio of a recording: its channels and the two sender clocks that place it."""

    def __init__(self, channels: int, video_clock: SenderClock, audio_clock: SenderClock,
                 *, max_buffer: int = 1 << 20) -> None:
        self.writer = OggOpusWriter(channels)
        self.max_buffer = max_buffer
        """Bytes that may wait for ffmpeg's audio pipe; more pages are dropped."""
        self.placement = AudioPlacement(video_clock, audio_clock)
        self.backlog: deque[bytes] = deque()
        """Pages written before ffmpeg's audio pipe is open."""
        self.transport: asyncio.WriteTransport | None = None
        self.pages_dropped = 0
        self.packets = 0
        """Opus packets from the browser written (silence not counted)."""


class Recorder:
    """One recording: an ffmpeg process fed IVF frames, never waited for.

    :meth:`open` is synchronous: it finds ffmpeg and reserves the file (raising
    :class:`RecorderError` at once if either fails), then one task starts ffmpeg.
    Frames pushed while ffmpeg starts wait in a bounded queue, so the recording
    starts on the session's first keyframe; once that queue is written, frames go
    straight into the pipe's non-blocking transport (no task hand-off per frame),
    and are dropped while more than ``max_buffer`` bytes wait for ffmpeg.
    """

    def __init__(
        self,
        path: Path,
        executable: str,
        counters: MediaCounters,
        *,
        on_error: Callable[[str], None],
        max_queue: int = 120,
        max_buffer: int = 8 << 20,
        audio: AudioInput | None = None,
    ) -> None:
        self.path = path
        self.audio = audio
        """The audio track, when the recording has one."""
        self._executable = executable
        self._counters = counters
        self._on_error = on_error
        self._queue: asyncio.Queue[tuple[bytes, bool] | None] = asyncio.Queue(max_queue)
        self._process: asyncio.subprocess.Process | None = None
        self._stdin: asyncio.StreamWriter | None = None
        """ffmpeg's stdin once the start-up queue is written: frames then go straight in."""
        self._max_buffer = max_buffer
        self._watcher: asyncio.Task[None] | None = None
        self._stderr_tail: deque[str] = deque(maxlen=20)
        self._first_pts: int | None = None
        self._last_pts: int | None = None
        """The latest frame's timestamp in the file (None before the first)."""
        self._waiting_for_keyframe = True
        self._failed = False
        self._closed = False
        self._reported = False
        self._writer: asyncio.Task[None] = asyncio.ensure_future(self._run())
        if audio is not None:
            audio.backlog.append(audio.writer.headers())
            self._write_pages(audio.placement.prime())

    @classmethod
    def open(
        cls,
        requested: Path,
        counters: MediaCounters,
        *,
        on_error: Callable[[str], None],
        ffmpeg: str | None = None,
        audio: AudioInput | None = None,
    ) -> Recorder:
        """Find ffmpeg, reserve the file and start recording; needs a running event loop."""
        executable = ffmpeg or find_ffmpeg()
        return cls(reserve_path(requested), executable, counters, on_error=on_error,
                   audio=audio)

    @property
    def pid(self) -> int | None:
        """The ffmpeg process id, once started."""
        return self._process.pid if self._process is not None else None

    @property
    def streaming(self) -> bool:
        """ffmpeg is up and the start-up queue is written: frames now go straight to it."""
        return self._stdin is not None

    def push(self, frame: EncodedFrame) -> bool:
        """Queue a frame without waiting; False when a keyframe is needed to go on."""
        if self._failed or self._closed:
            return True  # nothing more to record; don't ask for keyframes
        if self._waiting_for_keyframe:
            if not frame.keyframe:
                self._counters.frames_dropped += 1
                return False
            if self._first_pts is None:
                width, height = keyframe_size(frame.data)
                if not self._offer(ivf_file_header(width, height), is_frame=False):
                    return False
                self._first_pts = frame.timestamp
            self._waiting_for_keyframe = False
        first_pts = self._first_pts
        assert first_pts is not None  # set by the first keyframe
        pts = frame.timestamp - first_pts
        last = self._last_pts
        if last is not None and pts < last + MIN_FRAME_STEP:
            # Matroska counts in milliseconds: two frames closer than that (a browser's
            # refreshed frame after a keyframe request) would share a timestamp
            pts = last + MIN_FRAME_STEP
        record = ivf_frame_header(len(frame.data), pts) + frame.data
        if not self._offer(record, is_frame=True):
            self._counters.frames_dropped += 1
            self.resync()
            return False
        self._last_pts = pts
        if self.audio is not None:
            self._write_pages(self.audio.placement.video_frame(
                frame.rtp_timestamp, pts / VIDEO_CLOCK_RATE, time.monotonic()))
        return True

    def push_audio(self, timestamp: int, payload: bytes) -> None:
        """Take one Opus packet (RTP timestamp, 48 kHz) without waiting."""
        audio = self.audio
        if audio is None or self._failed or self._closed:
            return
        pages = audio.placement.audio_packet(timestamp, payload, time.monotonic())
        if pages:
            audio.packets += 1
            self._write_pages(pages)

    @property
    def av_offset_ms(self) -> float | None:
        """How far the recorded audio sits from where the browser's clocks put it."""
        return self.audio.placement.offset_ms if self.audio is not None else None

    def _write_pages(self, pages: list[Page]) -> None:
        audio = self.audio
        assert audio is not None
        for packet, start in pages:
            page = audio.writer.packet(packet, start)
            transport = audio.transport
            if transport is None:
                if len(audio.backlog) < _MAX_AUDIO_BACKLOG:
                    audio.backlog.append(page)
                else:
                    audio.pages_dropped += 1
            elif transport.is_closing() or transport.get_write_buffer_size() > audio.max_buffer:
                audio.pages_dropped += 1
            else:
                transport.write(page)

    @property
    def duration(self) -> float:
        """Seconds of video queued for the file so far (first to latest frame)."""
        return (self._last_pts or 0) / VIDEO_CLOCK_RATE

    @property
    def size(self) -> int:
        """Bytes in the file so far (what ffmpeg has written)."""
        try:
            return self.path.stat().st_size
        except OSError:
            return 0

    def resync(self) -> None:
        """Skip frames until the next keyframe (after loss, or after dropping frames)."""
        if self._first_pts is not None:
            self._waiting_for_keyframe = True

    def _offer(self, chunk: bytes, *, is_frame: bool) -> bool:
        stdin = self._stdin
        if stdin is not None:
            if stdin.is_closing() or stdin.transport.get_write_buffer_size() > self._max_buffer:
                return False
            stdin.write(chunk)
            self._counters.frames_recorded += is_frame
            self._counters.bytes_recorded += len(chunk)
            return True
        try:
            self._queue.put_nowait((chunk, is_frame))
        except asyncio.QueueFull:
            return False
        return True

    async def _run(self) -> None:
        """Start ffmpeg once there is something to record, then write until the end marker.

        Waiting for the first frame keeps ffmpeg's start-up off the critical path of a new
        session (its answer and first echoed frame) and spares an ffmpeg for sessions that
        never send video.
        """
        first = await self._queue.get()
        if first is None:
            return
        # The IVF header (and OpusHead) say all there is to know: no probing, so that
        # output starts with the first frames (and survives a crash).
        inputs = ["-probesize", "32", "-analyzeduration", "0", "-f", "ivf", "-i", "pipe:0"]
        audio_read: int | None = None
        audio_write: int | None = None
        if self.audio is not None:
            audio_read, audio_write = os.pipe()
            inputs += ["-probesize", "32", "-analyzeduration", "0",
                       "-f", "ogg", "-i", f"pipe:{audio_read}",
                       "-map", "0:v", "-map", "1:a", "-copyts"]
        # Write each frame through, in WebM/Matroska clusters of at most 1 s, so that a
        # killed ffmpeg leaves a file that plays up to its last frames (without
        # -flush_packets nothing reaches the file for seconds).
        output = ["-flush_packets", "1"]
        if self.path.suffix.lower() in MATROSKA_SUFFIXES:
            output += ["-cluster_time_limit", "1000"]
        try:
            self._process = await asyncio.create_subprocess_exec(
                self._executable, "-hide_banner", "-nostats", "-loglevel", "error",
                *inputs, "-c", "copy", *output,
                "-y", str(self.path),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
                pass_fds=() if audio_read is None else (audio_read,),
            )
        except OSError as exc:
            for fd in (audio_read, audio_write):
                if fd is not None:
                    os.close(fd)
            self._failed = True
            self._report(f"Could not start ffmpeg ({self._executable}): {exc.strerror or exc}. "
                         "Install ffmpeg or set ECHO_WIDGET_FFMPEG to a working ffmpeg; the "
                         "echo still works.")
            return
        if audio_read is not None and audio_write is not None:
            os.close(audio_read)
            await self._open_audio_pipe(audio_write)
        self._watcher = asyncio.ensure_future(self._watch_process())
        stdin = self._process.stdin
        assert stdin is not None
        item: tuple[bytes, bool] | None = first
        try:
            while item is not None:  # what was queued while ffmpeg started
                chunk, is_frame = item
                stdin.write(chunk)
                await stdin.drain()
                self._counters.frames_recorded += is_frame
                self._counters.bytes_recorded += len(chunk)
                if self._queue.empty() and not self._closed:
                    self._stdin = stdin  # from now on push() writes; only the end comes here
                item = await self._queue.get()
            await stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            self._failed = True  # ffmpeg is gone: _watch_process says why
        finally:
            with contextlib.suppress(OSError):
                stdin.close()
            self._close_audio()

    async def _open_audio_pipe(self, fd: int) -> None:
        """ffmpeg's audio input as a non-blocking transport; the backlog goes first."""
        audio = self.audio
        assert audio is not None
        os.set_blocking(fd, False)
        pipe = os.fdopen(fd, "wb", buffering=0)
        transport, _ = await asyncio.get_running_loop().connect_write_pipe(
            asyncio.BaseProtocol, pipe)
        while audio.backlog:
            transport.write(audio.backlog.popleft())
        audio.transport = transport
        if self._closed:
            transport.close()

    def _close_audio(self) -> None:
        """End ffmpeg's audio input (what is buffered still goes): it finishes on both ends."""
        if self.audio is not None and self.audio.transport is not None:
            self.audio.transport.close()

    async def _watch_process(self) -> None:
        """Keep ffmpeg's last error lines; report it if it exits before we close it."""
        process = self._process
        assert process is not None
        assert process.stderr is not None
        async for line in process.stderr:
            self._stderr_tail.append(line.decode(errors="replace").rstrip())
        code = await process.wait()
        if not self._closed:
            self._failed = True
            self._report(f"Recording to {self.path} stopped: ffmpeg exited with code {code}"
                         f"{self._stderr_summary()}. What was recorded so far is kept; "
                         "the echo goes on.")

    def _stderr_summary(self) -> str:
        return f" ({' / '.join(self._stderr_tail)})" if self._stderr_tail else ""

    def _report(self, message: str) -> None:
        self._reported = True
        logger.warning("%s", message)
        self._on_error(message)

    async def aclose(self) -> Path | None:
        """Finalize: flush, close ffmpeg's stdin, wait for it to exit.

        Returns the file's path if it holds a recording, else None (an empty
        reservation is removed).
        """
        if self._closed:
            return None
        self._closed = True
        writer = self._writer
        if not writer.done():
            if self._queue.full():  # make room for the end marker: drop the newest frame
                self._queue.get_nowait()
            self._queue.put_nowait(None)
        code: int | None = None
        try:
            await asyncio.wait_for(asyncio.shield(writer), _FFMPEG_EXIT_TIMEOUT)
            if self._process is not None:
                code = await asyncio.wait_for(self._process.wait(), _FFMPEG_EXIT_TIMEOUT)
        except TimeoutError:
            writer.cancel()
            if self._process is not None:
                with contextlib.suppress(ProcessLookupError):
                    self._process.kill()
                code = await self._process.wait()
            self._report(f"ffmpeg did not finish {self.path} in time and was stopped; "
                         "the file may be incomplete.")
        finally:
            with contextlib.suppress(asyncio.CancelledError):
                await writer
            if self._watcher is not None:
                await self._watcher
        if self._first_pts is None or self._process is None:
            self.path.unlink(missing_ok=True)  # nothing was recorded
            return None
        if code != 0 and not self._reported:
            self._report(f"ffmpeg could not write {self.path} (exit code {code})"
                         f"{self._stderr_summary()}.")
        return self.path if self.path.stat().st_size > 0 else None
