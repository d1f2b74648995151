"""Helpers for testing and benchmarking echo-widget without a browser.

:func:`make_clip` makes a VP8 test clip with ffmpeg at run time; :class:`PacedTrack` sends a
pre-encoded clip from an aiortc peer at 30 fps without encoding it (``MediaPlayer(decode=False)``),
so a test client costs almost no CPU. :func:`make_av_clip` makes a VP8 + Opus clip whose
frames flash white while a tone plays, and :class:`AvClip` sends its two tracks, each packet
at its time on one shared clock. Used by ``tests/`` and ``benchmarks/``; not needed to use
the widget.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
from aiortc import MediaStreamError, MediaStreamTrack
from aiortc.contrib.media import MediaPlayer


def make_clip(path: Path, *, size: str = "640x360", seconds: float = 4, gop: int = 30,
              bitrate: str = "800k", fps: int = 30) -> Path:
    """A VP8 clip of ffmpeg's ``testsrc2`` (a moving pattern with a frame counter) at ``path``."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise RuntimeError("ffmpeg is needed to make test clips (apt install ffmpeg)")
    subprocess.run(
        [ffmpeg, "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=size={size}:rate={fps}",
         "-t", str(seconds), "-c:v", "libvpx", "-b:v", bitrate, "-deadline", "realtime",
         "-cpu-used", "8", "-g", str(gop), "-keyint_min", str(gop), str(path)],
        check=True,
    )
    return path


OPUS_LOOKAHEAD = 312 / 48_000


