"""Ogg Opus framing (RFC 7845): the simplest container for Opus, which ffmpeg reads from a pipe.

Written by hand for the same reason as :mod:`.ivf`: the recorder streams packets as they
arrive and never re-encodes, so all it needs is a page in front of each packet. One packet
per page, so ffmpeg gets each packet as soon as it is written; the granule position (the end
of the packet, in 48 kHz samples, counting the pre-skip) places it in time, so a gap in the
granules is a gap in the audio, not a shift.
"""

from __future__ import annotations

import struct

OPUS_CLOCK_RATE = 48_000
ENCODER_DELAY = 312
"""libopus' look-ahead at 48 kHz (6.5 ms): a browser's first decoded samples came before
the first packet's RTP timestamp by this much; written as the stream's pre-skip."""

_BOS = 0x02
_EOS = 0x04


def _crc_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) if crc & 0x80000000 else crc << 1
        table.append(crc & 0xFFFFFFFF)
    return tuple(table)


_CRC_TABLE = _crc_table()


def ogg_crc(data: bytes | bytearray) -> int:
    """Ogg's CRC-32: polynomial 0x04C11DB7, not reflected, initial value and final XOR 0."""
    crc = 0
    table = _CRC_TABLE
    for byte in data:
        crc = ((crc << 8) & 0xFFFFFFFF) ^ table[(crc >> 24) ^ byte]
    return crc


def ogg_page(packet: bytes, granule: int, serial: int, sequence: int, *,
             first: bool = False, last: bool = False) -> bytes:
    """One Ogg page holding exactly one whole packet."""
    if len(packet) > 255 * 255 - 1:
        raise ValueError(f"an Ogg page holds at most 65024 bytes, not {len(packet)}")
    lacing = bytes([255] * (len(packet) // 255) + [len(packet) % 255])
    flags = (_BOS if first else 0) | (_EOS if last else 0)
    header = struct.pack("<4sBBqIIIB", b"OggS", 0, flags, granule, serial, sequence, 0,
                         len(lacing)) + lacing
    page = bytearray(header + packet)
    struct.pack_into("<I", page, 22, ogg_crc(page))
    return bytes(page)


def opus_head(channels: int, pre_skip: int = ENCODER_DELAY) -> bytes:
    """The OpusHead identification packet (channel mapping family 0: mono or stereo)."""
    if channels not in (1, 2):
        raise ValueError(f"Opus mapping family 0 has 1 or 2 channels, not {channels}")
    return struct.pack("<8sBBHIhB", b"OpusHead", 1, channels, pre_skip, OPUS_CLOCK_RATE, 0, 0)


def opus_tags(vendor: str = "echo-widget") -> bytes:
    """The OpusTags comment packet: a vendor string and no comments."""
    encoded = vendor.encode()
    return b"OpusTags" + struct.pack("<I", len(encoded)) + encoded + struct.pack("<I", 0)


_FRAME_SAMPLES_SILK = (480, 960, 1920, 2880)
_FRAME_SAMPLES_HYBRID = (480, 960)
_FRAME_SAMPLES_CELT = (120, 240, 480, 960)


def opus_samples(packet: bytes) -> int:
    """Samples at 48 kHz that an Opus packet decodes to (RFC 6716, section 3.1); 0 if empty
    or malformed."""
    if not packet:
        return 0
    toc = packet[0]
    config = toc >> 3
    if config < 12:
        per_frame = _FRAME_SAMPLES_SILK[config & 3]
    elif config < 16:
        per_frame = _FRAME_SAMPLES_HYBRID[config & 1]
    else:
        per_frame = _FRAME_SAMPLES_CELT[config & 3]
    code = toc & 3
    if code == 0:
        frames = 1
    elif code in (1, 2):
        frames = 2
    else:
        if len(packet) < 2:
            return 0
        frames = packet[1] & 0x3F
    samples = per_frame * frames
    return samples if samples <= 5760 else 0  # at most 120 ms per packet


OPUS_SILENCE = b"\xf8\xff\xfe"
"""A 20 ms Opus packet (CELT, full band) that decodes to silence: fills lost packets."""
OPUS_SILENCE_SAMPLES = 960


class OggOpusWriter:
    """Pages for one Opus stream: headers, then each packet at its place in time."""

    def __init__(self, channels: int, serial: int = 0x45434830) -> None:
        self._serial = serial
        self._sequence = 0
        self.channels = channels

    def _page(self, packet: bytes, granule: int, *, first: bool = False,
              last: bool = False) -> bytes:
        page = ogg_page(packet, granule, self._serial, self._sequence, first=first, last=last)
        self._sequence += 1
        return page

    def headers(self) -> bytes:
        """The two header pages (OpusHead, OpusTags) that start the stream."""
        return (self._page(opus_head(self.channels), 0, first=True)
                + self._page(opus_tags(), 0))

    def packet(self, packet: bytes, start: int) -> bytes:
        """A page for ``packet`` whose first sample is at ``start`` (48 kHz, from the file's
        start): its granule is the end of the packet plus the pre-skip."""
        return self._page(packet, start + opus_samples(packet) + ENCODER_DELAY)

    def end(self, granule: int) -> bytes:
        """An empty last page (EOS)."""
        return self._page(b"", granule, last=True)
