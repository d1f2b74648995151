"""The microphone's track: Opus packets echoed as they come, its level, its side branch.

The echo of audio is the video's (:class:`~echo_widget.media.forwarder.MediaForwarder`):
packets re-stamped and sent at once, never decoded. :class:`AudioPackets` stands between
aiortc's receiver and that forwarder, as :class:`~echo_widget.media.frames.VideoFrames`
does for video: it keeps the level the browser writes in each packet's header (RFC 6464),
and hands each packet to the attached sinks (the recorder, the decoder), none of which may
wait. :class:`AudioDecoder` decodes Opus in a thread of its own, only while someone
iterates ``audio_frames()``.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from fractions import Fraction
from typing import Protocol

import av

from .forwarder import IncomingPacket, MediaForwarder, TrackFormat
from .workers import WorkerThread

logger = logging.getLogger(__name__)

OPUS_CLOCK_RATE = 48_000
AUDIO_TIME_BASE = Fraction(1, OPUS_CLOCK_RATE)
MAX_PENDING = 25
"""Packets that may wait for the decoder (half a second of 20 ms packets)."""


def _any_packet(payload: bytes, data: bytes) -> bool:
    return bool(payload)


OPUS = TrackFormat(kind="audio", restart_step=OPUS_CLOCK_RATE // 50, starts_echo=_any_packet)
"""Opus audio: the echo starts on any packet; a restart steps one 20 ms packet."""


class AudioLevel:
    """The level of the last second, from the levels the sender writes in packet headers."""

    def __init__(self, *, window: float = 1.0) -> None:
        self._window = window
        self._powers: deque[tuple[float, float]] = deque()

    def add(self, dbov: int, now: float) -> None:
        """One packet's level: ``dbov`` is how far below full scale it is (0 to 127)."""
        self._powers.append((now, 10 ** (-min(max(dbov, 0), 127) / 10)))
        while self._powers and self._powers[0][0] < now - self._window:
            self._powers.popleft()

    def dbfs(self, now: float) -> float | None:
        """The mean power of the last second in dBFS (-127 for silence); None without levels."""
        recent = [power for at, power in self._powers if at >= now - self._window]
        if not recent:
            return None
        return round(max(-127.0, 10 * math.log10(sum(recent) / len(recent))), 1)


class AudioSink(Protocol):
    """What takes the audio packets (the recorder, the decoder)."""

    def push_audio(self, timestamp: int, payload: bytes) -> None:
        """Take one Opus packet (its RTP timestamp, 48 kHz) without waiting."""


class AudioPackets:
    """The audio track's packets, between aiortc's receiver and the echo."""

    def __init__(self, forwarder: MediaForwarder, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.forwarder = forwarder
        self.level = AudioLevel()
        self.sinks: tuple[AudioSink, ...] = ()
        """Where packets go, in order."""
        self._clock = clock

    def attach(self, sink: AudioSink) -> None:
        self.sinks = (*self.sinks, sink)

    def detach(self, sink: AudioSink) -> None:
        self.sinks = tuple(s for s in self.sinks if s is not sink)

    def on_rtp(self, packet: IncomingPacket, data: bytes) -> bool:
        """aiortc's tap: the level and the sinks, then the echo's own bookkeeping."""
        level = getattr(packet.extensions, "audio_level", None)
        if level is not None:
            self.level.add(level[1], self._clock())
        for sink in self.sinks:
            sink.push_audio(packet.timestamp, packet.payload)
        return self.forwarder.on_rtp(packet, data)


OnAudio = Callable[[av.AudioFrame], None]
"""Called in the decoder's thread with each decoded frame."""


class AudioDecoder:
    """Decodes Opus packets in order in its own thread; :meth:`aclose` stops and joins it.

    Opus decodes each packet with the state of the ones before, so packets wait in a short
    queue rather than a newest-wins slot; a thread that falls half a second behind drops
    that queue (counted) and goes on, as after a loss.
    """

    def __init__(self, on_decoded: OnAudio, channels: int, *,
                 max_pending: int = MAX_PENDING) -> None:
        self._on_decoded = on_decoded
        self._layout = "stereo" if channels == 2 else "mono"
        self._max_pending = max_pending
        self._pending: deque[tuple[int, bytes]] = deque()
        self._condition = threading.Condition()
        self._stopping = False
        self.decoded = 0
        """Frames decoded (written by the decoder's thread only)."""
        self.dropped = 0
        """Packets dropped: the thread fell behind, or a decode failed."""
        self._worker = WorkerThread("echo-widget-audio-decoder", self._run)

    def push_audio(self, timestamp: int, payload: bytes) -> None:
        with self._condition:
            if self._stopping:
                return
            if len(self._pending) >= self._max_pending:
                self.dropped += len(self._pending)
                self._pending.clear()
            self._pending.append((timestamp, payload))
            self._condition.notify()

    def _next(self) -> tuple[int, bytes] | None:
        with self._condition:
            while not self._pending and not self._stopping:
                self._condition.wait()
            return None if self._stopping else self._pending.popleft()

    def _run(self) -> None:
        codec = av.CodecContext.create("opus", "r")
        assert isinstance(codec, av.AudioCodecContext)
        codec.sample_rate = OPUS_CLOCK_RATE
        codec.layout = self._layout
        while (item := self._next()) is not None:
            timestamp, payload = item
            packet = av.Packet(payload)
            packet.pts = timestamp
            packet.time_base = AUDIO_TIME_BASE
            try:
                frames = codec.decode(packet)
            except av.FFmpegError as exc:
                logger.debug("echo-widget: an Opus packet did not decode (%s)", exc)
                self.dropped += 1
                continue
            for frame in frames:
                assert isinstance(frame, av.AudioFrame)
                frame.pts = timestamp
                frame.time_base = AUDIO_TIME_BASE
                self.decoded += 1
                self._on_decoded(frame)

    async def aclose(self) -> None:
        """Stop decoding and wait for the thread to end."""
        with self._condition:
            self._stopping = True
            self._pending.clear()
            self._condition.notify_all()
        await self._worker.join()
