"""Forwarding vs transcoding: server CPU per stream, echoed fps, round trip, setup time, RSS.

    python benchmarks/echo_bench.py                 # full table: N = 1, 4, 16, 32
    python benchmarks/echo_bench.py --streams 2 --seconds 3 --modes forward   # quick check
    python benchmarks/echo_bench.py --modes forward,forward+audio   # what the microphone costs
    python benchmarks/echo_bench.py --streams 8,16,24,32 --modes forward,forward-noshed,janus
                                                    # overload: the knee, shedding
    python benchmarks/echo_bench.py --streams 16,32,48 --modes forward,forward-1read \
        --busy 0.8 --client-nice 10                 # a busy kernel loop: the server's own delay
    python benchmarks/echo_bench.py --streams 1,8,16 --modes forward,janus --rounds 3
                                                    # against Janus: pairs alternated, median

A server process holds the echo sessions (``forward``: EchoWidget; ``forward+rec``: EchoWidget
recording every stream; ``forward+audio``: EchoWidget(audio=True), each peer sending the same
video and a 32 kb/s Opus track; ``relay``: the aiortc echo a user would otherwise write, with
``MediaRelay``, which decodes and re-encodes; ``janus``: Janus's echotest plugin, a C
forwarder, the anchor for what forwarding should cost: see janus_anchor.py;
``forward-noshed``: EchoWidget echoing every packet however late, shedding's baseline;
``forward-aiortc``: EchoWidget on aiortc's and aioice's usual path (each packet through
aioice's queue, aiortc's ``_handle_rtp_packet`` with its per-packet REMB estimator, the
transports' ``_send_rtp``) instead of the lean path and the fixed REMB cap: their baseline;
``forward-1read``: EchoWidget reading one datagram per wake-up of the loop, as asyncio does,
instead of the rest of a burst too: that reading's baseline;
``direct``: no server, each client peer sends to a second one beside it, the baseline of the
round trip). In the ``forward`` modes the server also counts the delay it added to each echoed
packet (``stats["echo_delay_ms"]``'s histogram: from the client's abs-send-time stamp), how
long, in one in eight wake-ups of the lean path's socket callback, the datagram read first
had waited since it reached the server's socket (the kernel's receive timestamp,
``SIOCGSTAMPNS``) when the wake-up's handling ended (``held``: the server's own share, echoed
or shed), and the packets it shed, over the same window as the CPU. ``--busy`` keeps the
server's loop spinning that share of every 10 ms, as a kernel busy with other work;
``--client-nice`` runs the clients at a lower priority, as if the browsers were elsewhere.
``--rounds K`` runs every (mode, N) K times, N by N with the modes side by side, their order
reversed every other round, and prints each round's ratio to Janus and their median: the
machine's load drifts between runs minutes apart.
A separate client process runs N aiortc peers,
each sending a pre-encoded 1280x720 30 fps VP8 clip at 1.5 Mb/s (keyframe every 60 frames,
made at run time with ffmpeg) with ``MediaPlayer(decode=False)``; a keyframe request (PLI)
is answered with the clip's latest keyframe sent again with the next frame, as a browser's
encoder would answer it. Signaling between the two goes
over a loopback TCP socket as JSON lines, in the widget's own protocol. Everything runs in a
private loopback-only network namespace (re-executed through tools/netns-run),
``iceServers=[]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------- server


async def signaling_server(deliver: Any) -> tuple[asyncio.Server, Any, asyncio.Semaphore]:
    """The widget's protocol as JSON lines on a loopback TCP port.

    Each line goes to ``deliver(message)``; the returned ``send`` writes a reply to the
    connection that named its session; the semaphore is released as each connection ends.
    """
    writers: dict[str, asyncio.StreamWriter] = {}

    def send(content: dict[str, Any], buffers: Any = None) -> None:
        writer = writers.get(content.get("session") or "")
        if writer is not None:
            writer.write(json.dumps(content).encode() + b"\n")

    finished = asyncio.Semaphore(0)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := await reader.readline():
            message = json.loads(line)
            writers[message["session"]] = writer
            deliver(message)
        finished.release()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, send, finished


async def keep_busy(share: float) -> None:
    """Spin on the loop for ``share`` of every 10 ms, catching up when late: a kernel whose loop
    is busy with other work, so that the echo has the rest of the loop's time at most."""
    loop = asyncio.get_running_loop()
    tick = loop.time()
    while True:
        end = time.perf_counter() + share * 0.010
        while time.perf_counter() < end:
            pass
        tick += 0.010
        await asyncio.sleep(max(0.0, tick - loop.time()))


