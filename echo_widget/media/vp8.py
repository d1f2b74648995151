"""VP8 over RTP: reassemble encoded frames from packets, with no decoding.

A frame is the run of packets that starts with a VP8 payload descriptor whose
S bit is set and partition index is 0, and ends with the RTP marker bit
(RFC 7741). :class:`FrameAssembler` releases a frame the moment its last packet
is in, instead of waiting for the next frame's first packet as aiortc's jitter
buffer does (which adds one frame interval of latency).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .forwarder import TrackFormat

VIDEO_CLOCK_RATE = 90_000
MAX_TIMESTAMP_STEP = 10 * VIDEO_CLOCK_RATE
"""A larger jump between consecutive frames is a sender clock reset, not elapsed time."""
_RESET_STEP = VIDEO_CLOCK_RATE // 30
_SEQ_MOD = 1 << 16
_TS_MOD = 1 << 32


@dataclass(frozen=True, slots=True)
class EncodedFrame:
    """One complete VP8 frame, exactly as the sender's encoder produced it."""

    data: bytes
    timestamp: int
    """90 kHz units: the RTP timestamp unwrapped, and re-based where the sender's clock
    jumps (backwards, or forwards by more than ``MAX_TIMESTAMP_STEP``), so that it always
    increases."""
    keyframe: bool
    rtp_timestamp: int = 0
    """The sender's own RTP timestamp of the frame (32 bits, as on the wire)."""


def is_keyframe(frame: bytes) -> bool:
    """Whether a VP8 frame is a keyframe (the inverted P bit of its first byte is 0)."""
    return len(frame) >= 10 and not frame[0] & 0x01 and frame[3:6] == b"\x9d\x01\x2a"


def keyframe_size(frame: bytes) -> tuple[int, int]:
    """Width and height from a VP8 keyframe header (RFC 6386, section 9.1)."""
    if not is_keyframe(frame):
        raise ValueError("not a VP8 keyframe")
    width = int.from_bytes(frame[6:8], "little") & 0x3FFF
    height = int.from_bytes(frame[8:10], "little") & 0x3FFF
    return width, height


def starts_frame(payload: bytes) -> bool:
    """Whether an RTP payload (VP8 descriptor first) begins a frame: S=1 and PID=0."""
    return bool(payload) and payload[0] & 0x17 == 0x10


def starts_keyframe(payload: bytes, data: bytes) -> bool:
    """Whether a packet (RTP payload, depayloaded data) is the first of a keyframe."""
    return starts_frame(payload) and is_keyframe(data)


VP8 = TrackFormat(kind="video", restart_step=VIDEO_CLOCK_RATE // 30,
                  starts_echo=starts_keyframe)
"""VP8 video: the echo starts on a keyframe's first packet; a restart steps one frame."""


class _Unwrapper:
    """Maps a wrapping counter (RTP sequence numbers or timestamps) onto a line."""

    __slots__ = ("_last", "_modulus")

    def __init__(self, modulus: int) -> None:
        self._modulus = modulus
        self._last: int | None = None

    def unwrap(self, value: int) -> int:
        if self._last is None:
            self._last = value
            return value
        half = self._modulus // 2
        delta = (value - self._last) % self._modulus
        if delta >= half:
            delta -= self._modulus
        extended = self._last + delta
        if delta > 0:
            self._last = extended
        return extended


@dataclass(slots=True)
class _Packet:
    timestamp: int
    marker: bool
    start: bool
    data: bytes


