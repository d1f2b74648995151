"""RtpMunger: the echo's sequence numbers and timestamps, computed from the incoming ones."""

from __future__ import annotations

from echo_widget.media.munger import RtpMunger

STEP = 3000


def test_the_echo_starts_on_a_start_packet_with_fixed_offsets() -> None:
    munger = RtpMunger(STEP, first=(999, 50_000))
    assert munger.waiting(ssrc=7)
    assert munger.munge(10, 9000, can_start=False) is None, "no start before a start packet"
    assert munger.munge(11, 12000, can_start=True) == (1000, 53_000)
    assert not munger.waiting(ssrc=7)
    assert munger.munge(13, 15000, can_start=False) == (1002, 56_000), "a gap stays a gap"
    assert munger.munge(12, 12000, can_start=False) == (1001, 53_000), "a late one fills it"


def test_a_packet_seen_before_is_not_echoed_again() -> None:
    munger = RtpMunger(STEP, first=(0, 0))
    munger.waiting(ssrc=1)
    assert munger.munge(5, 0, can_start=True) is not None
    assert munger.munge(5, 0, can_start=True) is None
    assert munger.munge(6, 3000, can_start=False) is not None
    assert munger.munge(6, 3000, can_start=False) is None


def test_numbers_wrap_and_a_new_ssrc_continues_from_the_newest() -> None:
    munger = RtpMunger(STEP, first=(0xFFFE, 0xFFFFFFFF - 1000))
    munger.waiting(ssrc=1)
    assert munger.munge(100, 0, can_start=True) == (0xFFFF, 1999)
    assert munger.munge(101, 3000, can_start=False) == (0, 4999), "sequence numbers wrap"
    assert munger.waiting(ssrc=2), "a new SSRC restarts the echo"
    assert munger.munge(7, 123, can_start=False) is None
    assert munger.munge(8, 456, can_start=True) == (1, 4999 + STEP)


def test_no_number_is_taken_for_a_repeat_after_a_full_cycle() -> None:
    munger = RtpMunger(STEP, first=(0, 0))
    munger.waiting(ssrc=1)
    echoed = sum(munger.munge(seq & 0xFFFF, seq * STEP & 0xFFFFFFFF, can_start=True) is not None
                 for seq in range(3 * 65536))
    assert echoed == 3 * 65536


def test_a_paused_echo_goes_on_with_the_next_number_and_keeps_the_time_that_passed() -> None:
    munger = RtpMunger(STEP, first=(99, 0))
    munger.waiting(ssrc=1)
    assert munger.munge(10, 9000, can_start=True) == (100, 3000)
    assert munger.munge(11, 12000, can_start=False) == (101, 6000)
    assert munger.started
    munger.pause()
    assert not munger.started
    assert munger.waiting(ssrc=1), "paused: waits for a start packet"
    assert munger.munge(12, 15000, can_start=False) is None
    assert munger.munge(20, 39000, can_start=True) == (102, 33000), (
        "the next sequence number, and the timestamps' offset of before the pause")
    munger.pause()
    munger.waiting(ssrc=2)  # a new stream: its own timestamps, one step after the newest
    assert munger.munge(500, 7, can_start=True) == (103, 36000)