async def serve(mode: str, port_file: Path, record_dir: Path, clients: int,
                busy: float = 0.0) -> None:
    """Accept ``clients`` signaling connections; echo every session offered on them (with the
    loop ``busy`` that share of the time)."""
    from echo_widget import EchoWidget  # imported before any offer, as in a notebook
    from echo_widget.media.delay import percentiles_since

    backend: Any = None
    server, send, finished = await signaling_server(lambda message: backend.deliver(message))
    if mode == "relay":
        backend = RelayEcho(send)
    else:
        if mode == "forward-noshed":  # every packet echoed however late: shedding's baseline
            from echo_widget.media.forwarder import MediaForwarder

            defaults = MediaForwarder.__init__.__kwdefaults__
            assert defaults is not None
            assert "shed_after_ms" in defaults
            defaults["shed_after_ms"] = None
        if mode == "forward-1read":  # one datagram per wake-up, as asyncio reads: the baseline
            from echo_widget import _aiortc_compat

            _aiortc_compat.READS_PER_WAKEUP = 1
        if mode == "forward-aiortc":  # aiortc's usual receive path: the fast path's baseline
            import echo_widget.session

            echo_widget.session.REMB_BITRATE = None
            echo_widget.session.LEAN_PATH = False
        held = socket_held_histogram()
        widget = EchoWidget(ice_servers=[], max_sessions=128, record_to=(
            record_dir / "rec.webm" if mode == "forward+rec" else None),
            audio=mode == "forward+audio")
        widget.send = send
        backend = widget.hub
        marks: list[tuple[list[int], int, int, list[int]]] = []
        spinning: list[asyncio.Task[None]] = []

        def mark() -> None:
            """The orchestrator's window starts or ends: keep the delay histogram and the
            counts; at the end, write what the window had."""
            books = (widget.hub.book.counters, widget.hub.book.audio_counters)
            marks.append(([sum(c) for c in zip(*(b.echo_delay.counts for b in books),
                                                strict=True)],
                          sum(b.packets_shed for b in books),
                          sum(b.packets_forwarded for b in books), held.copy()))
            if len(marks) == 2:
                for task in spinning:  # the window is over: the loop is the echo's again
                    task.cancel()
                (before, shed0, sent0, held0), (after, shed1, sent1, held1) = marks
                (record_dir / "delay.json").write_text(json.dumps({
                    "percentiles": percentiles_since(after, before, (50, 99, 100)),
                    "held": percentiles_since(held1, held0, (50, 99, 100)),
                    "shed": shed1 - shed0, "forwarded": sent1 - sent0}))

        asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, mark)
        if busy:
            spinning.append(asyncio.create_task(keep_busy(busy)))
    port_file.write_text(str(server.sockets[0].getsockname()[1]))
    for _ in range(clients):
        await finished.acquire()
    await backend.aclose()
    server.close()


SIOCGSTAMPNS = 0x8907
"""Linux's ioctl for when the datagram last read from a socket arrived (CLOCK_REALTIME)."""


HELD_SAMPLE = 8
"""One media datagram in this many is timed, so that timing adds little to the CPU counted."""


def socket_held_histogram() -> Any:
    """Count, for one in :data:`HELD_SAMPLE` wake-ups of the lean path's socket callback on a
    media datagram, the time from that datagram's arrival at the socket (the kernel's receive
    timestamp) to the end of the wake-up's handling, which sends its echo or sheds it there,
    and those of the rest of the burst read with it (so it is the longest of that burst): the
    server's own share of the delay, without the clients'."""
    import fcntl

    from echo_widget import _aiortc_compat
    from echo_widget.media.delay import DelayHistogram

    histogram = DelayHistogram()
    wrap = _aiortc_compat.FastReceive._wrap

    def timed_wrap(self: Any, usual: Any) -> Any:
        inner = wrap(self, usual)
        fd = usual.__self__.transport.get_extra_info("socket").fileno()
        stamp = bytearray(16)
        seen = [0]

        def datagram_received(data: Any, addr: Any) -> None:
            stamped = False
            if len(data) > 12 and 127 < data[0] < 192 and not 191 < data[1] < 209:
                seen[0] += 1
                if not seen[0] % HELD_SAMPLE:
                    try:  # the datagram asyncio just read, before the rest of a burst is
                        fcntl.ioctl(fd, SIOCGSTAMPNS, stamp)
                        stamped = True
                    except OSError:
                        pass
            inner(data, addr)
            if stamped:
                sec, nsec = struct.unpack("@qq", stamp)
                histogram.add((time.time_ns() - sec * 1_000_000_000 - nsec) / 1e6)

        return datagram_received

    _aiortc_compat.FastReceive._wrap = timed_wrap  # type: ignore[method-assign]
    return histogram


