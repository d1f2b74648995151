"""The packet-level echo of MediaForwarder with VP8: start on a keyframe, offsets, restarts."""

from __future__ import annotations

from dataclasses import dataclass, field

from aiortc.rtp import RtpPacket

from echo_widget.media.audio import OPUS
from echo_widget.media.delay import ABS_SEND_TIME_HZ, percentiles_since
from echo_widget.media.forwarder import MediaForwarder
from echo_widget.media.frames import VideoFrames
from echo_widget.media.vp8 import VP8
from echo_widget.stats import MediaCounters

KEYFRAME = bytes([0x10, 0x00, 0x00, 0x00, 0x9D, 0x01, 0x2A, 0x80, 0x02, 0xE0, 0x01, 0xAA])
"""VP8 descriptor (S=1, PID=0), then a 640x480 keyframe header."""
DELTA = bytes([0x10, 0x01, 0x55, 0x66])
MIDDLE = bytes([0x00, 0x77, 0x88])


@dataclass
class Output:
    ready: bool = True
    sent: list[tuple[bytes, bool, int, int, int | None]] = field(default_factory=list)

    frame_ends: list[bool] = field(default_factory=list)
    reports: list[tuple[int, int]] = field(default_factory=list)

    async def send_rtp(self, payload: bytes, marker: bool, sequence_number: int,
                       timestamp: int, abs_send_time: int | None = None, *,
                       frame_end: bool | None = None) -> None:
        self.sent.append((payload, marker, sequence_number, timestamp, abs_send_time))
        self.frame_ends.append(marker if frame_end is None else frame_end)

    def translate_sender_report(self, ntp: int, timestamp: int) -> None:
        self.reports.append((ntp, timestamp))


def packet(seq: int, ts: int, payload: bytes, *, marker: bool = False, ssrc: int = 1,
           abs_send_time: int | None = None) -> RtpPacket:
    p = RtpPacket(96, int(marker), seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc, payload)
    p.extensions.abs_send_time = abs_send_time
    return p


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def video_path(clock: Clock) -> tuple[MediaForwarder, VideoFrames]:
    """A session's video path: the forwarder and, beside it, the frame assembly."""
    counters = MediaCounters()
    forwarder = MediaForwarder(counters, VP8, clock=clock)
    frames = VideoFrames(counters, forwarder)
    forwarder.tap(frames.add)
    return forwarder, frames


def echo_to(forwarder: MediaForwarder, output: Output) -> Output:
    forwarder.start_echo(output)
    return output


def clocked_echo() -> tuple[Clock, MediaForwarder, Output]:
    """A video path on a clock the test sets, echoing to an :class:`Output`."""
    clock = Clock()
    forwarder, _ = video_path(clock)
    return clock, forwarder, echo_to(forwarder, Output())


async def receive(forwarder: MediaForwarder, p: RtpPacket) -> bool:
    """What the receiver hook does: on_rtp, then forward, for the same packet."""
    pli = forwarder.on_rtp(p, p.payload[1:])
    await forwarder.forward(p)
    return pli


async def test_the_echo_starts_on_a_keyframe_and_keeps_offsets_gaps_and_payloads() -> None:
    clock = Clock()
    forwarder, frames = video_path(clock)
    output = echo_to(forwarder, Output())
    assert await receive(forwarder, packet(100, 9000, DELTA, marker=True)), "PLI until a keyframe"
    assert not await receive(forwarder, packet(101, 12000, DELTA, marker=True)), "rate-limited"
    assert output.sent == []

    await receive(forwarder, packet(102, 15000, KEYFRAME, abs_send_time=0x123456))
    await receive(forwarder, packet(103, 15000, MIDDLE, marker=True))
    await receive(forwarder, packet(105, 18000, DELTA))  # 104 lost: the gap stays a gap
    await receive(forwarder, packet(104, 18000, MIDDLE))  # ... until it is retransmitted
    await receive(forwarder, packet(106, 18000, MIDDLE, marker=True))

    payloads = [sent[0] for sent in output.sent]
    assert payloads == [KEYFRAME, MIDDLE, DELTA, MIDDLE, MIDDLE]
    assert [sent[1] for sent in output.sent] == [False, True, False, False, True]
    seq_offset = (output.sent[0][2] - 102) & 0xFFFF
    ts_offset = (output.sent[0][3] - 15000) & 0xFFFFFFFF
    for (_, _, seq, ts, _), original in zip(output.sent, [(102, 15000), (103, 15000),
                                            (105, 18000), (104, 18000), (106, 18000)],
                                            strict=True):
        assert (seq, ts) == ((original[0] + seq_offset) & 0xFFFF,
                             (original[1] + ts_offset) & 0xFFFFFFFF)
    assert output.sent[0][4] == 0x123456, "the browser's abs-send-time is kept"
    assert forwarder.counters.packets_forwarded == 5
    assert forwarder.counters.frames_forwarded == 2
    assert frames.frame_size == (640, 480)


