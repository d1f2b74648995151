"""The kernel's added delay per echoed packet (from abs-send-time) and its histogram."""

from __future__ import annotations

import pytest

from echo_widget.media.delay import (
    ABS_SEND_TIME_HZ,
    BASE_WINDOW,
    AddedDelay,
    DelayHistogram,
    StandingDelay,
    percentiles_since,
)


def stamp(seconds: float, offset: float = 0.0) -> int:
    """The abs-send-time a sender whose clock is ``offset`` s ahead writes at ``seconds``."""
    return int((seconds + offset) * ABS_SEND_TIME_HZ) & 0xFFFFFF


@pytest.mark.parametrize("offset", [0.0, 12.5, 63.999, -40.0])
def test_the_delay_is_what_a_packet_has_beyond_the_fastest_whatever_the_clock_offset(
        offset: float) -> None:
    delay = AddedDelay()
    assert delay.added_ms(stamp(100.0, offset), 100.002) == 0.0, "the first is the base"
    assert delay.added_ms(stamp(100.033, offset), 100.035) == pytest.approx(0, abs=0.01)
    assert delay.added_ms(stamp(100.066, offset), 100.098) == pytest.approx(30, abs=0.01)
    assert delay.added_ms(stamp(100.1, offset), 100.101) == 0.0, "faster: the new base"
    assert delay.added_ms(stamp(100.133, offset), 100.136) == pytest.approx(2, abs=0.01)


def test_the_delay_holds_across_the_64_second_wrap() -> None:
    delay = AddedDelay()
    for i in range(400):  # 132 s of packets, 0.33 s apart, 5 ms late but every tenth
        t = 10.0 + i * 0.33
        added = delay.added_ms(stamp(t), t + (0.0 if i % 10 == 0 else 0.005))
        assert added == pytest.approx(0.0 if i % 10 == 0 else 5.0, abs=0.01), i


def test_clocks_drifting_apart_are_not_taken_for_delay() -> None:
    """100 ppm (a poor crystal) over an hour is 360 ms; the base follows within a window."""
    delay = AddedDelay()
    added = []
    for i in range(36_000):
        t = i * 0.1
        added.append(delay.added_ms(stamp(t * (1 - 100e-6)), t))
    assert max(added) < 2 * BASE_WINDOW * 100e-6 * 1000 + 0.01, max(added)
    assert max(added) > 1.0, "over a window the drift does show (the window is bounded)"


def test_percentiles_of_the_delays_since_a_mark() -> None:
    histogram = DelayHistogram()
    for ms in (0.2, 0.9, 1.5, 3.0, 2000.0):
        histogram.add(ms)
    mark = histogram.copy()
    assert percentiles_since(mark, None, (50, 99)) == {"p50": 2.0, "p99": 1001.0}
    assert percentiles_since(histogram.copy(), mark, (50,)) is None, "nothing since the mark"
    for ms in [7.0] * 98 + [45.2, 45.9]:
        histogram.add(ms)
    assert percentiles_since(histogram.copy(), mark, (50, 99)) == {"p50": 8.0, "p99": 46.0}
    assert percentiles_since(histogram.copy(), mark, (100,)) == {"p100": 46.0}


def test_a_burst_is_not_a_standing_queue_but_staying_late_for_an_interval_is() -> None:
    queue = StandingDelay(target_ms=40, interval=0.1)
    assert not queue.standing(200, 0.0), "late from the first packet on: not yet"
    assert not queue.standing(41, 0.099)
    assert queue.standing(41, 0.1)
    assert not queue.standing(40, 0.11), "on time again"
    assert not queue.standing(300, 0.2)
    assert queue.standing(300, 0.22)
