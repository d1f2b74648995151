"""The benchmark script keeps working: a small run (N=2, a few seconds) gives sane numbers."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _echo_bench_run(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """``benchmarks/echo_bench.py`` with ``args``, its output captured."""
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / "echo_bench.py"), *args],
                          capture_output=True, text=True, timeout=timeout, check=False)


@pytest.mark.usefixtures("peer_network")
@pytest.mark.timeout(240)
def test_quick_benchmark_produces_a_sane_table(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    result = _echo_bench_run(
        "--streams", "2", "--modes", "forward,relay,janus,direct,forward-aiortc",
        "--relay-streams", "2", "--direct-streams", "2", "--seconds", "3", "--json", str(out),
        timeout=200)
    assert result.returncode == 0, result.stderr[-3000:]
    assert re.search(r"^\|\s+forward \|", result.stdout, re.MULTILINE), result.stdout
    rows = {(r["mode"], r["streams"]): r for r in json.loads(out.read_text())}
    forward, relay = rows["forward", 2], rows["relay", 2]
    assert forward["connected"] == 2
    # forwarding must stay far cheaper than decoding and re-encoding, at equal N
    assert forward["cpu_per_stream"] <= relay["cpu_per_stream"] / 3, rows
    assert "relay / forward CPU per stream at equal N=2:" in result.stdout
    # the C anchor runs in the same run, on the same clients
    janus = rows["janus", 2]
    assert janus["connected"] == 2
    assert 0 < janus["cpu_per_stream"] < 50
    assert 5 < janus["fps_min"] <= janus["fps_median"] < 40
    assert "forward / janus CPU per stream at N=2:" in result.stdout
    # the lean path's baseline: aiortc's and aioice's usual path, in the same run
    usual = rows["forward-aiortc", 2]
    assert usual["connected"] == 2
    assert 5 < usual["fps_min"] <= usual["fps_median"] < 40
    assert "forward / forward-aiortc CPU per stream at N=2:" in result.stdout
    # the namespace (this test run's, shared with later tests) is left as it was found
    interfaces = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert "echo-veth" not in interfaces, interfaces
    assert relay["connected"] == 2
    for row in (forward, relay):
        assert 0 < row["cpu_per_stream"] < 200
        assert 5 < row["fps_min"] <= row["fps_median"] < 40
        assert row["rss_mb"] > 10
        assert 0 < row["first_p50"] < 10
    assert 0 < forward["latency_p50"] <= forward["latency_p99"] < 1
    assert relay["latency_p50"] is None  # re-encoded frames can't be matched by content
    # the server's own added delay, measured inside it over the window; next to nothing is shed
    # when the machine keeps up
    delay = forward["server_delay"]
    assert delay["forwarded"] > 2 * 3 * 30, delay
    assert delay["shed"] <= delay["forwarded"] // 50, delay
    assert 0 < delay["percentiles"]["p50"] <= delay["percentiles"]["p99"] < 50, delay
    # and its share of that from the socket on, from the kernel's receive timestamps
    assert 0 < delay["held"]["p50"] <= delay["held"]["p99"] < 50, delay
    assert rows["forward-aiortc", 2]["server_delay"]["held"] is None, "no lean path, no count"
    assert relay["server_delay"] is None
    # the round trip's baseline: client to client, no server, and the server's share
    direct = rows["direct", 2]
    assert direct["connected"] == 2
    assert direct["cpu_total"] == 0
    assert 0 < direct["latency_p50"] < forward["latency_p50"], (direct, forward)
    assert "forward at N=2: round trip p50" in result.stdout


@pytest.mark.usefixtures("peer_network")
@pytest.mark.timeout(120)
def test_the_benchmark_can_load_the_servers_loop_and_lower_the_clients(tmp_path: Path) -> None:
    """--busy spins the server's loop (its CPU counts it), --client-nice lowers the client
    processes, and the one-read-per-wake-up baseline runs."""
    out = tmp_path / "results.json"
    result = _echo_bench_run(
        "--streams", "2", "--modes", "forward-1read", "--relay-streams", "", "--seconds", "2",
        "--busy", "0.5", "--client-nice", "5", "--json", str(out), timeout=100)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "2 client processes at niceness 5; echo-widget loop busy 50%" in result.stdout
    [row] = json.loads(out.read_text())
    assert row["mode"] == "forward-1read", row
    assert row["connected"] == 2, row
    assert row["client_nice"] == [5, 5], row
    assert row["cpu_total"] > 40, row  # half of every 10 ms spinning, and the echo
    assert not row["server_hung"], row
    assert 5 < row["fps_min"] <= row["fps_median"] < 40, row


def _echo_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("echo_bench", ROOT / "benchmarks" /
                                                  "echo_bench.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def test_the_benchmark_reads_cpu_time_finer_than_the_kernels_ticks() -> None:
    """The CPU of the server and of its children comes from each process's CPU-time clock in
    nanoseconds, not from /proc's 10 ms ticks (a process at 1 % over 10 s is 10 ticks)."""
    bench = _echo_bench()
    child = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        deadline = time.monotonic() + 10
        while bench._cpu_seconds(os.getpid())[1] < 0.1:
            assert time.monotonic() < deadline, "the spinning child got no CPU"
            time.sleep(0.02)
        own, children = bench._cpu_seconds(os.getpid())
        child_ticks, own_ticks = _ticks(child.pid), _ticks(os.getpid())
    finally:
        child.kill()
        child.wait()
    ticks = bench.CLOCK_TICKS
    assert abs(children - child_ticks / ticks) < 3 / ticks, (children, child_ticks)
    assert abs(own - own_ticks / ticks) < 3 / ticks, (own, own_ticks)
    for seconds in (own, children):
        assert abs(seconds * ticks - round(seconds * ticks)) > 1e-6, f"{seconds} is whole ticks"