class RelayEcho:
    """The reference: aiortc's usual echo, ``pc.addTrack(MediaRelay().subscribe(track))``."""

    def __init__(self, send: Any) -> None:
        from aiortc.contrib.media import MediaRelay

        self.send = send
        self.relay = MediaRelay()
        self.pcs: dict[str, Any] = {}
        self.tasks: set[asyncio.Task[None]] = set()

    def deliver(self, content: dict[str, Any]) -> None:
        if content["type"] == "offer":
            task = asyncio.ensure_future(self._answer(content["session"], content["sdp"]))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _answer(self, session: str, sdp: str) -> None:
        from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.pcs[session] = pc
        pc.on("track", lambda track: pc.addTrack(self.relay.subscribe(track)))
        await pc.setRemoteDescription(RTCSessionDescription(sdp, "offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        self.send({"type": "answer", "session": session, "sdp": pc.localDescription.sdp})

    async def aclose(self) -> None:
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await asyncio.gather(*(pc.close() for pc in self.pcs.values()))


# --------------------------------------------------------------------------- client


class BenchPeer:
    """One client peer of the benchmarks: sends a pre-encoded clip, paced, looped; times each
    echoed frame against when the same bytes were sent. With ``processed``, its offer has the
    view's second (recvonly) video m-line, and the processed frames' arrivals are timed."""

    def __init__(self, session: str, clip: Path, answers: dict[str, asyncio.Future[str]],
                 writer: asyncio.StreamWriter | None, *, processed: bool = False,
                 audio: bool = False, direct: bool = False) -> None:
        from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender

        from echo_widget._aiortc_compat import on_keyframe_request, tap_receiver
        from echo_widget.media.vp8 import FrameAssembler
        from echo_widget.testing import AvClip, PacedTrack  # decode=False, paced, looped

        self.session, self._answers, self._writer = session, answers, writer
        self.janus: Any = None
        """Without a writer, the signaling is Janus's (janus_anchor.JanusSession)."""
        self.far: Any = None
        """``direct``: the second client peer the clip goes to, no server between."""
        self._direct = direct
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.sent: dict[bytes, float] = {}
        self.track: Any
        vp8 = [c for c in RTCRtpSender.getCapabilities("video").codecs
               if c.mimeType.lower() in ("video/vp8", "video/rtx")]
        if audio:  # the same video, and the clip's Opus track on a second m-line
            self.track = AvClip(clip, loop=True, keep_sent=False, on_sent=lambda kind, data: (
                self.on_sent(data) if kind == "video" else None))
            transceiver = self.pc.addTransceiver(self.track.video, direction="sendrecv")
            self.pc.addTransceiver(self.track.audio, direction="sendrecv")
        else:
            self.track = PacedTrack(clip, loop=True, on_sent=self.on_sent)
            transceiver = self.pc.addTransceiver(self.track, direction="sendrecv")
            # a PLI gets a keyframe with the next frame, as from a browser's encoder
            on_keyframe_request(transceiver.sender, self.track.request_keyframe)
        transceiver.setCodecPreferences(vp8)
        self.frames: list[float] = []
        self.latencies: list[float] = []
        self.first_frame: float | None = None
        """Offer sent to the first echoed frame, in seconds."""
        self.offered_at = 0.0
        self.answered_in = 0.0
        self.assembler = FrameAssembler(self.on_frame, lambda: None)
        tap_receiver(transceiver.receiver, self)
        self.processed_frames: list[float] = []
        if processed:
            second = self.pc.addTransceiver("video", direction="recvonly")
            second.setCodecPreferences(vp8)
            tap_receiver(second.receiver, _Arrivals(self.processed_frames))

    def on_sent(self, data: bytes) -> None:
        self.sent[hashlib.blake2b(data, digest_size=8).digest()] = time.perf_counter()

    def on_rtp(self, packet: Any, data: bytes) -> bool:
        self.assembler.add(packet.sequence_number, packet.timestamp, bool(packet.marker),
                           packet.payload, data)
        return False

    def on_frame(self, frame: Any) -> None:
        now = time.perf_counter()
        if self.first_frame is None:
            self.first_frame = now - self.offered_at
        self.frames.append(now)
        sent = self.sent.get(hashlib.blake2b(frame.data, digest_size=8).digest())
        if sent is not None:
            self.latencies.append(now - sent)

    async def connect(self) -> None:
        from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

        from echo_widget._aiortc_compat import tap_receiver

        await self.pc.setLocalDescription(await self.pc.createOffer())
        self.offered_at = time.perf_counter()
        if self._direct:
            self.far = RTCPeerConnection(RTCConfiguration(iceServers=[]))
            await self.far.setRemoteDescription(self.pc.localDescription)
            far = self.far.getTransceivers()[0]
            far.direction = "recvonly"
            tap_receiver(far.receiver, self)  # its frames are timed as an echo's would be
            await self.far.setLocalDescription(await self.far.createAnswer())
            sdp = self.far.localDescription.sdp
        elif self._writer is None:
            from janus_anchor import JanusSession

            self.janus = JanusSession()
            sdp = await self.janus.exchange(self.pc.localDescription.sdp)
        else:
            self._answers[self.session] = asyncio.get_running_loop().create_future()
            self._writer.write(json.dumps({"type": "offer", "session": self.session,
                                           "sdp": self.pc.localDescription.sdp}).encode() + b"\n")
            sdp = await self._answers[self.session]
        self.answered_in = time.perf_counter() - self.offered_at
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp, "answer"))


