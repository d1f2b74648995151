"""Helpers for testing and benchmarking echo-widget without a browser.

:func:`make_clip` makes a VP8 test clip with ffmpeg at run time; :class:`PacedTrack` sends a
pre-encoded clip from an aiortc peer at 30 fps without encoding it (``MediaPlayer(decode=False)``),
so a test client costs almost no CPU. Used by ``tests/`` and ``benchmarks/``; not needed to
use the widget.
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


class PacedTrack(MediaStreamTrack):
    """A pre-encoded clip, sent with ``MediaPlayer(decode=False)`` at 30 fps, over and over.

    MediaPlayer's own ``loop=True`` restarts pts at each loop; it then paces by nothing and
    reads ahead without bound (gigabytes in seconds). So each pass gets a fresh player, and
    this track paces by frame count and stamps pts that keep increasing. ``on_sent(data)``
    is called as each frame goes to the sender.
    """

    kind = "video"

    def __init__(self, clip: Path, *, loop: bool = False,
                 on_sent: Callable[[bytes], None] | None = None) -> None:
        super().__init__()
        self.clip, self.loop, self.on_sent = clip, loop, on_sent
        self.player = MediaPlayer(str(clip), decode=False)
        self.count = 0
        self.start: float | None = None

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
