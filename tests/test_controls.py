"""What a notebook user drives from Python: stats, history and plot, recording control,
camera constraints, display fallback, and errors reported by the view."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest
from traitlets import TraitError

from echo_widget import EchoWidget
from echo_widget.errors import VIEW_TIMEOUT
from echo_widget.recording import RecorderError

from .conftest import EchoClient, Signaling, decode_errors, ffprobe_video, wait_until

live = pytest.mark.usefixtures("peer_network", "ffmpeg_children")


@live
async def test_live_stats_history_and_plot(vp8_clip: Path) -> None:
    widget = EchoWidget(ice_servers=[])
    client = EchoClient(Signaling(widget), vp8_clip, "s", loop=True)
    await client.connect()
    await wait_until(lambda: len(widget.stats_history) >= 4 and widget.stats["rtt_ms"], 15,
                     "four stats samples and a round-trip time")
    stats = widget.stats
    assert (stats["width"], stats["height"]) == (640, 360)  # the clip's size, from keyframes
    assert 0 < stats["rtt_ms"] < 500  # loopback: from the client's receiver reports
    assert stats["packets_lost"] == 0
    assert stats["recording"] is False
    assert stats["recording_bytes"] == 0
    assert 20 < stats["fps"] < 40
    history = widget.stats_history
    times = [sample["t"] for sample in history]
    assert times == sorted(times)
    assert 0.5 < times[-1] - times[-2] < 2.0
    assert history[-1]["frames_received"] > history[0]["frames_received"]
    assert widget.stats_history is not widget.stats_history  # a copy, safe to keep

    figure = widget.plot()
    axes = figure.get_axes()
    assert [ax.get_ylabel() for ax in axes] == ["frames/s", "kbit/s", "RTT (ms)"]
    xdata, ydata = axes[0].get_lines()[0].get_data()
    assert list(xdata) == [s["t"] for s in widget.stats_history[:len(xdata)]]
    assert max(ydata) > 20
    await client.close()
    await widget.aclose()
    assert widget.stats["fps"] == 0
    assert widget.stats["sessions"] == 0


@live
async def test_start_and_stop_recording_on_a_live_session(vp8_clip: Path, tmp_path: Path) -> None:
    widget = EchoWidget(ice_servers=[])  # no record_to: nothing recorded at first
    client = EchoClient(Signaling(widget), vp8_clip, "s", loop=True)
    with pytest.raises(RuntimeError, match="No live session"):
        widget.start_recording(tmp_path / "early.webm")
    await client.connect()
    await wait_until(lambda: widget.stats["frames_forwarded"] > 20, 10, "echo")
    assert widget.stats["frames_recorded"] == 0

    [first] = widget.start_recording(tmp_path / "take.webm")
    assert first == str(tmp_path / "take.webm")
    with pytest.raises(RecorderError, match="Already recording"):
        widget.start_recording(tmp_path / "other.webm")
    await wait_until(lambda: widget.stats["recording_seconds"] >= 1.5, 10, "1.5 s recorded")
    assert widget.stats["recording"] is True
    assert widget.stats["recording_bytes"] > 0
    echoed_before = len(client.echoed)
    assert await widget.stop_recording() == [first]
    assert widget.recordings == [first]
    assert widget.stats["recording"] is False
    probe = ffprobe_video(Path(first))
    assert int(probe["nb_read_packets"]) >= 40  # ~1.5 s at 30 fps
    assert decode_errors(Path(first)) == ""  # starts on a keyframe: decodes cleanly

    # the echo went on while the file was finalized; a second take gets its own name
    await wait_until(lambda: len(client.echoed) > echoed_before + 10, 5, "echo goes on")
    [second] = widget.start_recording(tmp_path / "take.webm")
    assert second == str(tmp_path / "take-1.webm")
    await wait_until(lambda: widget.stats["recording_seconds"] >= 0.5, 10, "second take")
    await client.close(bye=False)
    await widget.aclose()  # finalizes the take in progress
    assert widget.recordings == [first, second]
    assert decode_errors(Path(second)) == ""
    assert await widget.stop_recording() == []  # nothing left to stop


@live
async def test_record_to_can_change_between_sessions(vp8_clip: Path, tmp_path: Path) -> None:
    widget = EchoWidget(record_to=tmp_path / "a.webm", ice_servers=[])
    signaling = Signaling(widget)
    for session, name in (("s1", "a.webm"), ("s2", "b.mkv")):
        widget.record_to = tmp_path / name
        client = EchoClient(signaling, vp8_clip, session, loop=True)
        recorded_before = widget.stats.get("frames_recorded", 0)  # totals span sessions
        await client.connect()
        await wait_until(lambda b=recorded_before: widget.stats["frames_recorded"] > b + 10,
                         10, "recording")
        await client.close()
        await wait_until(lambda n=name: str(tmp_path / n) in widget.recordings, 10, "finalized")
    await widget.aclose()
    assert widget.recordings == [str(tmp_path / "a.webm"), str(tmp_path / "b.mkv")]
    widget.record_to = "relative.webm"
    assert widget.record_to == Path.cwd() / "relative.webm"


def test_video_constraints_are_checked() -> None:
    assert EchoWidget().video == {"width": 640, "height": 480, "frameRate": 30}
    widget = EchoWidget(video={"width": 1280, "height": 720, "frameRate": 30})
    assert widget.video == {"width": 1280, "height": 720, "frameRate": 30}
    widget.video = {"deviceId": "abc", "frameRate": 15}
    assert widget.video["deviceId"] == "abc"
    for bad, words in (({"width": -1}, "positive"), ({"fps": 30}, "unknown keys"),
                       ({"frameRate": "30"}, "positive"), ({"deviceId": 3}, "string"),
                       ([1280, 720], "dict")):
        with pytest.raises(ValueError, match=words):
            EchoWidget(video=bad)  # type: ignore[arg-type]
        with pytest.raises((ValueError, TraitError), match=words):
            widget.video = bad  # type: ignore[assignment]
    assert widget.video["deviceId"] == "abc"  # a rejected value leaves the old one


def test_plot_without_matplotlib_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError, match=r"echo-widget\[plot\]"):
        EchoWidget().plot()


async def test_display_has_a_fallback_and_a_view_that_never_starts_is_reported() -> None:
    widget = EchoWidget()
    widget.view_timeout = 0.3
    data, _ = widget._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in data
    for mime in ("text/plain", "text/html"):
        assert "show widgets" in data[mime]
        assert "JupyterLab 4" in data[mime]
    assert data["text/html"].startswith("<p>")  # escaped
    assert "&#x27;" in data["text/html"]
    await wait_until(lambda: widget.error != "", 5, "the view timeout")
    assert widget.error == VIEW_TIMEOUT.format(timeout=0.3)
    assert "anywidget" in widget.error
    assert "console" in widget.error

    # a view that says hello in time: no error; a late hello clears it
    Signaling(widget).deliver({"type": "hello", "session": "v1"})
    assert widget.error == ""
    widget._repr_mimebundle_()
    Signaling(widget).deliver({"type": "hello", "session": "v2"})
    await asyncio.sleep(0.6)
    assert widget.error == ""
    widget.close()


async def test_close_cancels_the_view_check() -> None:
    widget = EchoWidget()
    widget.view_timeout = 0.2
    widget._repr_mimebundle_()
    widget.close()
    await asyncio.sleep(0.4)
    assert widget.error == ""


async def test_a_problem_met_in_the_browser_is_reported_in_error() -> None:
    widget = EchoWidget()
    signaling = Signaling(widget)
    message = "Camera permission was denied. Allow camera access for this page."
    signaling.deliver({"type": "error", "session": "view-1", "message": message})
    assert widget.error == message
    assert signaling.sent == []  # nothing to reply
    assert widget.status == "idle"
    signaling.deliver({"type": "error", "session": "view-1", "message": "x" * 5000})
    assert len(widget.error) == 1000
    signaling.deliver({"type": "error", "session": "view-1"})
    assert signaling.sent[-1]["type"] == "error"
    assert "needs a 'message'" in signaling.sent[-1]["message"]


@live
async def test_a_connection_that_never_comes_up_fails_with_the_turn_hint(
        vp8_clip: Path, caplog: pytest.LogCaptureFixture) -> None:
    widget = EchoWidget(ice_servers=[], connect_timeout=1.0)
    signaling = Signaling(widget)
    client = EchoClient(signaling, vp8_clip, "s")
    await client.pc.setLocalDescription(await client.pc.createOffer())
    # the offer's candidates point nowhere: nothing answers on port 9 of 127.0.0.2
    sdp = "\r\n".join(line if not line.startswith("a=candidate") else
                      "a=candidate:1 1 udp 2130706431 127.0.0.2 9 typ host"
                      for line in client.pc.localDescription.sdp.split("\r\n"))
    loop = asyncio.get_running_loop()
    offered_at = loop.time()
    signaling.deliver({"type": "offer", "session": "s", "sdp": sdp})
    reply = await signaling.wait_for("error", "s", timeout=35)
    took = loop.time() - offered_at
    # connect_timeout (1 s), checked every 0.5 s: not aioice's own failure, which takes ~30 s
    assert 1.0 <= took < 1.0 + 1.5, f"failed after {took:.2f} s"
    assert reply["code"] == "ice-failed"
    assert reply["fatal"] is True
    assert "TURN server" in reply["message"]
    assert "ice_servers" in reply["message"]
    assert widget.status == "failed"
    assert widget.error == reply["message"]
    # the error and the kernel's log say how far ICE got: the candidate offered, checks
    # that never succeeded
    seen = reply["message"].split(" What the kernel saw: ")[1]
    assert seen.startswith("signaling stable; ICE checking, DTLS new; kernel candidates [host udp "
                           ), seen
    assert "; browser candidates [host udp 127.0.0.2:9] (complete); checks " in seen, seen
    assert re.search(r"; checks (in-progress|waiting|failed) 1\.$", seen), seen
    [logged] = [r.getMessage() for r in caplog.records if "not connected in 1 s" in r.getMessage()]
    assert logged == f"session s: not connected in 1 s: {seen.removesuffix('.')}", logged
    await client.close(bye=False)
    await widget.aclose()


def test_plot_before_any_sample_says_what_to_do() -> None:
    figure = EchoWidget().plot()
    texts = [t.get_text() for ax in figure.get_axes() for t in ax.texts]
    assert len(figure.get_axes()) == 3
    assert any("No samples yet" in t and "w.plot() again" in t for t in texts), texts
