"""Statistics: the running counters, each session's figures, the published snapshot, rates, history.

The media path and the recorders add to one :class:`MediaCounters` per widget; each session
reports its own :class:`SessionStats`; :class:`StatsBook` combines them into the ``stats``
snapshot the widget publishes about once a second, with rates and a bounded history.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, TypedDict

from .media.delay import DelayHistogram, percentiles_since

HISTORY_LENGTH = 3600
"""Samples kept in the history: an hour at one a second."""


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (nearest rank) of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


@dataclass
class MediaCounters:
    """Running totals over all the sessions of one widget."""

    frames_received: int = 0
    frames_forwarded: int = 0
    """Frames whose last packet was echoed."""
    packets_forwarded: int = 0
    frames_recorded: int = 0
    frames_dropped: int = 0
    """Frames not recorded because ffmpeg fell behind or the recorder waited for a keyframe."""
    keyframes: int = 0
    plis_sent: int = 0
    plis_received: int = 0
    packets_received: int = 0
    bytes_received: int = 0
    losses: int = 0
    """Gaps in the incoming stream that retransmission did not fill."""
    bytes_recorded: int = 0
    """Bytes written to ffmpeg, IVF headers included."""
    frames_skipped: int = 0
    """Decoded frames a consumer (``frames()``, a transform) was too slow for."""
    packets_shed: int = 0
    """Packets not echoed because they would have left later than the shedding limit."""
    echo_delay: DelayHistogram = field(default_factory=DelayHistogram)
    """The delay the kernel added to each echoed packet (see :mod:`.media.delay`)."""

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True)
class SessionStats:
    """One live session's own figures, as it reports them."""

    width: int = 0
    height: int = 0
    """The video's size, from its latest keyframe; 0 before one."""
    rtt_ms: float | None = None
    packets_lost: int = 0
    recording: bool = False
    recording_bytes: int = 0
    recording_seconds: float = 0.0
    frames_decoded: int = 0
    frames_skipped: int = 0
    """Decoded frames the transform was too slow for."""
    transform_ms: dict[str, float] | None = None
    """p50 and p95 of the transform's time per frame over the last second."""
    processed_fps: float = 0.0
    processed_age_ms: float | None = None
    """How old the newest processed frame's source was when its encoding finished."""
    audio_level: float | None = None
    """The microphone's level over the last second (dBFS), from the browser's packet headers."""
    av_offset_ms: float | None = None
    """How far the recording's audio sits from where the browser's clocks put it."""
    setup_ms: dict[str, float] | None = None
    """Display to first echoed frame, by phase, as the view measured it."""


class Stats(TypedDict):
    """The ``stats`` trait: :class:`MediaCounters`' fields, then these."""

    frames_received: int
    frames_forwarded: int
    packets_forwarded: int
    frames_recorded: int
    frames_dropped: int
    keyframes: int
    plis_sent: int
    plis_received: int
    packets_received: int
    bytes_received: int
    losses: int
    bytes_recorded: int
    frames_skipped: int
    frames_decoded: int
    transform_ms: dict[str, float] | None
    processed_fps: float
    processed_age_ms: float | None
    fps: float
    kbps: float
    sessions: int
    width: int
    height: int
    rtt_ms: float | None
    packets_lost: int
    recording: bool
    recording_bytes: int
    recording_seconds: float
    audio_packets_received: int
    audio_packets_forwarded: int
    audio_bytes_received: int
    audio_level: float | None
    av_offset_ms: float | None
    setup_ms: dict[str, float] | None
    packets_shed: int
    audio_packets_shed: int
    echo_delay_ms: dict[str, float] | None


