"""FrameAssembler: VP8 RTP packets back into the exact frames, in order, as soon as complete."""

from __future__ import annotations

import itertools
import random
from fractions import Fraction

import av
from aiortc.codecs.vpx import Vp8Encoder, vp8_depayload
from hypothesis import given, settings
from hypothesis import strategies as st

from echo_widget.media.vp8 import EncodedFrame, FrameAssembler, is_keyframe, keyframe_size

Packet = tuple[int, int, bool, bytes, bytes]


def keyframe_bytes(width: int, height: int, body: bytes) -> bytes:
    tag = bytes([0x10, 0x02, 0x00])  # P bit 0: keyframe
    size = width.to_bytes(2, "little") + height.to_bytes(2, "little")
    return tag + b"\x9d\x01\x2a" + size + body


def delta_bytes(body: bytes) -> bytes:
    return bytes([0x11, 0x02, 0x00]) + body


def packetize(frames: list[bytes], first_seq: int = 65_500, first_ts: int = 2**32 - 6000,
              ) -> list[Packet]:
    """RTP packets as aiortc's sender makes them (sequence numbers and timestamps wrap)."""
    encoder = Vp8Encoder()
    packets: list[Packet] = []
    seq = first_seq
    for i, frame in enumerate(frames):
        packet = av.Packet(frame)
        packet.pts = i * 3000
        packet.time_base = Fraction(1, 90000)
        payloads, timestamp = encoder.pack(packet)
        ts = (first_ts + timestamp) % 2**32
        for j, payload in enumerate(payloads):
            packets.append((seq % 2**16, ts, j == len(payloads) - 1, payload,
                            vp8_depayload(payload)))
            seq += 1
    return packets


def run(packets: list[Packet], **kwargs: float) -> tuple[list[EncodedFrame], int]:
    out: list[EncodedFrame] = []
    losses = [0]

    def lost() -> None:
        losses[0] += 1

    assembler = FrameAssembler(out.append, lost, **kwargs)  # type: ignore[arg-type]
    for packet in packets:
        assembler.add(*packet)
    return out, losses[0]


frame_bodies = st.lists(st.binary(min_size=1, max_size=4000), min_size=2, max_size=25)


def as_frames(bodies: list[bytes]) -> list[bytes]:
    return [keyframe_bytes(640, 360, b) if i % 10 == 0 else delta_bytes(b)
            for i, b in enumerate(bodies)]


def test_keyframe_helpers() -> None:
    key = keyframe_bytes(1280, 720, b"x" * 20)
    assert is_keyframe(key)
    assert keyframe_size(key) == (1280, 720)
    assert not is_keyframe(delta_bytes(b"x" * 20))
    assert not is_keyframe(b"")


@settings(max_examples=200, deadline=None)
@given(frame_bodies)
def test_in_order_packets_give_back_every_frame_exactly(bodies: list[bytes]) -> None:
    frames = as_frames(bodies)
    out, losses = run(packetize(frames))
    assert [f.data for f in out] == frames
    assert [f.keyframe for f in out] == [is_keyframe(f) for f in frames]
    assert losses == 0
    timestamps = [f.timestamp for f in out]
    assert timestamps == sorted(timestamps), "unwrapped timestamps never go backwards"


def test_a_frame_is_released_by_its_own_marker_packet() -> None:
    frames = as_frames([b"a" * 3000, b"b" * 3000])
    packets = packetize(frames)
    first_frame_packets = [p for p in packets if p[1] == packets[0][1]]
    out, _ = run(first_frame_packets)
    assert [f.data for f in out] == frames[:1], "no waiting for the next frame's first packet"


