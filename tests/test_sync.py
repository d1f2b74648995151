"""Lip sync arithmetic (AudioPlacement, SenderClock) and the Ogg Opus framing, without I/O."""

from __future__ import annotations

import subprocess
import zlib
from pathlib import Path

from echo_widget.recording.ogg import (
    OPUS_SILENCE,
    OggOpusWriter,
    ogg_crc,
    ogg_page,
    opus_samples,
)
from echo_widget.recording.sync import AudioPlacement, SenderClock, timestamp_difference

PACKET = bytes([0x78]) + b"\x01" * 40  # TOC config 15 (hybrid FB 20 ms), one frame
NTP_1S = 1 << 32


def clocks(video_at: tuple[float, int] | None, audio_at: tuple[float, int] | None
           ) -> tuple[SenderClock, SenderClock]:
    video, audio = SenderClock(90_000), SenderClock(48_000)
    if video_at:
        video.update(round(video_at[0] * NTP_1S), video_at[1])
    if audio_at:
        audio.update(round(audio_at[0] * NTP_1S), audio_at[1])
    return video, audio


def test_opus_samples_from_the_toc() -> None:
    assert opus_samples(PACKET) == 960
    assert opus_samples(bytes([0x78 | 1]) + b"\0") == 1920  # two frames
    assert opus_samples(bytes([0xF8 | 3, 3])) == 2880  # CELT 20 ms, code 3 with 3 frames
    assert opus_samples(OPUS_SILENCE) == 960
    assert opus_samples(b"") == 0
    assert opus_samples(bytes([0x0B | 3, 63])) == 0  # 63 x 60 ms: more than 120 ms


