"""Lip sync over a long recording: does the audio drift from the video?

    python benchmarks/av_sync_bench.py                 # 5 minutes
    python benchmarks/av_sync_bench.py --seconds 20    # a quick look

One aiortc peer sends a VP8 + Opus clip made at run time (a white frame and the onset of a
1 kHz tone together, once a second; ``echo_widget.testing.make_av_clip``), looped, to an
``EchoWidget(audio=True)`` that records it. The recording is then decoded: each tone onset is
measured against its flash frame, at the start and at the end. ``stats["av_offset_ms"]``
(where the recorder put the audio against where the browser's sender reports put it) is
sampled once a second. Everything runs in a private loopback-only network namespace
(re-executed through tools/netns-run), ``iceServers=[]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


class _Ignore:
    """A packet sink for the echo coming back: this benchmark looks at the recording."""

    def on_rtp(self, packet: Any, data: bytes) -> bool:
        return False


async def record(clip: Path, seconds: float, work: Path) -> tuple[Path, list[float | None]]:
    """Stream the clip for ``seconds`` into a recording; the av_offset_ms samples."""
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

    from echo_widget import EchoWidget
    from echo_widget._aiortc_compat import tap_receiver
    from echo_widget.testing import AvClip

    widget = EchoWidget(ice_servers=[], audio=True, record_to=work / "av.webm")
    answers: asyncio.Queue[str] = asyncio.Queue()

    def send(content: dict[str, Any], buffers: Any = None) -> None:
        if content.get("type") == "answer":
            answers.put_nowait(content["sdp"])
        elif content.get("type") == "error":
            print(f"# kernel error: {content['message']}", file=sys.stderr)

    widget.send = send  # type: ignore[method-assign]
    source = AvClip(clip, loop=True, keep_sent=False)
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    for track in (source.video, source.audio):
        transceiver = pc.addTransceiver(track, direction="sendrecv")
        tap_receiver(transceiver.receiver, _Ignore())  # the echo is not decoded here
    await pc.setLocalDescription(await pc.createOffer())
    widget.hub.deliver({"type": "offer", "session": "sync", "sdp": pc.localDescription.sdp})
    await pc.setRemoteDescription(RTCSessionDescription(await answers.get(), "answer"))
    offsets: list[float | None] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        await asyncio.sleep(1)
        offsets.append(widget.stats.get("av_offset_ms"))
    await pc.close()
    source.stop()
    await widget.aclose()
    return Path(widget.recordings[0]), offsets


def summary(values: list[float]) -> str:
    return (f"median {statistics.median(values):+.1f} ms, min {min(values):+.1f}, "
            f"max {max(values):+.1f} (n={len(values)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=300.0)
    args = parser.parse_args()
    if os.environ.get("ECHO_NETNS") != "1":  # peers only on a private loopback
        os.execv(str(ROOT / "tools" / "netns-run"),
                 [str(ROOT / "tools" / "netns-run"), sys.executable, *sys.argv])
    from echo_widget.testing import lip_sync, make_av_clip

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        clip = make_av_clip(work / "clip.webm", seconds=10)
        reference = lip_sync(clip)
        path, offsets = asyncio.run(record(clip, args.seconds, work))
        measured = lip_sync(path)
    known = [o for o in offsets if o is not None]
    edge = min(10, len(measured) // 2)
    print(f"\nmachine: {os.cpu_count()} cores; {args.seconds:g} s recorded; "
          "VP8 320x240 + Opus 48 kb/s, a flash and a tone onset once a second\n")
    print("| what | tone onset - flash |")
    print("|---|---|")
    print(f"| the source clip itself | {summary(reference)} |")
    print(f"| recording, first {edge} s | {summary(measured[:edge])} |")
    print(f"| recording, last {edge} s | {summary(measured[-edge:])} |")
    print(f"| recording, all | {summary(measured)} |")
    if known:
        print(f"| stats av_offset_ms, first / last sample | {known[0]:+.1f} / "
              f"{known[-1]:+.1f} ms |")
    drift = statistics.median(measured[-edge:]) - statistics.median(measured[:edge])
    print(f"\ndrift (last - first, medians): {drift:+.1f} ms; "
          f"worst onset: {max(map(abs, measured)):.1f} ms")


if __name__ == "__main__":
    main()