def test_rounds_put_the_modes_side_by_side_in_alternating_order() -> None:
    jobs = _echo_bench().jobs
    assert jobs(["forward", "janus"], "1,8", "", "1", 1) == [
        (0, "forward", 1), (0, "forward", 8), (0, "janus", 1), (0, "janus", 8)]
    assert jobs(["forward", "janus", "relay"], "1,8", "1", "1", 2) == [
        (0, "forward", 1), (0, "janus", 1), (0, "relay", 1), (0, "forward", 8), (0, "janus", 8),
        (1, "relay", 1), (1, "janus", 1), (1, "forward", 1), (1, "janus", 8), (1, "forward", 8)]


def test_rounds_below_one_are_refused_with_a_clear_error() -> None:
    result = _echo_bench_run("--rounds", "0", timeout=60)
    assert result.returncode == 2, result
    assert "--rounds must be 1 or more, not 0" in result.stderr


@pytest.mark.usefixtures("peer_network")
@pytest.mark.timeout(200)
def test_rounds_print_each_rounds_ratio_to_janus_and_their_median(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    result = _echo_bench_run(
        "--streams", "1", "--modes", "forward,janus", "--relay-streams", "", "--seconds", "1",
        "--rounds", "2", "--json", str(out), timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = json.loads(out.read_text())
    assert [(r["round"], r["mode"]) for r in rows] == [
        (0, "forward"), (0, "janus"), (1, "janus"), (1, "forward")], rows
    cpu = {(r["round"], r["mode"]): r["cpu_per_stream"] for r in rows}
    ratios = [cpu[i, "forward"] / cpu[i, "janus"] for i in (0, 1)]
    line = re.search(r"^forward / janus CPU per stream at N=1, 2 rounds: x([\d.]+), x([\d.]+); "
                     r"median x([\d.]+)", result.stdout, re.MULTILINE)
    assert line, result.stdout
    assert [float(x) for x in line.groups()] == pytest.approx(
        [*ratios, sum(ratios) / 2], abs=0.006)
    assert re.search(r"\| round \|$", result.stdout, re.MULTILINE), result.stdout


async def test_the_benchmarks_clip_answers_a_keyframe_request_with_the_next_frame(
        vp8_clip: Path) -> None:
    """As a browser's encoder does: the clip's latest keyframe goes out again."""
    from echo_widget.media.vp8 import is_keyframe
    from echo_widget.testing import PacedTrack

    track = PacedTrack(vp8_clip)
    try:
        frames = [bytes(await track.recv()) for _ in range(4)]
        assert [is_keyframe(f) for f in frames] == [True, False, False, False]
        track.request_keyframe()
        again = bytes(await track.recv())
        assert again == frames[0]
        assert track.keyframes_sent_on_request == 1
        assert not is_keyframe(bytes(await track.recv())), "once"
    finally:
        track.stop()