async def open_signaling(port: int) -> tuple[
        asyncio.StreamWriter, dict[str, asyncio.Future[str]], asyncio.Task[None]]:
    """Connect to a benchmark server's signaling port: the writer for offers, the futures
    the answers resolve (filled in by ``BenchPeer.connect``), and the task reading them."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    answers: dict[str, asyncio.Future[str]] = {}

    async def read_answers() -> None:
        while line := await reader.readline():
            message = json.loads(line)
            if message.get("type") == "answer":
                answers[message["session"]].set_result(message["sdp"])

    return writer, answers, asyncio.ensure_future(read_answers())


async def close_peers(peers: list[BenchPeer], writer: asyncio.StreamWriter,
                      reading: asyncio.Task[None]) -> None:
    """Say bye for every peer, close them and the signaling connection."""
    for p in peers:
        writer.write(json.dumps({"type": "bye", "session": p.session}).encode() + b"\n")
    await writer.drain()
    await asyncio.gather(*(p.pc.close() for p in peers))
    for p in peers:
        p.track.stop()
    writer.close()
    reading.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await reading


class _Arrivals:
    """A packet sink that records when each frame is complete."""

    def __init__(self, arrivals: list[float]) -> None:
        from echo_widget.media.vp8 import FrameAssembler

        self._assembler = FrameAssembler(lambda frame: arrivals.append(time.perf_counter()),
                                         lambda: None)

    def on_rtp(self, packet: Any, data: bytes) -> bool:
        self._assembler.add(packet.sequence_number, packet.timestamp, bool(packet.marker),
                            packet.payload, data)
        return False


async def client(port: int, streams: int, clip: Path, prefix: str, audio: bool = False,
                 direct: bool = False) -> dict[str, Any]:
    """N peers: connect, wait until all echo, measure until told to stop, report raw numbers.
    Port 0: the peers talk to Janus instead, or with ``direct`` each to a second peer."""
    writer: asyncio.StreamWriter | None = None
    answers: dict[str, asyncio.Future[str]] = {}
    if port:
        writer, answers, reading = await open_signaling(port)
    loop = asyncio.get_running_loop()

    peers = [BenchPeer(f"bench-{prefix}-{i}", clip, answers, writer, audio=audio,
                       direct=direct) for i in range(streams)]
    await asyncio.gather(*(p.connect() for p in peers))
    deadline = time.perf_counter() + 30
    while any(p.first_frame is None for p in peers) and time.perf_counter() < deadline:
        await asyncio.sleep(0.05)
    await asyncio.sleep(2)  # settle
    print("READY", flush=True)
    start = time.perf_counter()
    marks = [(len(p.frames), len(p.latencies)) for p in peers]
    await loop.run_in_executor(None, sys.stdin.readline)  # the orchestrator says STOP
    elapsed = time.perf_counter() - start
    fps = [(len(p.frames) - m[0]) / elapsed for p, m in zip(peers, marks, strict=True)]
    latencies = [x for p, m in zip(peers, marks, strict=True) for x in p.latencies[m[1]:]]
    firsts = [p.first_frame for p in peers if p.first_frame is not None]
    if writer is not None:
        await close_peers(peers, writer, reading)
    else:
        await asyncio.gather(*(p.janus.close() for p in peers if p.janus is not None))
        await asyncio.gather(*(p.pc.close() for p in peers),
                             *(p.far.close() for p in peers if p.far is not None))
        for p in peers:
            p.track.stop()
    return {"fps": fps, "latencies": latencies, "firsts": firsts,
            "answers": [p.answered_in for p in peers]}


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    return values[min(len(values) - 1, int(len(values) * q / 100))]


# --------------------------------------------------------------------------- orchestrator


CPUCLOCK_SCHED = 2
"""Linux's CPU-time clock kind that counts every nanosecond a process ran."""


