"""Frames for Python: VP8 decode cost, and what frame consumers and a transform do to the echo.

    python benchmarks/vision_bench.py                              # full: 60 s per case, N = 1, 4
    python benchmarks/vision_bench.py --seconds 3 --sessions 1     # quick check

Part 1, decode cost (no network): 640x480 and 1280x720 30 fps VP8 clips (made at run time with
ffmpeg) decoded frame by frame with PyAV, as the widget's decoder thread does
(``av.CodecContext.create("vp8", "r")``, default options); ``to_ndarray(format="rgb24")`` is
timed separately.

Part 2, live cases, each against a fresh server process holding an ``EchoWidget`` and one
client process with N aiortc peers. Every peer sends the 640x480 clip (paced at 30 fps, looped,
not re-encoded) and offers a second, recvonly video m-line for the processed video, as the
widget's view does (the same offer in every case). Signaling goes over a loopback TCP socket as
JSON lines in the widget's protocol; everything runs in a private loopback-only network
namespace (re-executed through tools/netns-run), ``iceServers=[]``. The cases:

    none          the echo alone: nothing is decoded. Every other case is compared with it.
    consume50     ``async for frame in w.frames()``; per frame, ``to_ndarray(format="rgb24")``
                  and 50 ms of work, both in a thread (``await asyncio.to_thread(...)``)
    consume200    the same with 200 ms of work
    transform200  ``w.transform = fn``: ``to_ndarray(format="rgb24")`` and 200 ms of work in
                  the widget's worker thread; the result is VP8-encoded and sent on the second
                  track

A consumer's work runs off the kernel's loop: a consumer that blocked the loop for 200 ms per
frame would stall the echo (which that loop carries) for 200 ms per frame by definition, so
that is not a case worth measuring. ``frames()`` follows the current (latest) session only,
so with N sessions one of them is decoded; the transform runs on every session.

Measured per case over the same window: the server's CPU (the whole process: loop, decoder,
transform and executor threads), echo fps and echo latency per peer (client send -> echoed
frame received, matched by content hash), the server loop's lag (a task that sleeps 10 ms and
records how late it wakes; the client's loop is watched the same way), frames decoded and
skipped per second, frames the consumer took, and, sampled once a second from each session's
statistics (what ``w.stats`` shows for the latest session), ``processed_fps`` and
``processed_age_ms``; the processed frames the peers receive are counted too. Ratios to the
``none`` case of the same N are printed next to the absolute numbers: shared machines swing
2x from day to day, ratios within one run much less.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CASES = ("none", "consume50", "consume200", "transform200")
WORK_SECONDS = {"consume50": 0.05, "consume200": 0.2, "transform200": 0.2}
WARMUP = 2.5
"""Seconds between starting a case's consumer and measuring: the decoder starts at the next
keyframe of the clip (one a second), the transform's encoder starts with its first result."""
LAG_TICK = 0.01
SIZES = ("640x480", "1280x720")
BITRATES = {"640x480": "1M", "1280x720": "1.5M"}
AGE_TARGET_MS = 300.0
GROWTH_TOLERANCE_MS = 33.0
"""One frame interval: growth below it is called none."""


def _sibling(name: str) -> Any:
    """A module of benchmarks/ by path (benchmarks/ is not a package)."""
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{name}.py"))
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


echo_bench = _sibling("echo_bench")  # signaling_server, _cpu_seconds, _percentile


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _pct(values: list[float], q: float) -> float | None:
    result: float | None = echo_bench._percentile(sorted(values), q)
    return result


async def _read_command(expected: str) -> None:
    """Wait for the orchestrator's next line on stdin, which must be ``expected``."""
    line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    if line.strip() != expected:
        raise RuntimeError(f"expected {expected!r} from the orchestrator, got {line!r}")


# --------------------------------------------------------------------------- part 1