async def test_a_new_stream_restarts_the_echo_on_its_keyframe_without_a_jump() -> None:
    forwarder, _ = video_path(Clock())
    output = echo_to(forwarder, Output())
    await receive(forwarder, packet(65535, 2**32 - 10, KEYFRAME, marker=True))
    await receive(forwarder, packet(0, 2990, DELTA, marker=True))  # both wrap
    last_seq, last_ts = output.sent[-1][2], output.sent[-1][3]
    await receive(forwarder, packet(65534, 2**32 - 3010, MIDDLE))  # late: fills an old hole
    assert len(output.sent) == 3
    assert (last_seq - output.sent[0][2]) & 0xFFFF == 1
    assert (last_ts - output.sent[0][3]) & 0xFFFFFFFF == 3000

    await receive(forwarder, packet(7000, 500, DELTA, marker=True, ssrc=2))  # a new SSRC
    assert len(output.sent) == 3, "a new stream's delta frame is not echoed"
    await receive(forwarder, packet(7001, 3500, KEYFRAME, marker=True, ssrc=2))
    assert output.sent[-1][0] == KEYFRAME
    assert output.sent[-1][2] == (last_seq + 1) & 0xFFFF, "sequence numbers continue"
    assert output.sent[-1][3] == (last_ts + 3000) & 0xFFFFFFFF, "one frame after the newest"


async def test_nothing_is_echoed_before_the_sender_is_ready_or_after_stop() -> None:
    forwarder, _ = video_path(Clock())
    await receive(forwarder, packet(1, 0, KEYFRAME, marker=True))  # no output yet
    output = echo_to(forwarder, Output(ready=False))
    await receive(forwarder, packet(2, 3000, KEYFRAME, marker=True))
    output.ready = True
    await receive(forwarder, packet(3, 6000, DELTA, marker=True))
    assert output.sent == [], "the echo waits for a keyframe once the sender is up"
    await receive(forwarder, packet(4, 9000, KEYFRAME, marker=True))
    forwarder.stop()
    await receive(forwarder, packet(5, 12000, DELTA, marker=True))
    assert [sent[0] for sent in output.sent] == [KEYFRAME]
    assert forwarder.counters.frames_received == 5


async def test_a_packet_that_comes_again_is_echoed_once_over_many_wraps() -> None:
    """Retransmissions of packets that did arrive, and a browser's RTX bandwidth probes
    (old packets sent again), are not echoed twice; no number is mistaken for a repeat after
    the sequence numbers wrap, with or without gaps."""
    forwarder, _ = video_path(Clock())
    output = echo_to(forwarder, Output())
    await receive(forwarder, packet(40000, 0, KEYFRAME, marker=True))
    await receive(forwarder, packet(40000, 0, KEYFRAME, marker=True))  # again
    assert len(output.sent) == 1
    assert forwarder.counters.frames_forwarded == 1
    seq, ts, received = 40000, 0, [(40000, 0)]
    # A jump (lost packets) whose forgotten numbers wrap past 65535, then over a full cycle.
    for step in [1] * 58_136 + [400] + [1] * 70_000:
        seq += step
        ts += 3000
        await receive(forwarder, packet(seq, ts, DELTA, marker=True))
        received.append((seq, ts))
        if len(received) % 500 == 0:  # a probe re-sends a recent packet
            again_seq, again_ts = received[-3]
            await receive(forwarder, packet(again_seq, again_ts, DELTA, marker=True))
    assert len(output.sent) == len(received)
    assert len({sent[2] for sent in output.sent[-1000:]}) == 1000


def stamped(seq: int, ts: int, payload: bytes, sent_at: float, *, marker: bool = False,
            ssrc: int = 1) -> RtpPacket:
    """A packet the browser's pacer sent at ``sent_at`` (its abs-send-time)."""
    return packet(seq, ts, payload, abs_send_time=int(sent_at * ABS_SEND_TIME_HZ) & 0xFFFFFF,
                  marker=marker, ssrc=ssrc)