@settings(max_examples=200, deadline=None)
@given(frame_bodies, st.randoms(use_true_random=False))
def test_reordered_packets_within_the_wait_give_back_every_frame(
        bodies: list[bytes], rnd: random.Random) -> None:
    frames = as_frames(bodies)
    packets = packetize(frames)
    # swap neighbours (as the network or a NACK retransmission would); the stream's
    # first packet stays first: the assembler joins at the first frame start it sees
    # (see test_joins_mid_stream_at_a_frame_boundary).
    for i in range(1, len(packets) - 1, 2):
        if rnd.random() < 0.5:
            packets[i], packets[i + 1] = packets[i + 1], packets[i]
    out, losses = run(packets)
    assert [f.data for f in out] == frames
    assert losses == 0


@settings(max_examples=300, deadline=None)
@given(frame_bodies, st.data())
def test_a_lost_packet_drops_exactly_its_frame_and_reports_loss(
        bodies: list[bytes], data: st.DataObject) -> None:
    frames = as_frames(bodies)
    packets = packetize(frames)
    lost_index = data.draw(st.integers(0, len(packets) - 1))
    lost_ts = packets[lost_index][1]
    lost_frame = sorted({p[1] for p in packets}, key=lambda t: (t - packets[0][1]) % 2**32
                        ).index(lost_ts)
    out, losses = run(packets[:lost_index] + packets[lost_index + 1:], max_wait=0.0)
    if lost_frame == len(frames) - 1:  # nothing after it: it just never completes
        assert [f.data for f in out] == frames[:-1]
        assert losses == 0
    elif lost_index == 0:  # never saw the stream's first packet: joins at the next frame
        assert [f.data for f in out] == frames[1:]
        assert losses == 0
    else:
        assert [f.data for f in out] == frames[:lost_frame] + frames[lost_frame + 1:]
        assert losses == 1


def test_a_gap_is_waited_for_then_skipped() -> None:
    frames = as_frames([bytes([i]) * 2500 for i in range(30)])
    packets = packetize(frames)
    missing = packets.pop(5)  # in frame 2 or so; later frames keep coming
    out: list[EncodedFrame] = []
    losses: list[int] = []
    assembler = FrameAssembler(out.append, lambda: losses.append(1), max_wait=0.5)
    for packet in packets[:12]:
        assembler.add(*packet)
    held = len(out)
    assembler.add(*missing)  # the retransmission arrives in time: nothing is lost
    assert len(out) > held
    assert losses == []
    for packet in packets[12:]:
        assembler.add(*packet)
    assert [f.data for f in out] == frames


def test_padding_packets_are_skipped() -> None:
    frames = as_frames([b"a" * 100, b"b" * 100, b"c" * 100])
    packets = packetize(frames)
    # insert an empty (padding) packet between frames, renumbering what follows
    seq0 = packets[0][0]
    padded = [packets[0], ((seq0 + 1) % 2**16, packets[0][1], False, b"", b"")]
    padded += [((p[0] + 1) % 2**16, *p[1:]) for p in packets[1:]]
    out, losses = run(padded)  # type: ignore[arg-type]
    assert [f.data for f in out] == frames
    assert losses == 0


def test_joins_mid_stream_at_a_frame_boundary() -> None:
    frames = as_frames([b"a" * 3000, b"b" * 3000, b"c" * 10])
    packets = packetize(frames)
    out, _ = run(packets[1:])  # the first frame's first packet never came
    assert [f.data for f in out] == frames[1:]
    # a packet older than the one the assembler joined at is not waited for
    out, _ = run([packets[1], packets[0], *packets[2:]], max_wait=0.0)
    assert [f.data for f in out] == frames[1:]


def test_a_sender_clock_jump_keeps_frames_flowing_and_timestamps_increasing() -> None:
    frames = as_frames([bytes([i]) * 2500 for i in range(20)])
    before = packetize(frames[:10], first_seq=100, first_ts=900_000)
    # the sender loops its clip: sequence numbers go on, timestamps restart far back
    after = packetize(frames[10:], first_seq=100 + len(before), first_ts=0)
    out, losses = run(before + after)
    assert [f.data for f in out] == frames
    assert losses == 0
    steps = [b.timestamp - a.timestamp for a, b in itertools.pairwise(out)]
    assert all(step > 0 for step in steps)
    assert max(steps) <= 3000