def decode_cost(clip: Path, size: str, passes: int) -> dict[str, Any]:
    """Decode every frame of ``clip`` ``passes`` times; time decoding and rgb24 conversion."""
    import av

    with av.open(str(clip)) as container:
        packets = [bytes(p) for p in container.demux(video=0) if p.size]
    decode_ms: list[float] = []
    rgb_ms: list[float] = []
    cpu_seconds = 0.0
    frames = 0
    for _ in range(passes):
        codec = av.CodecContext.create("vp8", "r")
        cpu = time.process_time()
        decoded = []
        for data in packets:
            t0 = time.perf_counter()
            out = codec.decode(av.Packet(data))
            decode_ms.append(1000 * (time.perf_counter() - t0))
            decoded.extend(out)
        decoded.extend(codec.decode(None))
        cpu_seconds += time.process_time() - cpu
        frames += len(decoded)
        for frame in decoded:
            assert isinstance(frame, av.VideoFrame)
            t0 = time.perf_counter()
            frame.to_ndarray(format="rgb24")
            rgb_ms.append(1000 * (time.perf_counter() - t0))
    cpu_ms = 1000 * cpu_seconds / max(1, frames)
    rgb_mean = statistics.fmean(rgb_ms) if rgb_ms else 0.0
    return {"size": size, "frames": len(packets), "passes": passes,
            "decode_ms_p50": _median(decode_ms), "decode_ms_mean": statistics.fmean(decode_ms),
            "decode_cpu_ms": cpu_ms, "decode_core_pct_30fps": cpu_ms * 30 / 10,
            "rgb24_ms_p50": _median(rgb_ms), "rgb24_ms_mean": rgb_mean,
            "with_rgb24_core_pct_30fps": (cpu_ms + rgb_mean) * 30 / 10}


# --------------------------------------------------------------------------- server


def _work(frame: Any, seconds: float) -> Any:
    """A consumer's per-frame work: the frame as an array, then ``seconds`` of waiting."""
    image = frame.to_ndarray(format="rgb24")
    time.sleep(seconds)
    return image


async def _consume(widget: Any, seconds: float, taken: list[int]) -> None:
    async with contextlib.aclosing(widget.frames()) as frames:
        async for frame in frames:
            await asyncio.to_thread(_work, frame, seconds)
            taken[0] += 1


def _start_case(widget: Any, case: str, taken: list[int]) -> Any:
    """Start what ``case`` runs on the kernel side; returns a function that stops it."""
    if case == "none":
        return lambda: None
    seconds = WORK_SECONDS[case]
    if case.startswith("consume"):
        task = asyncio.ensure_future(_consume(widget, seconds, taken))
        return task.cancel
    if case.startswith("transform"):
        widget.transform = lambda frame: _work(frame, seconds)

        def stop() -> None:
            widget.transform = None
        return stop
    raise ValueError(f"unknown case {case!r}")


async def _watch_lag(lags: list[float]) -> None:
    """How late a 10 ms sleep wakes, again and again: the loop's lag."""
    while True:
        started = time.perf_counter()
        await asyncio.sleep(LAG_TICK)
        lags.append(time.perf_counter() - started - LAG_TICK)


async def _sample_sessions(widget: Any, start: float, samples: list[dict[str, Any]]) -> None:
    """Each live session's processed fps and age, once a second."""
    while True:
        await asyncio.sleep(1.0)
        now = time.perf_counter() - start
        for session in widget.hub.live.values():
            stats = session.stats()
            samples.append({"t": now, "session": session.id, "fps": stats.processed_fps,
                            "age_ms": stats.processed_age_ms})


async def serve(case: str, clients: int) -> None:
    """Echo every session offered; run ``case`` between START and STOP and report on it."""
    from echo_widget import EchoWidget  # imported before any offer, as in a notebook

    widget = EchoWidget(ice_servers=[], max_sessions=64)
    server, widget.send, finished = await echo_bench.signaling_server(widget.hub.deliver)
    print(f"PORT {server.sockets[0].getsockname()[1]}", flush=True)
    lags: list[float] = []
    watching = asyncio.ensure_future(_watch_lag(lags))
    await _read_command("START")
    taken = [0]
    stop_case = _start_case(widget, case, taken)
    await asyncio.sleep(WARMUP)
    lags.clear()
    taken[0] = 0
    samples: list[dict[str, Any]] = []
    start = time.perf_counter()
    before = widget.hub.snapshot()
    sampling = asyncio.ensure_future(_sample_sessions(widget, start, samples))
    print("STARTED", flush=True)
    await _read_command("STOP")
    elapsed = time.perf_counter() - start
    after = widget.hub.snapshot()
    consumed = taken[0]
    for task in (watching, sampling):
        task.cancel()
    stop_case()
    lags.sort()
    print(json.dumps({
        "elapsed": elapsed, "sessions": len(widget.hub.live),
        "lag_p50_ms": 1000 * (_pct(lags, 50) or 0.0), "lag_p99_ms": 1000 * (_pct(lags, 99) or 0.0),
        "lag_max_ms": 1000 * (lags[-1] if lags else 0.0),
        "decoded_fps": (after["frames_decoded"] - before["frames_decoded"]) / elapsed,
        "skipped_per_s": (after["frames_skipped"] - before["frames_skipped"]) / elapsed,
        "consumer_fps": consumed / elapsed if case.startswith("consume") else None,
        "samples": samples}), flush=True)
    for _ in range(clients):
        await finished.acquire()
    await widget.aclose()
    server.close()