async def test_video_behind_a_standing_queue_is_shed_and_goes_on_from_a_fresh_keyframe(
        ) -> None:
    clock, forwarder, output = clocked_echo()
    counters = forwarder.counters

    async def at(now: float, seq: int, ts: int, payload: bytes, late_ms: float,
                 marker: bool = False) -> bool:
        clock.now = now
        return await receive(forwarder, stamped(seq, ts, payload, now - late_ms / 1000,
                                                marker=marker))

    await at(10.0, 1, 3000, KEYFRAME, 0)
    await at(10.01, 2, 3000, MIDDLE, 15, marker=True)
    await at(10.033, 3, 6000, DELTA, 90, marker=True)  # a burst: late, but just now on time
    await at(10.10, 4, 9000, DELTA, 39, marker=True)
    await at(10.13, 5, 12000, DELTA, 60, marker=True)
    await at(10.19, 6, 15000, DELTA, 120.5, marker=True)  # late for 90 ms, not 100
    assert (len(output.sent), counters.packets_shed) == (6, 0)
    await at(10.21, 7, 18000, DELTA, 100)  # 110 ms with no packet on time: shed
    assert (len(output.sent), counters.packets_shed) == (6, 1)
    assert await at(10.22, 8, 18000, MIDDLE, 10, marker=True), (
        "a keyframe is asked for with the next packet")
    assert (len(output.sent), counters.plis_sent, counters.packets_shed) == (6, 1, 2), (
        "on time, but the echo waits for a keyframe: shed too")
    await at(10.30, 9, 21000, DELTA, 20, marker=True)
    await at(10.40, 10, 24000, KEYFRAME, 45)
    assert len(output.sent) == 7, "a keyframe soon after packets on time starts the echo"
    first_seq, first_ts = output.sent[0][2], output.sent[0][3]
    assert output.sent[-1][2] == (first_seq + 6) & 0xFFFF, "no gap in the echo's numbers"
    assert output.sent[-1][3] == (first_ts + 21000) & 0xFFFFFFFF, "the time that passed shows"
    assert sum(counters.echo_delay.counts) == 7, "each echoed packet's delay is counted"
    assert percentiles_since(counters.echo_delay.copy(), None, (100,)) == {"p100": 121.0}

    await at(10.41, 11, 24000, MIDDLE, 10, marker=True)
    for i in range(11):  # a kernel that stays behind: a late keyframe does not restart it
        await at(10.42 + i * 0.02, 12 + i, 27000, KEYFRAME if i == 10 else MIDDLE, 50 + i)
    assert len(output.sent) == 8 + 5, "late for less than 100 ms: echoed"
    assert counters.packets_shed == 3 + 6, "late, then waiting for a keyframe"


async def test_late_audio_packets_are_skipped_one_by_one() -> None:
    clock = Clock()
    counters = MediaCounters()
    forwarder = MediaForwarder(counters, OPUS, clock=clock)
    output = echo_to(forwarder, Output())
    for seq, (late_ms, now) in enumerate([(0, 1.0), (50, 1.05), (60, 1.15), (70, 1.17),
                                          (10, 1.19), (50, 1.21)]):
        clock.now = now
        assert not await receive(forwarder, stamped(seq, seq * 960, b"\x78opus",
                                                    now - late_ms / 1000, marker=True))
    assert [sent[2] - output.sent[0][2] for sent in output.sent] == [0, 1, 4, 5], (
        "skipped, and the gap stays a gap")
    assert counters.packets_shed == 2


async def test_without_a_limit_or_a_stamp_every_packet_is_echoed_however_late() -> None:
    clock = Clock()
    counters = MediaCounters()
    forwarder = MediaForwarder(counters, VP8, clock=clock, shed_after_ms=None)
    output = echo_to(forwarder, Output())
    await receive(forwarder, stamped(1, 0, KEYFRAME, 0.0, marker=True))
    clock.now = 5.0
    await receive(forwarder, stamped(2, 3000, DELTA, 0.033, marker=True))
    await receive(forwarder, packet(3, 6000, DELTA, marker=True))  # no abs-send-time
    assert (len(output.sent), counters.packets_shed) == (3, 0)
    assert percentiles_since(counters.echo_delay.copy(), None, (100,)) == {"p100": 1001.0}, (
        "over a second: the last step")


async def test_a_retransmission_keeps_its_first_send_time_so_it_is_neither_measured_nor_shed(
        ) -> None:
    clock, forwarder, output = clocked_echo()
    counters = forwarder.counters
    for seq in range(1, 5):
        clock.now = 10.0 + seq * 0.033
        await receive(forwarder, stamped(seq, seq * 3000, KEYFRAME if seq == 1 else DELTA,
                                         clock.now, marker=True))
    clock.now = 10.5  # packet 5 was lost; its retransmission comes with its first stamp
    await receive(forwarder, stamped(6, 18000, DELTA, 10.5, marker=True))
    await receive(forwarder, stamped(5, 15000, DELTA, 10.165, marker=True))
    clock.now = 10.533
    await receive(forwarder, stamped(7, 21000, DELTA, 10.533, marker=True))
    assert [sent[2] - output.sent[0][2] for sent in output.sent] == [0, 1, 2, 3, 5, 4, 6], (
        "the retransmission fills its hole")
    assert counters.packets_shed == 0
    assert sum(counters.echo_delay.counts) == 6, "only the packets sent in order are measured"
    assert percentiles_since(counters.echo_delay.copy(), None, (100,)) == {"p100": 1.0}
    await receive(forwarder, stamped(3, 5000, KEYFRAME, 10.533, ssrc=9, marker=True))
    assert len(output.sent) == 8
    assert sum(counters.echo_delay.counts) == 7, "a new stream's numbers start afresh"
