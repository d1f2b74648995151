"""Lip sync in a recording: where each audio packet goes on the video's timeline.

The browser's RTCP sender reports pair an NTP time with an RTP timestamp for each track
(RFC 3550, 6.4.1): through them the audio's 48 kHz clock and the video's 90 kHz clock meet
on the sender's wall clock. A recording's time 0 is its first video frame;
:class:`AudioPlacement` gives each Opus packet its start in 48 kHz samples on that line:

* by the browser's sender reports: packets wait up to ``hold`` seconds for the first report
  of both tracks; if none comes by then, by arrival time (close on a short, idle path)
  until one does (a jump once). After that a later report moves it only when they differ by
  more than ``resync`` (the sender's clocks drift), and :attr:`offset_ms` says how far the
  audio sits from where the reports put it;
* the audio is one unbroken line from time 0: a lost packet, or no audio yet, becomes
  20 ms packets of silence, so a player that counts samples stays in sync; a packet that
  comes too late for its place is dropped;
* the audio may trail the video by at most ``lag`` seconds: ffmpeg interleaves the two
  inputs and would hold the video back for audio that is not coming.

Pure arithmetic, no I/O: the recorder writes what it returns.
"""

from __future__ import annotations

from collections import deque

from .ogg import OPUS_CLOCK_RATE, OPUS_SILENCE, OPUS_SILENCE_SAMPLES, opus_samples

_NTP_FRACTION = 1 << 32
_TS_MOD = 1 << 32
_TS_HALF = 1 << 31


def ntp_seconds(ntp: int) -> float:
    """A 64-bit NTP timestamp (32.32 fixed point) in seconds."""
    return ntp / _NTP_FRACTION


def timestamp_difference(a: int, b: int) -> int:
    """``a - b`` for 32-bit RTP timestamps, across a wrap."""
    return (a - b + _TS_HALF) % _TS_MOD - _TS_HALF


class SenderClock:
    """One track's sender clock, from the browser's latest sender report."""

    def __init__(self, clock_rate: int) -> None:
        self.clock_rate = clock_rate
        self.report: tuple[float, int] | None = None
        """(NTP seconds, RTP timestamp) of the latest sender report."""

    def update(self, ntp: int, rtp_timestamp: int) -> None:
        self.report = (ntp_seconds(ntp), rtp_timestamp)

    def wall_time(self, rtp_timestamp: int) -> float | None:
        """The sender's wall-clock time (NTP seconds) of an RTP timestamp, once reported."""
        if self.report is None:
            return None
        ntp, reported = self.report
        return ntp + timestamp_difference(rtp_timestamp, reported) / self.clock_rate


Page = tuple[bytes, int]
"""One Opus packet to write and its first sample on the recording's timeline."""


class AudioPlacement:
    """Places one recording's audio packets on the timeline of its video."""

    def __init__(self, video_clock: SenderClock, audio_clock: SenderClock, *,
                 lag: float = 2.0, hold: float = 1.5, resync: float = 0.010) -> None:
        self._video_clock = video_clock
        self._audio_clock = audio_clock
        self._lag = round(lag * OPUS_CLOCK_RATE)
        self._hold = hold
        self._held: deque[tuple[int, bytes, float]] = deque()
        """(unwrapped timestamp, payload, arrival) of packets waiting for a placement."""
        self._resync = round(resync * OPUS_CLOCK_RATE)
        self._video_start: int | None = None
        """The first video frame's RTP timestamp (90 kHz, as sent)."""
        self._last_video: tuple[float, float] | None = None
        """(arrival, seconds on the timeline) of the latest video frame."""
        self._anchor: int | None = None
        """Samples added to an audio RTP timestamp (unwrapped) to place it."""
        self._reported = False
        """Whether the anchor comes from the sender reports (else from arrival times)."""
        self._unwrapped: int | None = None
        self._last_rtp = 0
        self.next_sample = 0
        """Where the audio written so far ends."""
        self.offset_ms: float | None = None
        """How far the audio sits after where the sender reports put it (negative: before)."""
        self.dropped = 0
        """Packets that came too late for their place."""
        self.silence = 0
        """Silence packets written for audio that was lost or not there yet."""
        self.resyncs = 0
        """Times the placement moved to follow the sender reports."""

    def prime(self) -> list[Page]:
        """The silence that starts the audio at time 0: ffmpeg reads the audio input's first
        packet before it writes anything, and the microphone may not have sent one yet."""
        return self._fill_to(OPUS_SILENCE_SAMPLES)

    def video_frame(self, rtp_timestamp: int, seconds: float, arrival: float) -> list[Page]:
        """A video frame went into the recording at ``seconds``; returns the silence that
        keeps the audio within ``lag`` of it."""
        if self._video_start is None:
            self._video_start = rtp_timestamp
        self._last_video = (arrival, seconds)
        return self._fill_to(round(seconds * OPUS_CLOCK_RATE) - self._lag)

    def audio_packet(self, rtp_timestamp: int, payload: bytes, arrival: float) -> list[Page]:
        """An Opus packet arrived; returns what to write (silence first, if there is a gap)."""
        samples = opus_samples(payload)
        if self._last_video is None or samples == 0:
            return []  # nothing to line up with yet, or not an Opus packet
        if self._unwrapped is None:
            self._unwrapped = rtp_timestamp
        else:
            self._unwrapped += timestamp_difference(rtp_timestamp, self._last_rtp)
        self._last_rtp = rtp_timestamp
        unwrapped = self._unwrapped
        reported = self._reported_anchor(rtp_timestamp, unwrapped)
        if reported is not None and (not self._reported or self._anchor is None
                                     or abs(reported - self._anchor) > self._resync):
            self.resyncs += self._anchor is not None
            self._anchor = reported
            self._reported = True
        if reported is not None and self._anchor is not None:
            self.offset_ms = round((self._anchor - reported) * 1000 / OPUS_CLOCK_RATE, 1)
        self._held.append((unwrapped, payload, arrival))
        if self._anchor is None:
            first, _, first_arrival = self._held[0]
            if arrival - first_arrival < self._hold:
                return []  # wait for the sender reports
            self._anchor = self._arrival_anchor(first, first_arrival)
        pages: list[Page] = []
        while self._held:
            unwrapped, payload, _ = self._held.popleft()
            pages += self._place(unwrapped + self._anchor, payload)
        return pages

    def _place(self, start: int, payload: bytes) -> list[Page]:
        if start < self.next_sample:
            self.dropped += 1
            return []
        pages = self._fill_to(start)
        pages.append((payload, start))
        self.next_sample = start + opus_samples(payload)
        return pages

    def _reported_anchor(self, rtp_timestamp: int, unwrapped: int) -> int | None:
        if self._video_start is None:
            return None
        video_zero = self._video_clock.wall_time(self._video_start)
        audio_at = self._audio_clock.wall_time(rtp_timestamp)
        if video_zero is None or audio_at is None:
            return None
        return round((audio_at - video_zero) * OPUS_CLOCK_RATE) - unwrapped

    def _arrival_anchor(self, unwrapped: int, arrival: float) -> int:
        assert self._last_video is not None
        video_arrival, video_seconds = self._last_video
        seconds = video_seconds + arrival - video_arrival
        return round(seconds * OPUS_CLOCK_RATE) - unwrapped

    def _fill_to(self, sample: int) -> list[Page]:
        pages: list[Page] = []
        while self.next_sample + OPUS_SILENCE_SAMPLES <= sample:
            pages.append((OPUS_SILENCE, self.next_sample))
            self.next_sample += OPUS_SILENCE_SAMPLES
            self.silence += 1
        return pages