# --------------------------------------------------------------------------- client


async def client(port: int, peers: int, clip: Path) -> dict[str, Any]:
    """N peers with a processed m-line: connect, wait until all echo, measure from GO to STOP."""
    writer, answers, reading = await echo_bench.open_signaling(port)

    group = [echo_bench.BenchPeer(f"vision-{i}", clip, answers, writer, processed=True)
             for i in range(peers)]
    lags: list[float] = []
    watching = asyncio.ensure_future(_watch_lag(lags))
    await asyncio.gather(*(p.connect() for p in group))
    deadline = time.perf_counter() + 30
    while any(p.first_frame is None for p in group) and time.perf_counter() < deadline:
        await asyncio.sleep(0.05)
    await asyncio.sleep(1)  # settle
    print("READY", flush=True)
    await _read_command("GO")
    start = time.perf_counter()
    lags.clear()
    marks = [(len(p.frames), len(p.latencies), len(p.processed_frames)) for p in group]
    await _read_command("STOP")
    elapsed = time.perf_counter() - start
    watching.cancel()
    lags.sort()
    pairs = list(zip(group, marks, strict=True))
    result = {
        "fps": [(len(p.frames) - m[0]) / elapsed for p, m in pairs],
        "latencies": [x for p, m in pairs for x in p.latencies[m[1]:]],
        "processed_fps": [(len(p.processed_frames) - m[2]) / elapsed for p, m in pairs],
        "connected": sum(p.first_frame is not None for p in group),
        "lag_p99_ms": 1000 * (_pct(lags, 99) or 0.0)}
    await echo_bench.close_peers(group, writer, reading)
    return result


# --------------------------------------------------------------------------- orchestrator


def _expect(proc: subprocess.Popen[str], word: str) -> str:
    """The next line of ``proc`` that starts with ``word`` (other output is passed on)."""
    assert proc.stdout is not None
    while line := proc.stdout.readline():
        if line.startswith(word):
            return line[len(word):].strip()
        sys.stderr.write(line)
    raise RuntimeError(f"process {proc.args[2:4]} ended before saying {word!r} "
                       f"(exit {proc.wait()})")


def _expect_json(proc: subprocess.Popen[str]) -> dict[str, Any]:
    """The next JSON object ``proc`` prints on a line of its own."""
    result: dict[str, Any] = json.loads("{" + _expect(proc, "{"))
    return result


def _say(proc: subprocess.Popen[str], line: str) -> None:
    assert proc.stdin is not None
    proc.stdin.write(line + "\n")
    proc.stdin.flush()


def run_case(case: str, peers: int, clip: Path, window: float) -> dict[str, Any]:
    me = [sys.executable, __file__]
    pipes: dict[str, Any] = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE, "text": True}
    server = subprocess.Popen([*me, "--serve", case], **pipes)
    processes = [server]
    try:
        port = _expect(server, "PORT ")
        client_proc = subprocess.Popen(
            [*me, "--client", str(peers), "--port", port, "--clip", str(clip)], **pipes)
        processes.append(client_proc)
        _expect(client_proc, "READY")
        _say(server, "START")
        _expect(server, "STARTED")
        _say(client_proc, "GO")
        own0, kids0 = echo_bench._cpu_seconds(server.pid)
        t0 = time.perf_counter()
        time.sleep(window)
        own1, kids1 = echo_bench._cpu_seconds(server.pid)
        t1 = time.perf_counter()
        _say(server, "STOP")
        kernel = _expect_json(server)
        _say(client_proc, "STOP")
        peer = _expect_json(client_proc)
        client_proc.wait(60)
        server.wait(60)
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    return summarize(case, peers, kernel, peer, 100 * (own1 - own0 + kids1 - kids0) / (t1 - t0))