def make_av_clip(path: Path, *, seconds: float = 6, size: str = "320x240",
                 every: float = 1.0, burst: float = 0.1) -> Path:
    """A VP8 + Opus clip at ``path``: black frames and silence, with a white frame and the
    start of a 1 kHz tone burst (``burst`` seconds) at the same instants, every ``every`` s."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise RuntimeError("ffmpeg is needed to make test clips (apt install ffmpeg)")
    flash = f"drawbox=color=white:t=fill:enable='lt(mod(t\\,{every})\\,1/30)'"
    tone = f"aevalsrc='if(lt(mod(t\\,{every})\\,{burst})\\,0.5*sin(2*PI*1000*t)\\,0)':s=48000"
    subprocess.run(
        [ffmpeg, "-v", "error", "-y", "-f", "lavfi", "-i", f"color=c=black:s={size}:r=30",
         "-f", "lavfi", "-i", tone, "-vf", flash, "-t", str(seconds),
         "-c:v", "libvpx", "-b:v", "300k", "-deadline", "realtime", "-cpu-used", "8",
         "-g", "30", "-c:a", "libopus", "-b:a", "48k", "-application", "lowdelay",
         "-frame_duration", "20", str(path)],
        check=True,
    )
    return path


class AvClip:
    """A pre-encoded VP8 + Opus clip as two tracks, each packet sent at its time.

    Both tracks pace by one clock started at the first packet either sends, so the sender
    reports of the two pair the same instant with each track's timestamp, as a browser's do.
    With ``loop=True`` the clip goes on, its timestamps increasing. ``skip_audio`` is called
    with each audio packet's index; True leaves it out (a gap, as after a loss).
    """

    def __init__(self, clip: Path, *, loop: bool = False,
                 skip_audio: Callable[[int], bool] | None = None,
                 on_sent: Callable[[str, bytes], None] | None = None,
                 keep_sent: bool = True) -> None:
        with av.open(str(clip)) as container:
            video_stream, audio_stream = container.streams.video[0], container.streams.audio[0]
            self.packets: dict[str, list[tuple[float, bytes]]] = {"video": [], "audio": []}
            for packet in container.demux(video_stream, audio_stream):
                if packet.size and packet.pts is not None and packet.time_base is not None:
                    self.packets[packet.stream.type].append(
                        (float(packet.pts * packet.time_base), bytes(packet)))
        # WebM keeps milliseconds: the audio's own clock is its sample count. A browser stamps
        # an Opus packet with the time of its first input sample, which comes out of the
        # decoder 6.5 ms later (libopus' look-ahead); ffmpeg stamps the first output sample.
        audio = self.packets["audio"]
        first = audio[0][0] + OPUS_LOOKAHEAD if audio else 0.0
        self.packets["audio"] = [(first + i * 0.020, data) for i, (_, data) in enumerate(audio)]
        self.duration = max(t for t, _ in self.packets["video"]) + 1 / 30
        self.loop = loop
        self.skip_audio = skip_audio
        self.on_sent = on_sent
        """Called with (kind, data) as each packet goes to its sender."""
        self.keep_sent = keep_sent
        self.start: float | None = None
        self.video = _ClipTrack(self, "video", 90_000)
        self.audio = _ClipTrack(self, "audio", 48_000)
        self.sent: dict[str, list[tuple[int, bytes]]] = {"video": [], "audio": []}
        """(pts in the track's clock, data) of each packet sent (with ``keep_sent``)."""

    def stop(self) -> None:
        self.video.stop()
        self.audio.stop()


class _ClipTrack(MediaStreamTrack):
    def __init__(self, clip: AvClip, kind: str, clock_rate: int) -> None:
        super().__init__()
        self.kind = kind
        self._clip = clip
        self._clock_rate = clock_rate
        self._index = 0

    async def recv(self) -> Any:
        clip = self._clip
        packets = clip.packets[self.kind]
        while True:
            passes, at = divmod(self._index, len(packets))
            if (passes and not clip.loop) or self.readyState != "live":
                raise MediaStreamError
            index = self._index
            self._index += 1
            seconds, data = packets[at]
            seconds += passes * clip.duration
            if not (self.kind == "audio" and clip.skip_audio and clip.skip_audio(index)):
                break
        loop = asyncio.get_running_loop()
        if clip.start is None:
            clip.start = loop.time()
        due = clip.start + seconds
        if due > loop.time():
            await asyncio.sleep(due - loop.time())
        packet = av.Packet(data)
        packet.pts = round(seconds * self._clock_rate)
        packet.time_base = Fraction(1, self._clock_rate)
        if clip.keep_sent:
            clip.sent[self.kind].append((packet.pts, data))
        if clip.on_sent is not None:
            clip.on_sent(self.kind, data)
        return packet


class PacedTrack(MediaStreamTrack):
    """A pre-encoded clip, sent with ``MediaPlayer(decode=False)`` at 30 fps, over and over.

    MediaPlayer's own ``loop=True`` restarts pts at each loop; it then paces by nothing and
    reads ahead without bound (gigabytes in seconds). So each pass gets a fresh player, and
    this track paces by frame count and stamps pts that keep increasing. ``on_sent(data)``
    is called as each frame goes to the sender.

    A clip can't encode a keyframe when the far side asks for one (PLI), as a browser does
    within a frame; :meth:`request_keyframe` makes the next frame the clip's latest keyframe
    again instead, the same size and packets as a fresh one (the picture is not decodable
    after it; the benchmark never decodes).
    """

    kind = "video"

    def __init__(self, clip: Path, *, loop: bool = False,
                 on_sent: Callable[[bytes], None] | None = None) -> None:
        super().__init__()
        self.clip, self.loop, self.on_sent = clip, loop, on_sent
        self.player = MediaPlayer(str(clip), decode=False)
        self.count = 0
        self.start: float | None = None
        self.keyframes_sent_on_request = 0
        self._keyframe: bytes | None = None
        self._keyframe_wanted = False

    def request_keyframe(self) -> None:
        """Send the clip's latest keyframe again with the next frame (see above)."""
        self._keyframe_wanted = True

    async def recv(self) -> Any:
        """The clip's next encoded frame (an ``av.Packet``), at its time."""
        while True:
            assert self.player.video is not None
            try:
                packet = await self.player.video.recv()
                assert isinstance(packet, av.Packet), "MediaPlayer(decode=False) gives packets"
                break
            except MediaStreamError:
                if not self.loop or self.readyState != "live":
                    raise
                self.player.video.stop()
                self.player = MediaPlayer(str(self.clip), decode=False)
        loop = asyncio.get_running_loop()
        if self.start is None:
            self.start = loop.time()
        due = self.start + self.count / 30
        if due > loop.time():
            await asyncio.sleep(due - loop.time())
        if packet.is_keyframe:
            self._keyframe = bytes(packet)
            self._keyframe_wanted = False
        elif self._keyframe_wanted and self._keyframe is not None:
            self._keyframe_wanted = False
            self.keyframes_sent_on_request += 1
            packet = av.Packet(self._keyframe)
        packet.pts = self.count * 3000
        packet.time_base = Fraction(1, 90000)
        self.count += 1
        if self.on_sent is not None:
            self.on_sent(bytes(packet))
        return packet

    def stop(self) -> None:
        super().stop()
        if self.player.video is not None:
            self.player.video.stop()


def flash_times(path: Path) -> list[float]:
    """Times (s) of the white frames in a recording's video."""
    times = []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            if frame.to_ndarray(format="gray").mean() > 128:
                times.append(float(frame.time or 0.0))
    return times


def tone_onsets(path: Path) -> list[float]:
    """Times (s) where a tone starts after at least 0.3 s of quiet, in a recording's audio.

    Each decoded frame is placed by its own timestamp, so the times are where a player
    plays them."""
    onsets: list[float] = []
    quiet_since: float | None = 0.0
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        for frame in container.decode(stream):
            samples = frame.to_ndarray().astype(np.float64)
            mono = samples.mean(axis=0) if samples.ndim == 2 else samples
            loud = np.flatnonzero(np.abs(mono) > 0.1)
            start = float(frame.time or 0.0)
            if loud.size == 0:
                if quiet_since is None:
                    quiet_since = start + mono.size / frame.sample_rate
                continue
            at = start + loud[0] / frame.sample_rate
            if quiet_since is not None and at - quiet_since >= 0.3:
                onsets.append(at)
            quiet_since = None
            tail = np.flatnonzero(np.abs(mono) > 0.1)[-1]
            if tail < mono.size - 1:  # quiet again within this frame
                quiet_since = start + (tail + 1) / frame.sample_rate
    return onsets


def lip_sync(path: Path) -> list[float]:
    """Each tone onset's distance (ms) to the nearest flash in a recording of
    :func:`make_av_clip`'s clip (positive: the sound comes late)."""
    flashes = flash_times(path)
    onsets = tone_onsets(path)
    if len(flashes) < 3 or len(onsets) < 3:
        raise ValueError(f"too few flashes ({flashes}) or tone onsets ({onsets}) in {path}")
    return [round(float(onset - min(flashes, key=lambda f: abs(f - onset))) * 1000, 1)
            for onset in onsets]