class FrameAssembler:
    """Turns depayloaded VP8 RTP packets into frames, in order, as soon as each is complete.

    ``on_frame`` gets every complete frame in sending order. When packets are
    missing for longer than ``max_wait`` (in media time: RTP timestamps of
    later packets), the incomplete frames are dropped and ``on_loss`` is called,
    so that the consumer can skip to the next keyframe and request one.
    Retransmitted packets (NACK) that arrive within ``max_wait`` fill the gap.
    """

    def __init__(
        self,
        on_frame: Callable[[EncodedFrame], None],
        on_loss: Callable[[], None],
        *,
        max_wait: float = 0.25,
        max_packets: int = 2048,
    ) -> None:
        self._on_frame = on_frame
        self._on_loss = on_loss
        self._max_wait_ticks = int(max_wait * VIDEO_CLOCK_RATE)
        self._max_packets = max_packets
        self._seq = _Unwrapper(_SEQ_MOD)
        self._ts = _Unwrapper(_TS_MOD)
        self._packets: dict[int, _Packet] = {}
        self._next_seq: int | None = None
        self._highest_seq: int | None = None
        self._newest_ts = 0
        """Timestamp of the packet with the highest sequence number (not the highest timestamp:
        a sender may reset its clock)."""
        self._released_ts = 0
        self._last_out_ts: int | None = None
        self._out_offset = 0
        self.frames_lost = 0
        """How many times packets were given up on (each a gap of one or more frames)."""

    def add(self, sequence_number: int, timestamp: int, marker: bool, payload: bytes,
            data: bytes) -> None:
        """Add one packet: ``payload`` is the RTP payload, ``data`` the same without descriptor."""
        seq = self._seq.unwrap(sequence_number)
        ts = self._ts.unwrap(timestamp)
        start = starts_frame(payload)
        if self._next_seq is None:
            if not start:
                return  # join the stream at the first frame boundary
            self._next_seq = seq
            self._released_ts = ts
        if seq < self._next_seq or seq in self._packets:
            return  # late duplicate or retransmission of something already released
        self._packets[seq] = _Packet(ts, marker, start, data)
        if self._highest_seq is None or seq > self._highest_seq:
            self._highest_seq = seq
            self._newest_ts = ts
        self._release()
        if not self._packets or self._next_seq is None:
            return
        # How long have we waited? From the stuck frame's own timestamp, or, when
        # its first packet is missing, from the last frame released.
        head = self._packets.get(self._next_seq)
        waiting_since = head.timestamp if head is not None else self._released_ts
        if (abs(self._newest_ts - waiting_since) > self._max_wait_ticks
                or len(self._packets) > self._max_packets):
            self._skip_gap()
            self._release()

    def _release(self) -> None:
        """Emit every complete frame that starts at the next expected sequence number."""
        packets = self._packets
        while self._next_seq is not None:
            first = packets.get(self._next_seq)
            if first is None:
                return
            if not first.data:  # padding: takes a sequence number, carries no media
                del packets[self._next_seq]
                self._next_seq += 1
                continue
            if not first.start:
                return  # the frame's start was lost: handled by _skip_gap
            end = self._next_seq
            while not packets[end].marker:
                following = packets.get(end + 1)
                if following is None:
                    return  # not complete yet
                if following.timestamp != first.timestamp or following.start:
                    break  # a new frame begins where this one should have ended
                end += 1
            if not packets[end].marker:
                self._skip_gap()  # the marker packet was lost
                continue
            parts = [packets.pop(seq).data for seq in range(self._next_seq, end + 1)]
            self._next_seq = end + 1
            frame = b"".join(parts)
            self._released_ts = first.timestamp
            self._on_frame(EncodedFrame(frame, self._output_ts(first.timestamp),
                                        is_keyframe(frame), first.timestamp & (_TS_MOD - 1)))

    def _output_ts(self, ts: int) -> int:
        out = ts + self._out_offset
        last = self._last_out_ts
        if last is not None and not last < out <= last + MAX_TIMESTAMP_STEP:
            self._out_offset += last + _RESET_STEP - out  # the sender's clock jumped
            out = last + _RESET_STEP
        self._last_out_ts = out
        return out

    def _skip_gap(self) -> None:
        """Give up on the frame at the head: jump to the next frame start after it."""
        assert self._next_seq is not None
        head = self._packets.get(self._next_seq)
        later_starts = sorted(
            seq for seq, p in self._packets.items()
            if seq > self._next_seq and p.start and (head is None or p.timestamp != head.timestamp)
        )
        if later_starts:
            self._next_seq = later_starts[0]
            for seq in [s for s in self._packets if s < self._next_seq]:
                del self._packets[seq]
        else:
            self._packets.clear()
            self._next_seq = None
            self._highest_seq = None
        self.frames_lost += 1
        self._on_loss()
