"""Re-stamping one incoming RTP stream as the echo's: pure numbers, no I/O, any codec.

An echoed packet keeps its payload and marker; its sequence number and timestamp are the
incoming ones shifted by fixed offsets, so a gap stays a gap and a retransmission fills the
same hole on the viewer's side. The echo starts on a packet the caller says can start it (a
keyframe's first packet for video, any packet for audio) and restarts that way when the
incoming SSRC changes, going on from the newest echoed numbers. A packet that comes again
(a retransmission of what did arrive, or a browser probing bandwidth with old packets over
RTX) is echoed once. A paused echo (packets shed) restarts the same way, but its timestamps keep
their offset, so the viewer sees the time that passed.
"""

from __future__ import annotations

import random

_SEQ_MASK = 0xFFFF
_TS_MASK = 0xFFFFFFFF
_HALF = 0x8000


def _clear(flags: bytearray, start: int, count: int) -> None:
    """Zero ``count`` flags from ``start``, wrapping around the end."""
    end = start + count
    if end <= len(flags):
        flags[start:end] = bytes(count)
    else:
        flags[start:] = bytes(len(flags) - start)
        flags[:end - len(flags)] = bytes(end - len(flags))


class RtpMunger:
    """Maps one incoming stream's (sequence number, timestamp) onto the echo's."""

    __slots__ = ("_echoed", "_highest", "_kept_ts_offset", "_last_out_seq", "_last_out_ts",
                 "_offsets", "_restart_step", "_ssrc")

    def __init__(self, restart_step: int, *, first: tuple[int, int] | None = None) -> None:
        """``restart_step``: the timestamp step from the last echoed packet to a restarted
        echo's first (one frame). ``first``: the numbers before the echo's first packet
        (random by default, as RFC 3550 wants)."""
        self._restart_step = restart_step
        last_seq, last_ts = first if first is not None else (
            random.randrange(1 << 15) - 1, random.randrange(1 << 32))
        self._last_out_seq = last_seq
        self._last_out_ts = last_ts
        """The newest echoed packet's outgoing numbers: a restarted echo goes on from them."""
        self._ssrc: int | None = None
        self._offsets: tuple[int, int] | None = None
        """Added to (sequence number, timestamp); None until the echo (re)starts."""
        self._kept_ts_offset: int | None = None
        """The timestamp offset a paused echo of the same stream restarts with."""
        self._echoed = bytearray(1 << 16)
        """1 at each incoming sequence number echoed in the last half cycle."""
        self._highest = 0

    @property
    def ssrc(self) -> int | None:
        """The incoming stream being echoed (the latest seen)."""
        return self._ssrc

    def waiting(self, ssrc: int) -> bool:
        """Whether the echo of ``ssrc`` has yet to start (a new SSRC restarts it)."""
        if ssrc != self._ssrc:
            self._ssrc = ssrc
            self._offsets = None
            self._kept_ts_offset = None
        return self._offsets is None

    def pause(self) -> None:
        """Echo nothing until a packet that can start the echo: it then goes on from the next
        sequence number, with the timestamps' offset kept (the stream is the same)."""
        if self._offsets is not None:
            self._kept_ts_offset = self._offsets[1]
            self._offsets = None

    @property
    def started(self) -> bool:
        """Whether packets of the current stream are being echoed (not waiting, not paused)."""
        return self._offsets is not None

    def echo_timestamp(self, ts: int) -> int | None:
        """The echo's timestamp for an incoming one, or None before the echo started."""
        offsets = self._offsets
        return None if offsets is None else (ts + offsets[1]) & _TS_MASK

    def munge(self, seq: int, ts: int, can_start: bool) -> tuple[int, int] | None:
        """The echo's (sequence number, timestamp) for an incoming packet, or None: not
        echoed (before the start, or a packet that was echoed already)."""
        offsets = self._offsets
        if offsets is None:
            if not can_start:
                return None
            ts_offset = self._kept_ts_offset
            if ts_offset is None:
                ts_offset = (self._last_out_ts + self._restart_step - ts) & _TS_MASK
            offsets = self._offsets = ((self._last_out_seq + 1 - seq) & _SEQ_MASK, ts_offset)
            self._echoed = bytearray(1 << 16)
            self._highest = (seq - 1) & _SEQ_MASK
        echoed = self._echoed
        if echoed[seq]:
            return None
        echoed[seq] = 1
        out_seq = (seq + offsets[0]) & _SEQ_MASK
        out_ts = (ts + offsets[1]) & _TS_MASK
        ahead = (seq - self._highest) & _SEQ_MASK
        if ahead < _HALF:  # the newest so far (not a late retransmission)
            if ahead == 1:  # the usual case: forget the number half a cycle ahead
                echoed[(seq + _HALF) & _SEQ_MASK] = 0
            else:  # a jump (loss): forget all those half a cycle ahead
                _clear(echoed, (self._highest + 1 + _HALF) & _SEQ_MASK, ahead)
            self._highest = seq
            self._last_out_seq = out_seq
            self._last_out_ts = out_ts
        return out_seq, out_ts