def test_ogg_crc_and_pages_are_what_ffmpeg_reads(tmp_path: Path) -> None:
    assert ogg_crc(b"") == 0
    assert ogg_crc(b"OggS") != zlib.crc32(b"OggS")  # not the reflected zlib CRC
    page = ogg_page(b"x" * 300, 960, 1, 0)
    assert page[26] == 2
    assert page[27:29] == bytes([255, 45])
    writer = OggOpusWriter(1)
    data = writer.headers() + b"".join(writer.packet(OPUS_SILENCE, i * 960) for i in range(50))
    path = tmp_path / "silence.ogg"
    path.write_bytes(data)
    out = subprocess.run(["ffprobe", "-v", "error", "-count_packets", "-show_entries",
                          "stream=codec_name,channels,nb_read_packets", "-of", "csv=p=0",
                          str(path)], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "opus,1,50"
    bad = bytearray(data)
    bad[-1] ^= 0xFF  # a corrupted page fails its CRC
    path.write_bytes(bytes(bad))
    out = subprocess.run(["ffprobe", "-v", "error", "-count_packets", "-show_entries",
                          "stream=nb_read_packets", "-of", "csv=p=0", str(path)],
                         capture_output=True, text=True, check=False)
    assert out.stdout.strip() != "50"


def test_timestamps_wrap() -> None:
    assert timestamp_difference(5, 0xFFFFFFFB) == 10
    assert timestamp_difference(0xFFFFFFFB, 5) == -10
    clock = SenderClock(48_000)
    assert clock.wall_time(0) is None
    clock.update(100 * NTP_1S, 0xFFFFFF00)
    assert clock.wall_time(0xFFFFFF00 + 48_000 - (1 << 32)) == 101.0


def test_audio_goes_where_the_sender_reports_put_it() -> None:
    # video frame 0 (RTP 9000) was captured at 10.0 s; audio RTP 48000 at 10.5 s
    placement = AudioPlacement(*clocks((10.0, 9000), (10.5, 48_000)))
    assert placement.prime() == [(OPUS_SILENCE, 0)]
    placement.video_frame(9000, 0.0, arrival=0.0)
    pages = placement.audio_packet(48_000, PACKET, arrival=0.9)
    assert pages[-1] == (PACKET, 24_000)  # 0.5 s after the first frame
    assert [p for p, _ in pages[:-1]] == [OPUS_SILENCE] * 24  # silence before it
    assert placement.offset_ms == 0.0
    assert placement.audio_packet(48_960, PACKET, arrival=0.92) == [(PACKET, 24_960)]


def test_packets_wait_for_the_reports() -> None:
    video, audio = clocks(None, None)
    placement = AudioPlacement(video, audio, hold=1.5)
    placement.prime()
    placement.video_frame(0, 0.0, arrival=5.0)
    assert placement.audio_packet(1000, PACKET, arrival=5.02) == []  # held
    assert placement.audio_packet(1960, PACKET, arrival=5.04) == []
    video.update(round(20.0 * NTP_1S), 0)  # video RTP 0 at 20.0 s
    audio.update(round(20.5 * NTP_1S), 1000)  # audio RTP 1000 at 20.5 s
    pages = placement.audio_packet(2920, PACKET, arrival=5.06)
    assert [(p, s) for p, s in pages if p == PACKET] == [
        (PACKET, 24_000), (PACKET, 24_960), (PACKET, 25_920)]  # all three, by the reports
    assert placement.resyncs == 0
    assert placement.offset_ms == 0.0


def test_without_reports_arrival_time_places_it_then_the_first_report_wins() -> None:
    video, audio = clocks(None, None)
    placement = AudioPlacement(video, audio, hold=0.5)
    placement.prime()
    placement.video_frame(0, 0.0, arrival=5.0)
    assert placement.audio_packet(1000, PACKET, arrival=5.02) == []
    pages = placement.audio_packet(1000 + 960, PACKET, arrival=5.6)  # no report in 0.5 s
    assert [s for p, s in pages if p == PACKET] == [960, 1920]  # by the first's arrival
    assert placement.offset_ms is None  # nothing to compare with yet
    video.update(round(20.0 * NTP_1S), 0)  # video RTP 0 at 20.0 s
    audio.update(round(21.0 * NTP_1S), 1000 + 1920)  # this audio at 21.0 s: 1 s in
    pages = placement.audio_packet(1000 + 1920, PACKET, arrival=5.62)
    assert pages[-1] == (PACKET, 48_000)
    assert placement.offset_ms == 0.0
    assert placement.resyncs == 1
    # a report 5 ms off moves nothing (under resync); 15 ms off does, and is counted
    audio.update(round((21.02 + 0.005) * NTP_1S), 1000 + 2880)
    placement.audio_packet(1000 + 2880, PACKET, arrival=5.64)
    assert placement.offset_ms == -5.0
    audio.update(round((21.04 + 0.015) * NTP_1S), 1000 + 3840)
    placement.audio_packet(1000 + 3840, PACKET, arrival=5.66)
    assert placement.resyncs == 2
    assert placement.offset_ms == 0.0


def test_a_lost_packet_is_silence_and_a_late_one_is_dropped() -> None:
    placement = AudioPlacement(*clocks((0.0, 0), (0.0, 0)))
    placement.prime()
    placement.video_frame(0, 0.0, arrival=0.0)
    assert placement.audio_packet(960, PACKET, 0.0) == [(PACKET, 960)]
    pages = placement.audio_packet(960 * 4, PACKET, 0.0)  # two packets lost
    assert pages == [(OPUS_SILENCE, 1920), (OPUS_SILENCE, 2880), (PACKET, 3840)]
    assert placement.audio_packet(960 * 2, PACKET, 0.0) == []  # too late: its place is taken
    assert placement.dropped == 1


def test_the_audio_never_trails_the_video_by_more_than_the_lag() -> None:
    placement = AudioPlacement(*clocks(None, None), lag=1.0)
    placement.prime()
    placement.video_frame(0, 0.0, arrival=0.0)
    assert placement.video_frame(0, 0.9, arrival=0.9) == []
    pages = placement.video_frame(0, 2.0, arrival=2.0)  # no audio at all: silence up to 1 s
    assert len(pages) == 49
    assert placement.next_sample == 48_000