class StatsBook:
    """The counters of one widget, the rates between samples, and the sampled history."""

    def __init__(self, *, history_length: int = HISTORY_LENGTH) -> None:
        self.counters = MediaCounters()
        self.audio_counters = MediaCounters()
        """The microphone's packets (only the packet and byte counts apply)."""
        self.packets_lost_ended = 0
        """Packets lost by sessions that have ended."""
        self.decoded_ended = 0
        self.skipped_ended = 0
        """Frames decoded and skipped by sessions that have ended."""
        self._history: deque[dict[str, Any]] = deque(maxlen=history_length)
        self._started_at = time.monotonic()
        self._last_sample: tuple[float, int, int] | None = None
        self._rates = (0.0, 0.0)
        self._delay_mark: list[int] | None = None
        self._echo_delay: dict[str, float] | None = None
        """p50 and p99 of the echoed packets' added delay between the last two samples."""

    @property
    def history(self) -> list[dict[str, Any]]:
        """Snapshots taken by :meth:`sample`, oldest first, each with ``t`` (seconds)."""
        return list(self._history)

    def snapshot(self, live: Sequence[SessionStats], latest: SessionStats | None) -> Stats:
        """The counters with the live sessions' figures and the last sampled rates."""
        fps, kbps = self._rates
        width, height = (latest.width, latest.height) if latest is not None else (0, 0)
        recording = [s for s in live if s.recording]
        counters = self.counters
        return Stats(
            frames_received=counters.frames_received,
            frames_forwarded=counters.frames_forwarded,
            packets_forwarded=counters.packets_forwarded,
            frames_recorded=counters.frames_recorded,
            frames_dropped=counters.frames_dropped,
            keyframes=counters.keyframes,
            plis_sent=counters.plis_sent,
            plis_received=counters.plis_received,
            packets_received=counters.packets_received,
            bytes_received=counters.bytes_received,
            losses=counters.losses,
            bytes_recorded=counters.bytes_recorded,
            frames_skipped=counters.frames_skipped + self.skipped_ended
            + sum(s.frames_skipped for s in live),
            frames_decoded=self.decoded_ended + sum(s.frames_decoded for s in live),
            transform_ms=latest.transform_ms if latest is not None else None,
            processed_fps=latest.processed_fps if latest is not None else 0.0,
            processed_age_ms=latest.processed_age_ms if latest is not None else None,
            fps=round(fps, 1), kbps=round(kbps, 1), sessions=len(live),
            width=width, height=height,
            rtt_ms=latest.rtt_ms if latest is not None else None,
            packets_lost=self.packets_lost_ended + sum(s.packets_lost for s in live),
            recording=bool(recording),
            recording_bytes=sum(s.recording_bytes for s in recording),
            recording_seconds=round(max((s.recording_seconds for s in recording),
                                        default=0.0), 1),
            audio_packets_received=self.audio_counters.packets_received,
            audio_packets_forwarded=self.audio_counters.packets_forwarded,
            audio_bytes_received=self.audio_counters.bytes_received,
            audio_level=latest.audio_level if latest is not None else None,
            av_offset_ms=next((s.av_offset_ms for s in recording
                               if s.av_offset_ms is not None), None),
            setup_ms=latest.setup_ms if latest is not None else None,
            packets_shed=counters.packets_shed,
            audio_packets_shed=self.audio_counters.packets_shed,
            echo_delay_ms=self._echo_delay,
        )

    def sample(self, now: float, live: Sequence[SessionStats],
               latest: SessionStats | None) -> Stats:
        """Update the rates (frames and bytes received since the last sample) and record one."""
        frames, octets = self.counters.frames_received, self.counters.bytes_received
        if self._last_sample is not None:
            then, frames_then, octets_then = self._last_sample
            elapsed = now - then
            if elapsed > 0:
                self._rates = ((frames - frames_then) / elapsed,
                               (octets - octets_then) * 8 / 1000 / elapsed)
        self._last_sample = (now, frames, octets)
        delays = [v + a for v, a in zip(self.counters.echo_delay.counts,
                                        self.audio_counters.echo_delay.counts, strict=True)]
        self._echo_delay = percentiles_since(delays, self._delay_mark, (50, 99))
        self._delay_mark = delays
        stats = self.snapshot(live, latest)
        self._history.append({"t": round(time.monotonic() - self._started_at, 3), **stats})
        return stats

    def reset_rates(self) -> None:
        """Streaming stopped: rates are 0 until two samples of the next stream."""
        self._last_sample = None
        self._rates = (0.0, 0.0)
        self._echo_delay = None