def summarize(case: str, peers: int, kernel: dict[str, Any], peer: dict[str, Any],
              cpu: float) -> dict[str, Any]:
    latencies = sorted(peer["latencies"])
    fps = peer["fps"] or [0.0]
    transform = case.startswith("transform")
    ages = [(s["t"], s["age_ms"]) for s in kernel["samples"] if s["age_ms"] is not None]
    span = kernel["elapsed"]
    window = min(10.0, max(1.0, span / 3))
    first = last = None
    if ages:  # the first and the last `window` seconds of samples (one a second)
        first = _median([a for t, a in ages if t < ages[0][0] + window])
        last = _median([a for t, a in ages if t > ages[-1][0] - window])
    values = sorted(a for _, a in ages)
    return {
        "case": case, "sessions": peers, "connected": peer["connected"], "cpu_pct": cpu,
        "fps_min": min(fps), "fps_median": statistics.median(fps),
        "latency_p50_ms": None if not latencies else 1000 * (_pct(latencies, 50) or 0.0),
        "latency_p99_ms": None if not latencies else 1000 * (_pct(latencies, 99) or 0.0),
        "lag_p50_ms": kernel["lag_p50_ms"], "lag_p99_ms": kernel["lag_p99_ms"],
        "lag_max_ms": kernel["lag_max_ms"], "client_lag_p99_ms": peer["lag_p99_ms"],
        "decoded_fps": kernel["decoded_fps"], "skipped_per_s": kernel["skipped_per_s"],
        "consumer_fps": kernel["consumer_fps"],
        "processed_fps": _median([s["fps"] for s in kernel["samples"]]) if transform else None,
        "processed_rx_fps": _median(peer["processed_fps"]) if transform else None,
        "age_p50_ms": _pct(values, 50), "age_p95_ms": _pct(values, 95),
        "age_first_ms": first, "age_last_ms": last,
        "age_growth_ms": None if first is None or last is None else last - first,
        "age_window_s": window, "age_samples": len(values), "seconds": span}


# --------------------------------------------------------------------------- printing


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _ratio(value: float | None, base: float | None) -> str:
    if value is None or base is None or base <= 0:
        return ""
    return f" ({value / base:.2f}x)"


