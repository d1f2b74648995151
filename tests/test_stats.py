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


def test_a_sessions_loss_sums_every_stream_from_the_browser_and_its_rtt_is_the_echos() -> None:
    from types import SimpleNamespace

    from aiortc.rtcrtpreceiver import StreamStatistics

    from echo_widget.session import EchoSession

    def stream(received: list[int]) -> StreamStatistics:
        statistics = StreamStatistics(90000)
        for seq in received:
            statistics.add(SimpleNamespace(sequence_number=seq, timestamp=0))  # type: ignore[arg-type]
        return statistics

    def transceiver(streams: dict[int, StreamStatistics], rtx: dict[int, int]) -> object:
        return SimpleNamespace(receiver=SimpleNamespace(
            _RTCRtpReceiver__remote_streams=streams, _RTCRtpReceiver__rtx_ssrc=rtx))

    video = transceiver({1: stream([1, 2, 5]), 2: stream([7, 9])}, {2: 1})  # 2 lost; RTX's not
    audio = transceiver({3: stream([10, 11, 14, 15])}, {})  # 2 lost
    session = SimpleNamespace(
        _pc=SimpleNamespace(getTransceivers=lambda: [video, audio]), state="connected",
        _echo_sender=SimpleNamespace(_RTCRtpSender__rtt=0.0123), id="s", packets_lost=0,
        rtt_ms=None)
    EchoSession.update_transport_stats(session)  # type: ignore[arg-type]
    assert (session.packets_lost, session.rtt_ms) == (4, 12.3)