def process_cpu_clock(pid: int) -> int:
    """The clock id of a process's CPU time, as glibc's ``clock_getcpuclockid`` makes it
    (Python has no binding): all its threads, ended ones too, in nanoseconds."""
    return ((~pid) << 3) | CPUCLOCK_SCHED


def _cpu_seconds(pid: int) -> tuple[float, float]:
    """CPU time of a process and of its living children (ffmpeg), in seconds: from each
    process's CPU-time clock, or from ``/proc``'s user and system ticks (10 ms, ±10 % of a 1 %
    process over 10 s) where that clock can't be read."""
    own = children = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(entry.name) != pid and int(fields[1]) != pid:
            continue
        try:
            seconds = time.clock_gettime_ns(process_cpu_clock(int(entry.name))) / 1e9
        except OSError:  # gone since, or a kernel without per-process CPU clocks
            seconds = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
        if int(entry.name) == pid:
            own += seconds
        else:
            children += seconds
    return own, children


def _rss_mb(pid: int) -> float:
    """Resident memory of a process and of its living children (ffmpeg), in MB: the same
    processes whose CPU is counted."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            status = (entry / "status").read_text()
        except OSError:
            continue
        if int(entry.name) != pid and int(stat[1]) != pid:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) / 1024
    return total


def run_one(mode: str, streams: int, clip: Path, window: float, work: Path,
            client_procs: int, client_nice: int = 0, busy: float = 0.0) -> dict[str, Any]:
    port_file = work / f"port-{mode}-{streams}"
    record_dir = work / f"rec-{mode}-{streams}"
    record_dir.mkdir()
    me = [sys.executable, __file__]
    niced = ["nice", "-n", str(client_nice)] if client_nice else []
    procs = max(1, min(client_procs, streams))
    server: subprocess.Popen[bytes] | None = None
    if mode == "janus":
        import janus_anchor

        server = janus_anchor.start(work / f"janus-{streams}", work / f"janus-{streams}.log")
        port_file.write_text("0")
    elif mode == "direct":  # no server: each client peer sends to a second one beside it
        port_file.write_text("0")
    else:
        server = subprocess.Popen([*me, "--serve", mode, "--port-file", str(port_file),
                                   "--record-dir", str(record_dir), "--clients", str(procs),
                                   "--busy", str(busy)])
    clients: list[subprocess.Popen[str]] = []
    server_hung = False
    try:
        while not port_file.exists() or not port_file.read_text():
            if server is not None and server.poll() is not None:
                raise RuntimeError("the server process died")
            time.sleep(0.05)
        shares = [streams // procs + (i < streams % procs) for i in range(procs)]
        for i, share in enumerate(shares):
            clients.append(subprocess.Popen(
                [*niced, *me, "--client", str(share), "--port", port_file.read_text(),
                 "--clip", str(clip), "--prefix", str(i),
                 *(["--audio"] if mode == "forward+audio" else []),
                 *(["--direct"] if mode == "direct" else [])],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True))
        for proc in clients:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if line.strip() != "READY":
                raise RuntimeError(f"a client did not get ready: {line!r}")
        niceness = [os.getpriority(os.PRIO_PROCESS, proc.pid) for proc in clients]
        marking = mode.startswith("forward")  # the server marks the delay window
        if marking and server is not None:
            server.send_signal(signal.SIGUSR1)
        no_server = (0.0, 0.0)
        (own0, kids0), t0 = _cpu_seconds(server.pid) if server else no_server, time.perf_counter()
        time.sleep(window)
        (own1, kids1), t1 = _cpu_seconds(server.pid) if server else no_server, time.perf_counter()
        if marking and server is not None:
            server.send_signal(signal.SIGUSR1)
        rss = _rss_mb(server.pid) if server else 0.0
        for proc in clients:
            assert proc.stdin is not None
            proc.stdin.write("STOP\n")
            proc.stdin.flush()
        parts = []
        for proc in clients:
            assert proc.stdout is not None
            parts.append(json.loads(proc.stdout.readline()))
            proc.wait(60)
        if server is not None:
            if mode == "janus":
                server.terminate()
            try:
                server.wait(60)
            except subprocess.TimeoutExpired:  # killed below; the run is void, said at the end
                server_hung = True
                print(f"# {mode} N={streams}: the server had not exited 60 s after its "
                      "clients, so it was killed", file=sys.stderr, flush=True)
    finally:
        for process in (server, *clients):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()
    fps = [x for part in parts for x in part["fps"]]
    latencies = sorted(x for part in parts for x in part["latencies"])
    firsts = sorted(x for part in parts for x in part["firsts"])
    answers = sorted(x for part in parts for x in part["answers"])
    delays = (json.loads((record_dir / "delay.json").read_text())
              if (record_dir / "delay.json").exists() else None)
    cpu_percent = 100 * (own1 - own0 + kids1 - kids0) / (t1 - t0)
    ffmpeg_percent = 100 * (kids1 - kids0) / (t1 - t0)
    return {"mode": mode, "streams": streams, "cpu_total": cpu_percent,
            "cpu_ffmpeg": ffmpeg_percent,
            "cpu_per_stream": cpu_percent / streams, "rss_mb": rss,
            "fps_min": min(fps), "fps_median": statistics.median(fps),
            "latency_p50": _percentile(latencies, 50), "latency_p99": _percentile(latencies, 99),
            "first_p50": _percentile(firsts, 50), "first_max": firsts[-1] if firsts else None,
            "answer_p50": _percentile(answers, 50), "connected": len(firsts),
            "server_delay": delays, "server_hung": server_hung, "client_nice": niceness}


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.1f}"


def print_table(results: list[dict[str, Any]]) -> None:
    header: tuple[str, ...] = (
        "mode", "N", "connected", "CPU %/stream", "CPU % total", "of it ffmpeg", "fps min",
        "fps med", "RTT p50 ms", "RTT p99 ms", "answer p50 ms", "first p50 ms", "first max ms",
        "RSS MB", "added p50/p99 ms", "held p50/p99 ms", "shed %")
    several = len({r.get("round", 0) for r in results}) > 1
    if several:
        header = (*header, "round")
    rows = [header]
    for r in results:
        added, held, shed = "-", "-", "-"
        if r.get("server_delay"):
            d = r["server_delay"]
            q = d["percentiles"] or {}
            added = f"{q.get('p50', '-')}/{q.get('p99', '-')}"
            h = d.get("held") or {}
            held = f"{h.get('p50', '-')}/{h.get('p99', '-')}"
            shed = f"{100 * d['shed'] / max(1, d['shed'] + d['forwarded']):.1f}"
        rows.append((r["mode"], str(r["streams"]), str(r["connected"]),
                     f"{r['cpu_per_stream']:.2f}",
                     f"{r['cpu_total']:.1f}", f"{r['cpu_ffmpeg']:.1f}", f"{r['fps_min']:.1f}",
                     f"{r['fps_median']:.1f}",
                     _ms(r["latency_p50"]), _ms(r["latency_p99"]), _ms(r["answer_p50"]),
                     _ms(r["first_p50"]),
                     _ms(r["first_max"]), f"{r['rss_mb']:.0f}", added, held, shed,
                     *([str(r.get("round", 0) + 1)] if several else [])))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for i, row in enumerate(rows):
        print("| " + " | ".join(cell.rjust(w) for cell, w in zip(row, widths, strict=True)) + " |")
        if i == 0:
            print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    relay = {r["streams"]: r for r in results if r["mode"] == "relay"}
    forward = {r["streams"]: r for r in results if r["mode"] == "forward"}
    recording = {r["streams"]: r for r in results if r["mode"] == "forward+rec"}
    audio = {r["streams"]: r for r in results if r["mode"] == "forward+audio"}
    if relay and forward:
        base = relay[min(relay)]
        best = forward[max(forward)]
        print(f"\nrelay CPU/stream at N={base['streams']} / forward CPU/stream at "
              f"N={best['streams']}: {base['cpu_per_stream'] / best['cpu_per_stream']:.1f}x")
        for n in sorted(set(relay) & set(forward)):
            print(f"relay / forward CPU per stream at equal N={n}: "
                  f"{relay[n]['cpu_per_stream'] / forward[n]['cpu_per_stream']:.1f}x")
    janus = {r["streams"]: r for r in results if r["mode"] == "janus"}
    usual = {r["streams"]: r for r in results if r["mode"] == "forward-aiortc"}
    for other_name, other in (("janus", janus), ("forward-aiortc", usual)):
        if several:
            _print_round_ratios(results, other_name)
            continue
        for n in sorted(set(forward) & set(other)):
            mine, theirs = forward[n], other[n]
            note = ("" if abs(mine["fps_median"] - theirs["fps_median"]) < 1 else
                    f" (not comparable: median fps {mine['fps_median']:.1f} against "
                    f"{theirs['fps_median']:.1f}, past a knee)")
            print(f"forward / {other_name} CPU per stream at N={n}: "
                  f"{mine['cpu_per_stream']:.2f} / {theirs['cpu_per_stream']:.2f} = "
                  f"x{mine['cpu_per_stream'] / theirs['cpu_per_stream']:.2f}{note}")
    direct = {r["streams"]: r for r in results if r["mode"] == "direct"}
    for name, rows_by_n in (("forward", forward), ("janus", janus)):
        for n in sorted(set(rows_by_n) & set(direct)):
            rtt, base = rows_by_n[n]["latency_p50"], direct[n]["latency_p50"]
            if rtt is not None and base is not None:
                print(f"{name} at N={n}: round trip p50 {_ms(rtt)} ms against "
                      f"{_ms(base)} ms client to client, no server: the server's share "
                      f"{_ms(rtt - base)} ms")
    for name, rows_by_n in (("forward", forward), ("janus", janus)):
        if len(rows_by_n) > 1:
            knee = next((n for n in sorted(rows_by_n) if rows_by_n[n]["fps_median"] < 29), None)
            print(f"{name}: capacity knee (median fps < 29) "
                  + (f"at N={knee}" if knee else f"beyond N={max(rows_by_n)}"))
    for n in sorted(set(forward) & set(recording)):
        added = recording[n]["cpu_total"] / forward[n]["cpu_total"] - 1
        print(f"recording adds at N={n}: {100 * added:+.0f}% server CPU "
              f"(ffmpeg processes: {recording[n]['cpu_ffmpeg']:.1f}% of a core)")
    for n in sorted(set(forward) & set(audio)):
        ratio = audio[n]["cpu_per_stream"] / forward[n]["cpu_per_stream"]
        print(f"audio at N={n}: {audio[n]['cpu_per_stream']:.2f} %/stream against "
              f"{forward[n]['cpu_per_stream']:.2f} video only: x{ratio:.2f} "
              f"({100 * (ratio - 1):+.0f}%)")


def _print_round_ratios(results: list[dict[str, Any]], other: str) -> None:
    """Each round's forward / ``other`` CPU per stream at each N, and their median."""
    rows = {(r.get("round", 0), r["mode"], r["streams"]): r for r in results}
    ratios: dict[int, list[float]] = {}
    past_knee: set[int] = set()
    for (round_, mode, n), mine in sorted(rows.items()):
        theirs = rows.get((round_, other, n))
        if mode != "forward" or theirs is None:
            continue
        ratios.setdefault(n, []).append(mine["cpu_per_stream"] / theirs["cpu_per_stream"])
        if abs(mine["fps_median"] - theirs["fps_median"]) >= 1:
            past_knee.add(n)
    for n, values in sorted(ratios.items()):
        note = " (not comparable in some rounds: past a knee)" if n in past_knee else ""
        print(f"forward / {other} CPU per stream at N={n}, {len(values)} rounds: "
              + ", ".join(f"x{v:.2f}" for v in values)
              + f"; median x{statistics.median(values):.2f}{note}")


