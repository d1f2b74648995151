"""The vision benchmark keeps working: a tiny run (N=1, 3 s per case) gives sane numbers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.usefixtures("peer_network")
@pytest.mark.timeout(150)
def test_quick_vision_benchmark_produces_sane_numbers(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "vision_bench.py"), "--seconds", "3",
         "--sessions", "1", "--decode-passes", "2", "--json", str(out)],
        capture_output=True, text=True, timeout=140, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    table = " ".join(result.stdout.split())
    assert "| transform200 | 1 | 1 |" in table, result.stdout
    data = json.loads(out.read_text())

    decode = {r["size"]: r for r in data["decode"]}
    assert set(decode) == {"640x480", "1280x720"}
    for row in decode.values():
        assert 0 < row["decode_cpu_ms"] < 50
        assert 0 < row["decode_ms_p50"] < 50
        assert 0 < row["rgb24_ms_p50"] < 50

    rows = {r["case"]: r for r in data["live"]}
    assert set(rows) == {"none", "consume50", "consume200", "transform200"}
    for row in rows.values():
        assert row["connected"] == 1, row
        assert 5 < row["fps_min"] <= row["fps_median"] < 40, row
        assert 0 < row["latency_p50_ms"] <= row["latency_p99_ms"] < 1000, row
        assert 0 < row["cpu_pct"] < 200, row
        assert 0 <= row["lag_p99_ms"] < 1000, row

    none = rows["none"]
    assert none["decoded_fps"] == 0, "nothing is decoded without a consumer"
    assert none["processed_fps"] is None

    for case, most in (("consume50", 21), ("consume200", 6)):
        row = rows[case]
        assert row["decoded_fps"] > 15, f"{case}: the consumer's frames are decoded: {row}"
        assert 1 < row["consumer_fps"] <= most, f"{case}: the consumer took frames: {row}"
    assert rows["consume200"]["skipped_per_s"] > 5, "a slow consumer skips frames"

    transform = rows["transform200"]
    assert transform["decoded_fps"] > 15, transform
    assert transform["processed_fps"] > 0, transform
    assert transform["processed_rx_fps"] > 0, "the peer receives processed video"
    assert transform["age_samples"] >= 1
    assert 0 < transform["age_p50_ms"] <= transform["age_p95_ms"] < 2000, transform