def _markdown(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for i, row in enumerate(rows):
        print("| " + " | ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) + " |")
        if i == 0:
            print("|" + "|".join("-" * (w + 2) for w in widths) + "|")


def print_decode(results: list[dict[str, Any]]) -> None:
    rows = [("size", "frames x passes", "decode ms p50", "decode ms mean", "decode CPU ms",
             "% core @30fps", "rgb24 ms p50", "rgb24 ms mean", "decode+rgb24 % core @30fps")]
    for r in results:
        rows.append((r["size"], f"{r['frames']} x {r['passes']}", _fmt(r["decode_ms_p50"], 2),
                     _fmt(r["decode_ms_mean"], 2), _fmt(r["decode_cpu_ms"], 2),
                     _fmt(r["decode_core_pct_30fps"]), _fmt(r["rgb24_ms_p50"], 2),
                     _fmt(r["rgb24_ms_mean"], 2), _fmt(r["with_rgb24_core_pct_30fps"])))
    _markdown(rows)
    by_size = {r["size"]: r for r in results}
    if len(by_size) == 2:
        small, large = (by_size[s] for s in SIZES)
        print(f"\n1280x720 / 640x480 (3.0x the pixels): decode CPU "
              f"{large['decode_cpu_ms'] / small['decode_cpu_ms']:.2f}x, rgb24 "
              f"{large['rgb24_ms_mean'] / small['rgb24_ms_mean']:.2f}x")


def print_live(results: list[dict[str, Any]]) -> None:
    base = {r["sessions"]: r for r in results if r["case"] == "none"}
    rows = [("case", "N", "connected", "CPU %", "echo fps min/med", "echo lat p50/p99 ms",
             "loop lag p99 ms", "client lag p99 ms",
             "decoded fps", "skipped/s", "consumer fps", "processed fps (rx)",
             "age p50/p95 ms", "age growth ms")]
    for r in results:
        b = base.get(r["sessions"])
        cpu_base = b["cpu_pct"] if b and r is not b else None
        lat_base = b["latency_p50_ms"] if b and r is not b else None
        lag_base = b["lag_p99_ms"] if b and r is not b else None
        processed = ("-" if r["processed_fps"] is None else
                     f"{r['processed_fps']:.1f} ({_fmt(r['processed_rx_fps'])})")
        rows.append((
            r["case"], str(r["sessions"]), str(r["connected"]),
            _fmt(r["cpu_pct"]) + _ratio(r["cpu_pct"], cpu_base),
            f"{r['fps_min']:.1f}/{r['fps_median']:.1f}",
            f"{_fmt(r['latency_p50_ms'])}/{_fmt(r['latency_p99_ms'])}"
            + _ratio(r["latency_p50_ms"], lat_base),
            _fmt(r["lag_p99_ms"]) + _ratio(r["lag_p99_ms"], lag_base),
            _fmt(r["client_lag_p99_ms"]),
            _fmt(r["decoded_fps"]), _fmt(r["skipped_per_s"]), _fmt(r["consumer_fps"]),
            processed, f"{_fmt(r['age_p50_ms'], 0)}/{_fmt(r['age_p95_ms'], 0)}",
            "-" if r["age_growth_ms"] is None else f"{r['age_growth_ms']:+.0f}"))
    _markdown(rows)
    print("\nRatios in parentheses: to the `none` case of the same N (CPU, latency p50, loop lag "
          "p99). processed fps: from the kernel's stats, (rx): received by each peer, medians.\n"
          "client lag: the client process's own loop lag; when it is high, the echo latency "
          "includes the client's delay (it shares the cores).\ndecoded fps can exceed N x 30 "
          "for a window in which decoders that had fallen behind catch up (up to 30 queued "
          "frames each).")
    for r in results:
        if r["case"].startswith("transform") and r["age_p95_ms"] is not None:
            met = "met" if r["age_p95_ms"] < AGE_TARGET_MS else "NOT met"
            growth = r["age_growth_ms"]
            verdict = ("-" if growth is None else
                       "GROWS" if growth > GROWTH_TOLERANCE_MS else
                       "shrinks" if growth < -GROWTH_TOLERANCE_MS else "none")
            print(f"{r['case']} N={r['sessions']}: age p95 {r['age_p95_ms']:.0f} ms (target < "
                  f"{AGE_TARGET_MS:.0f}: {met}); growth over {r['seconds']:.0f} s "
                  f"(median of the last {r['age_window_s']:.0f} s minus the first's): "
                  f"{_fmt(growth, 0)} ms ({verdict}, tolerance {GROWTH_TOLERANCE_MS:.0f} ms)")
    by_case: dict[str, dict[int, dict[str, Any]]] = {}
    for r in results:
        by_case.setdefault(r["case"], {})[r["sessions"]] = r
    for case, rows_by_n in by_case.items():
        if len(rows_by_n) > 1:
            low, high = min(rows_by_n), max(rows_by_n)
            print(f"{case}: CPU at N={high} / N={low}: "
                  f"{rows_by_n[high]['cpu_pct'] / rows_by_n[low]['cpu_pct']:.2f}x")


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0,
                        help="measuring window per live case")
    parser.add_argument("--sessions", default="1,4", help="comma-separated N values")
    parser.add_argument("--cases", default=",".join(CASES), help="comma-separated live cases")
    parser.add_argument("--decode-passes", type=int, default=5,
                        help="times each decode-cost clip is decoded")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--serve", choices=CASES, help=argparse.SUPPRESS)
    parser.add_argument("--clients", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--client", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--clip", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(args.serve, args.clients))
        return
    if args.client:
        result = asyncio.run(client(args.port, args.client, args.clip))
        print(json.dumps(result), flush=True)
        return
    cases = args.cases.split(",")
    unknown = set(cases) - set(CASES)
    if unknown:
        parser.error(f"unknown cases {sorted(unknown)}; known: {', '.join(CASES)}")
    if os.environ.get("ECHO_NETNS") != "1":  # peers only on a private loopback
        os.execv(str(ROOT / "tools" / "netns-run"),
                 [str(ROOT / "tools" / "netns-run"), sys.executable, *sys.argv])
    from echo_widget.testing import make_clip

    with tempfile.TemporaryDirectory() as tmp:
        clips = {size: make_clip(Path(tmp) / f"{size}.webm", size=size, seconds=5, gop=30,
                                 bitrate=BITRATES[size]) for size in SIZES}
        decode = [decode_cost(clips[size], size, args.decode_passes) for size in SIZES]
        live = []
        for n in map(int, args.sessions.split(",")):
            for case in cases:
                result = run_case(case, n, clips["640x480"], args.seconds)
                print(f"# {case} N={n}: {json.dumps(result)}", file=sys.stderr, flush=True)
                live.append(result)
    print(f"\nmachine: {os.cpu_count()} cores; PyAV VP8 decoding, default codec options\n")
    print_decode(decode)
    print(f"\nlive: window {args.seconds:g} s per case after {WARMUP:g} s of warm-up; "
          "640x480 30 fps VP8 1 Mb/s per session; one client process\n")
    print_live(live)
    if args.json:
        args.json.write_text(json.dumps({"decode": decode, "live": live}, indent=1))
    short = [r for r in live if r["connected"] < r["sessions"]]
    for r in short:
        print(f"connected {r['connected']}/{r['sessions']} in {r['case']}", file=sys.stderr)
    if short:
        sys.exit(1)


if __name__ == "__main__":
    main()
