"""StatsBook: the stats snapshot's shedding figures and the delay percentiles per interval."""

from __future__ import annotations

from echo_widget.stats import StatsBook


def test_the_kernels_delay_is_given_per_interval_over_video_and_audio() -> None:
    book = StatsBook()
    stats = book.sample(0.0, [], None)
    assert stats["echo_delay_ms"] is None, "nothing echoed yet"
    assert (stats["packets_shed"], stats["audio_packets_shed"]) == (0, 0)
    for ms in [1.5] * 90:
        book.counters.echo_delay.add(ms)
    for ms in [30.2] * 10:
        book.audio_counters.echo_delay.add(ms)
    book.counters.packets_shed, book.audio_counters.packets_shed = 7, 2
    stats = book.sample(1.0, [], None)
    assert stats["echo_delay_ms"] == {"p50": 2.0, "p99": 31.0}
    assert (stats["packets_shed"], stats["audio_packets_shed"]) == (7, 2)
    assert book.snapshot([], None)["echo_delay_ms"] == {"p50": 2.0, "p99": 31.0}
    book.counters.echo_delay.add(5.0)
    assert book.sample(2.0, [], None)["echo_delay_ms"] == {"p50": 6.0, "p99": 6.0}, (
        "only what was echoed since the last sample")
    assert book.sample(3.0, [], None)["echo_delay_ms"] is None
    assert book.history[-2]["echo_delay_ms"] == {"p50": 6.0, "p99": 6.0}