def with_tone(clip: Path, path: Path) -> Path:
    """The same video with a 440 Hz tone as Opus (32 kb/s, 20 ms packets) next to it."""
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(clip), "-f", "lavfi", "-i",
                    "sine=f=440:sample_rate=48000", "-shortest", "-c:v", "copy", "-c:a",
                    "libopus", "-b:a", "32k", "-frame_duration", "20", str(path)], check=True)
    return path


def jobs(modes: list[str], streams: str, relay_streams: str, direct_streams: str,
         rounds: int) -> list[tuple[int, str, int]]:
    """(round, mode, N) in the order to run them: one round mode by mode; several N by N, the
    modes side by side in an order reversed every other round."""
    counts = {mode: [int(n) for n in {"relay": relay_streams, "direct": direct_streams}.get(
        mode, streams).split(",") if n] for mode in modes}
    if rounds == 1:
        return [(0, mode, n) for mode in modes for n in counts[mode]]
    every_n = sorted({n for ns in counts.values() for n in ns})
    return [(r, mode, n) for r in range(rounds) for n in every_n
            for mode in (modes if r % 2 == 0 else modes[::-1]) if n in counts[mode]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--streams", default="1,4,16,32", help="comma-separated N values")
    parser.add_argument("--relay-streams", default="1,4", help="N values for the relay")
    parser.add_argument("--direct-streams", default="1",
                        help="N values for the direct client-to-client baseline")
    parser.add_argument("--modes", default="forward,forward+rec,relay")
    parser.add_argument("--seconds", type=float, default=10.0, help="steady measuring window")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--rounds", type=int, default=1,
                        help="run every mode and N this many times, the modes side by side "
                             "for each N in an order reversed every other round")
    parser.add_argument("--client-procs", type=int, default=2,
                        help="client processes the N peers are split over")
    parser.add_argument("--client-nice", type=int, default=0,
                        help="run the client processes at this niceness (10: the server, or "
                             "Janus, gets the cores first, as if the browsers were elsewhere)")
    parser.add_argument("--busy", type=float, default=0.0,
                        help="echo-widget's server loop spins this share of every 10 ms "
                             "(0.7: a kernel busy with other work; its CPU then counts too)")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--port-file", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--record-dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--client", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--clip", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--prefix", default="0", help=argparse.SUPPRESS)
    parser.add_argument("--clients", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--audio", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--direct", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error(f"--rounds must be 1 or more, not {args.rounds}")
    if args.serve:
        asyncio.run(serve(args.serve, args.port_file, args.record_dir, args.clients,
                          args.busy))
        return
    if args.client:
        result = asyncio.run(client(args.port, args.client, args.clip, args.prefix, args.audio,
                                    args.direct))
        print(json.dumps(result), flush=True)
        return
    if os.environ.get("ECHO_NETNS") != "1":  # peers only on a private loopback
        os.execv(str(ROOT / "tools" / "netns-run"),
                 [str(ROOT / "tools" / "netns-run"), sys.executable, *sys.argv])
    interfaces: Any = contextlib.nullcontext()
    if "janus" in args.modes.split(","):
        import janus_anchor

        if not janus_anchor.available():
            sys.exit("the janus mode needs Debian's janus package (apt install janus)")
        interfaces = janus_anchor.veth()  # before any mode: every mode sees the same ones
    with interfaces, tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        from echo_widget.testing import make_clip

        clip = make_clip(work / "clip.webm", size="1280x720", seconds=10, gop=60,
                         bitrate="1.5M")
        clips = {"forward+audio": with_tone(clip, work / "av.webm")} if (
            "forward+audio" in args.modes.split(",")) else {}
        results = []
        for round_, mode, streams in jobs(args.modes.split(","), args.streams,
                                          args.relay_streams, args.direct_streams, args.rounds):
            run_dir = work / f"round-{round_ + 1}"  # each run's files, apart per round
            run_dir.mkdir(exist_ok=True)
            result = run_one(mode, streams, clips.get(mode, clip), args.seconds, run_dir,
                             args.client_procs, args.client_nice, args.busy)
            result["round"] = round_
            print(f"# {mode} N={streams}: {json.dumps(result)}", file=sys.stderr, flush=True)
            results.append(result)
        print(f"\nmachine: {os.cpu_count()} cores; window {args.seconds:g} s; "
              f"720p30 VP8 1.5 Mb/s per stream; {args.client_procs} client processes"
              f"{f' at niceness {args.client_nice}' if args.client_nice else ''}"
              f"{f'; echo-widget loop busy {args.busy:.0%}' if args.busy else ''}\n")
        print_table(results)
        if args.json:
            args.json.write_text(json.dumps(results, indent=1))
        short = [f"{r['mode']} N={r['streams']}: {r['connected']} connected"
                 for r in results if r["connected"] < r["streams"]]
        short += [f"{r['mode']} N={r['streams']}: the server did not exit (killed)"
                  for r in results if r["server_hung"]]
        if short:
            sys.exit("the run is void: " + "; ".join(short))


if __name__ == "__main__":
    main()
