"""EchoWidget: the anywidget that shows the webcam and its echo from the kernel.

The widget owns its traits and routes the browser's signaling messages to
sessions (one per view); it keeps the running totals every session adds to
and publishes them as ``stats`` about once a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
import logging
import os
import time
from collections import deque
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anywidget
import traitlets
from aiortc import RTCIceServer

from . import protocol
from .media import MediaCounters
from .recorder import RecorderError
from .session import EchoSession, SessionConfig

if TYPE_CHECKING:
    from matplotlib.figure import Figure

logger = logging.getLogger(__name__)

ICE_SERVERS_ENV = "ECHO_WIDGET_ICE_SERVERS"
ICE_POLICY_ENV = "ECHO_WIDGET_ICE_TRANSPORT_POLICY"
STATS_INTERVAL = 1.0
STATS_HISTORY_LENGTH = 3600
"""Samples kept in ``stats_history``: an hour at one a second."""
DEFAULT_MAX_SESSIONS = 8
DEFAULT_VIDEO: dict[str, Any] = {"width": 640, "height": 480, "frameRate": 30}
VIDEO_KEYS = {"width", "height", "frameRate", "deviceId", "facingMode"}
VIEW_TIMEOUT_MESSAGE = (
    "The widget was displayed, but no view of it started in the browser within {timeout:g} s: "
    "its JavaScript did not load or run. Reload the page; make sure the Jupyter server's "
    "environment has anywidget (`pip install anywidget`, then restart Jupyter) and that the "
    "front end supports widgets (JupyterLab 4, Notebook 7, VS Code); the browser console "
    "(F12) shows the error."
)


def _static_file(name: str) -> Path:
    """The widget's JS/CSS: inside the installed package, or js/ in a source checkout."""
    packaged = Path(str(resources.files("echo_widget"))) / "static" / name
    if packaged.exists():
        return packaged
    return Path(__file__).resolve().parent.parent / "js" / name


def ice_servers_from_env() -> list[dict[str, Any]]:
    """The RTCIceServer list in ``$ECHO_WIDGET_ICE_SERVERS`` (JSON), or ``[]``."""
    raw = os.environ.get(ICE_SERVERS_ENV, "").strip()
    if not raw:
        return []
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{ICE_SERVERS_ENV} is not valid JSON: {exc}") from exc
    return check_ice_servers(value)


def check_ice_servers(value: object) -> list[dict[str, Any]]:
    """Check a list of RTCIceServer dicts: ``{"urls": str | [str], "username"?, "credential"?}``."""
    if not isinstance(value, list):
        raise ValueError("ice_servers must be a list of {'urls': ..., 'username': ..., "
                         "'credential': ...} dicts")
    for server in value:
        urls = server.get("urls") if isinstance(server, dict) else None
        if isinstance(urls, str):
            urls = [urls]
        if not urls or not isinstance(urls, list) or not all(
                isinstance(u, str) and u.split(":", 1)[0] in ("stun", "turn", "turns")
                for u in urls):
            raise ValueError(f"ice server {server!r} needs 'urls': a stun:, turn: or turns: URL "
                             "or a list of them")
        assert isinstance(server, dict)
        extra = set(server) - {"urls", "username", "credential", "credentialType"}
        if extra:
            raise ValueError(f"ice server {server!r} has unknown keys {sorted(extra)}")
    return list(value)


def check_video(value: object) -> dict[str, Any]:
    """Check camera constraints: ``{"width", "height", "frameRate", "deviceId", "facingMode"}``."""
    if not isinstance(value, dict):
        raise ValueError("video must be a dict like {'width': 1280, 'height': 720, "
                         "'frameRate': 30}")
    unknown = set(value) - VIDEO_KEYS
    if unknown:
        raise ValueError(f"video has unknown keys {sorted(unknown)}; use {sorted(VIDEO_KEYS)}")
    for key in ("width", "height", "frameRate"):
        number = value.get(key)
        if number is not None and (isinstance(number, bool)
                                   or not isinstance(number, (int, float))
                                   or not 0 < number <= 8192):
            raise ValueError(f"video[{key!r}] must be a positive number, not {number!r}")
    for key in ("deviceId", "facingMode"):
        if value.get(key) is not None and not isinstance(value[key], str):
            raise ValueError(f"video[{key!r}] must be a string")
    return dict(value)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _urls(server: dict[str, Any]) -> list[str]:
    urls = server.get("urls", [])
    return [urls] if isinstance(urls, str) else list(urls)


def _to_rtc(servers: list[dict[str, Any]]) -> list[RTCIceServer]:
    return [RTCIceServer(urls=s["urls"], username=s.get("username"),
                         credential=s.get("credential")) for s in servers]


class EchoWidget(anywidget.AnyWidget):
    """Your webcam, echoed back by the kernel over WebRTC without re-encoding, and recorded.

    Display it (last expression of a cell) to start: each view asks for the
    camera and opens its own peer connection to the kernel.
    """

    _esm = _static_file("widget.js")
    _css = _static_file("widget.css")

    status = traitlets.Unicode(
        "idle", help="State of the most recent session: idle, connecting, connected, closed "
        "or failed.").tag(sync=True)
    error = traitlets.Unicode(
        "", help="The latest problem, as a sentence saying what to do; empty when none."
    ).tag(sync=True)
    stats = traitlets.Dict(
        help="Totals over all sessions (frames_received, frames_forwarded, frames_recorded, "
        "keyframes, plis_sent, ...) and current rates (fps, kbps)."
    ).tag(sync=True)
    recordings = traitlets.List(
        traitlets.Unicode(), help="Absolute paths of finalized recordings.").tag(sync=True)
    ice_servers = traitlets.List(
        traitlets.Dict(), help="RTCIceServer dicts used by the browser and the kernel."
    ).tag(sync=True)
    ice_transport_policy = traitlets.Enum(
        ["all", "relay"], "all", help="'relay' forces both peers through the TURN server."
    ).tag(sync=True)
    video = traitlets.Dict(
        help="Camera constraints for getUserMedia: width, height, frameRate, deviceId, "
        "facingMode. Changing it (here or with the view's pickers) switches every view's camera."
    ).tag(sync=True)

    view_timeout = 15.0
    """Seconds after display within which a view must start before ``error`` says so."""

    def __init__(
        self,
        *,
        record_to: str | os.PathLike[str] | None = None,
        ice_servers: list[dict[str, Any]] | None = None,
        max_sessions: int = DEFAULT_MAX_SESSIONS,
        ice_transport_policy: str | None = None,
        video: dict[str, Any] | None = None,
        connect_timeout: float = 30.0,
        **kwargs: Any,
    ) -> None:
        """See the class docstring.

        ``max_sessions`` caps live sessions (views) at once; ``video`` sets the
        camera constraints (e.g. ``{"width": 1280, "height": 720, "frameRate": 30}``);
        ``connect_timeout`` is how long a view may take to connect before it fails.
        """
        if max_sessions < 1:
            raise ValueError("max_sessions must be at least 1")
        if connect_timeout <= 0:
            raise ValueError("connect_timeout must be positive")
        servers = ice_servers_from_env() if ice_servers is None else check_ice_servers(
            ice_servers)
        policy = ice_transport_policy or os.environ.get(ICE_POLICY_ENV, "all")
        camera = DEFAULT_VIDEO if video is None else check_video(video)
        super().__init__(ice_servers=servers, ice_transport_policy=policy, video=camera,
                         **kwargs)
        if self.ice_transport_policy == "relay" and not any(
                str(u).startswith("turn") for s in self.ice_servers for u in _urls(s)):
            raise ValueError("ice_transport_policy='relay' needs a TURN server in ice_servers")
        self.record_to = record_to
        self.max_sessions = max_sessions
        self.connect_timeout = connect_timeout
        self._counters = MediaCounters()
        self._history: deque[dict[str, Any]] = deque(maxlen=STATS_HISTORY_LENGTH)
        self._started_at = time.monotonic()
        self._packets_lost_ended = 0
        """Packets lost by sessions that have ended."""
        self._views_started = 0
        self._view_check: asyncio.TimerHandle | None = None
        self._stopping: set[asyncio.Task[Any]] = set()
        self._sessions: dict[str, EchoSession] = {}
        """Live sessions by id."""
        self._unfinished: set[EchoSession] = set()
        """Sessions whose teardown (recording finalized) is not done yet, live ones included."""
        self._ended_ids: dict[str, None] = {}
        self._latest: EchoSession | None = None
        self._stats_task: asyncio.Task[None] | None = None
        self._close_task: asyncio.Task[None] | None = None
        self._last_sample: tuple[float, int, int] | None = None
        self._loop: asyncio.AbstractEventLoop | None = _running_loop()
        """The loop every session runs on: the kernel's, where the widget was made."""
        self.stats = self._stats_snapshot(fps=0.0, kbps=0.0)
        self.on_msg(self._on_custom_msg)

    @traitlets.validate("ice_servers")
    def _validate_ice_servers(self, proposal: Any) -> list[dict[str, Any]]:
        return check_ice_servers(proposal["value"])

    @traitlets.validate("video")
    def _validate_video(self, proposal: Any) -> dict[str, Any]:
        return check_video(proposal["value"])

    @property
    def record_to(self) -> Path | None:
        """Where the next session records (absolute; ``stem-N.ext`` if taken), or None."""
        return self._record_to

    @record_to.setter
    def record_to(self, value: str | os.PathLike[str] | None) -> None:
        self._record_to = None if value is None else Path(value).absolute()

    # -- display --------------------------------------------------------------

    def _repr_mimebundle_(self, **kwargs: Any) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """The widget view, with a text and HTML fallback for front ends without widgets.

        Displaying also starts a check that a view really starts in the browser
        (``view_timeout``), so that a widget whose JavaScript failed says so in ``error``.
        """
        bundle = super()._repr_mimebundle_(**kwargs)
        if bundle is None:
            return None
        data, metadata = bundle if isinstance(bundle, tuple) else (bundle, {})
        data = {**data, "text/plain": self._fallback_text(),
                "text/html": f"<p>{html.escape(self._fallback_text())}</p>"}
        self._expect_view()
        return data, metadata

    def _fallback_text(self) -> str:
        return (f"EchoWidget(status={self.status!r}) — this front end can't show widgets, so "
                "the webcam echo is not visible here. Open the notebook in JupyterLab 4, "
                "Jupyter Notebook 7 or VS Code (Jupyter extension) with `pip install "
                "echo-widget` (which brings anywidget) in the kernel's environment.")

    def _expect_view(self) -> None:
        loop = self._loop
        if loop is None or loop.is_closed() or self._view_check is not None:
            return
        started = self._views_started
        expected_at = loop.time() + self.view_timeout

        def check() -> None:
            self._view_check = None
            late = loop.time() - expected_at
            if late > 1.0:  # the kernel was busy: the view's hello may still be queued
                self._view_check = loop.call_later(1.0, check)
                return
            if self._views_started == started:
                self.error = VIEW_TIMEOUT_MESSAGE.format(timeout=self.view_timeout)

        self._view_check = loop.call_later(self.view_timeout, check)

    # -- signaling ------------------------------------------------------------

    def _on_custom_msg(self, _widget: object, content: object, _buffers: object) -> None:
        """Take one message from a view, on whatever thread the kernel delivers it.

        JupyterLab may deliver widget messages through a kernel subshell, a thread
        with its own event loop; they are handed to the widget's loop (the kernel's
        main loop), where all sessions live.
        """
        current = _running_loop()
        if self._loop is None:
            self._loop = current
        if self._loop is not None and current is not self._loop and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._handle, content)
        else:
            self._handle(content)

    def _handle(self, content: object) -> None:
        """Route one message from a view; never raises."""
        try:
            self._route(protocol.parse_message(content))
        except protocol.ProtocolError as exc:
            logger.warning("echo-widget: %s (message: %.200r)", exc, content)
            self.send(protocol.error(exc.session, str(exc)))
        except Exception as exc:
            logger.exception("echo-widget: could not handle %.200r", content)
            session = content.get("session") if isinstance(content, dict) else None
            self.send(protocol.error(session if isinstance(session, str) else None,
                                     f"The kernel could not handle this message: {exc!r}"))

    def _route(self, message: protocol.Message) -> None:
        session = self._sessions.get(message.session)
        if isinstance(message, protocol.Hello):
            self._views_started += 1
            if self.error.startswith(VIEW_TIMEOUT_MESSAGE[:40]):
                self.error = ""
            return
        if isinstance(message, protocol.BrowserError):
            logger.warning("echo-widget view %s: %s", message.session[:40], message.message)
            self.error = message.message
            return
        if isinstance(message, protocol.Offer):
            if message.session in self._ended_ids:
                raise protocol.ProtocolError(
                    "This session has ended; reload the view to start a new one.",
                    message.session)
            if session is not None:
                raise protocol.ProtocolError(
                    "This session already has an offer; open a new session to reconnect.",
                    message.session)
            if len(self._sessions) >= self.max_sessions:
                raise protocol.ProtocolError(
                    f"This widget already has {self.max_sessions} live sessions (views). Close "
                    "some views, or make it with EchoWidget(max_sessions=...).", message.session)
            self._start_session(message)
            return
        if session is None:
            raise protocol.ProtocolError(f"Unknown or ended session {message.session[:40]!r}.",
                                         message.session)
        if isinstance(message, protocol.Ice):
            session.add_ice_candidate(message.candidate)
        else:
            session.end("closed")

    def _start_session(self, offer: protocol.Offer) -> None:
        if _running_loop() is None:
            raise protocol.ProtocolError(
                "EchoWidget needs a running asyncio event loop (as in a Jupyter kernel).",
                offer.session)
        config = SessionConfig(ice_servers=_to_rtc(self.ice_servers), record_to=self.record_to,
                               relay_only=self.ice_transport_policy == "relay",
                               connect_timeout=self.connect_timeout)
        session = EchoSession(
            offer.session, offer.sdp, config, self._counters,
            send=self.send, on_state=self._on_session_state,
            on_error=self._on_session_error, on_recording=self._on_recording,
            on_finished=self._on_session_finished,
        )
        self._sessions[offer.session] = session
        self._unfinished.add(session)
        self._latest = session
        self.error = ""
        self.status = session.state
        if self._stats_task is None or self._stats_task.done():
            self._stats_task = asyncio.ensure_future(self._publish_stats_while_live())

    # -- session callbacks ----------------------------------------------------

    def _on_session_state(self, session: EchoSession) -> None:
        if session is self._latest:
            self.status = session.state
        if session.state in ("closed", "failed") and self._sessions.get(session.id) is session:
            del self._sessions[session.id]
            self._packets_lost_ended += session.packets_lost
            self._ended_ids[session.id] = None
            if len(self._ended_ids) > 10_000:
                del self._ended_ids[next(iter(self._ended_ids))]

    def _on_session_finished(self, session: EchoSession) -> None:
        """Forget a session that has torn down (a re-run cell's old widget keeps none)."""
        self._unfinished.discard(session)
        if session is self._latest:
            self._latest = None

    def _on_session_error(self, session: EchoSession, message: str) -> None:
        logger.warning("echo-widget session %s: %s", session.id, message)
        self.error = message
        self.send(protocol.error(session.id, message,
                                 fatal=session.state in ("closed", "failed")))

    def _on_recording(self, path: Path) -> None:
        self.recordings = [*self.recordings, str(path)]
        self._refresh_stats()

    def _refresh_stats(self) -> None:
        """Publish the counters now, keeping the current rates (e.g. a recording started)."""
        self.stats = self._stats_snapshot(fps=self.stats.get("fps", 0.0),
                                          kbps=self.stats.get("kbps", 0.0))

    # -- stats ----------------------------------------------------------------

    def _stats_snapshot(self, *, fps: float, kbps: float) -> dict[str, Any]:
        live = list(self._sessions.values())
        latest = self._latest if self._latest in live else (live[-1] if live else None)
        width, height = latest.forwarder.frame_size if latest is not None else (0, 0)
        recorders = [s.recorder for s in live if s.recorder is not None]
        return {
            **self._counters.as_dict(), "fps": round(fps, 1), "kbps": round(kbps, 1),
            "sessions": len(live), "width": width, "height": height,
            "rtt_ms": latest.rtt_ms if latest is not None else None,
            "packets_lost": self._packets_lost_ended + sum(s.packets_lost for s in live),
            "recording": len(recorders) > 0,
            "recording_bytes": sum(r.size for r in recorders),
            "recording_seconds": round(max((r.duration for r in recorders), default=0.0), 1),
        }

    @property
    def stats_history(self) -> list[dict[str, Any]]:
        """``stats`` sampled about once a second while streaming (last hour), oldest first.

        Each sample adds ``t``: seconds since the widget was made. See :meth:`plot`.
        """
        return list(self._history)

    def plot(self) -> Figure:
        """Plot fps, bitrate and round-trip time from :attr:`stats_history` (needs matplotlib).

        ``pip install "echo-widget[plot]"`` brings matplotlib.
        """
        try:
            import matplotlib.pyplot as plt
        except ImportError as exc:
            raise ImportError('w.plot() needs matplotlib: pip install "echo-widget[plot]" '
                              "(or pip install matplotlib)") from exc
        history = self.stats_history
        t = [sample["t"] for sample in history]
        figure, axes = plt.subplots(3, 1, sharex=True, figsize=(7, 5), layout="constrained")
        series = [("fps", "frames/s"), ("kbps", "kbit/s"), ("rtt_ms", "RTT (ms)")]
        for ax, (key, label) in zip(axes, series, strict=True):
            values = [sample[key] if sample.get(key) is not None else float("nan")
                      for sample in history]
            ax.plot(t, values, drawstyle="steps-post")
            ax.set_ylabel(label)
            ax.grid(alpha=0.3)
        axes[-1].set_xlabel("seconds since the widget was made")
        axes[0].set_title("EchoWidget: video from the browser, as the kernel received it")
        if not history:
            axes[1].text(0.5, 0.5, "No samples yet: display the widget, let it stream a few "
                         "seconds, then call w.plot() again.", ha="center", va="center",
                         transform=axes[1].transAxes)
            for ax in axes:
                ax.set_yticks([])
                ax.set_xticks([])
        plt.close(figure)  # returned for display, not left in pyplot's list of figures
        return figure

    # -- recording control ----------------------------------------------------

    def start_recording(self, path: str | os.PathLike[str] | None = None) -> list[str]:
        """Start recording every live session to ``path`` (default: ``record_to``).

        Returns the files reserved (``stem-N.ext`` when several sessions or a
        file exists). The recording starts at the next keyframe, requested at once.
        """
        target = Path(path).absolute() if path is not None else self.record_to
        if target is None:
            raise ValueError("start_recording() needs a path (or set record_to first)")
        live = [s for s in self._sessions.values() if s.state in ("connecting", "connected")]
        if not live:
            raise RuntimeError("No live session to record: display the widget (the last line "
                               "of a cell) and wait until it is connected.")
        started: list[str] = []
        for session in live:
            try:
                started.append(str(session.start_recording(target)))
            except RecorderError as exc:
                self.error = str(exc)
                raise
            finally:
                self._refresh_stats()
        return started

    def stop_recording(self) -> asyncio.Future[list[str]]:
        """Stop every recording in progress; ``await`` the result for the finalized paths.

        The files are finalized (and added to ``recordings``) even if it is not awaited.
        """
        tasks = [task for session in self._sessions.values()
                 if (task := session.stop_recording()) is not None]

        async def finalized() -> list[str]:
            paths = await asyncio.gather(*tasks)
            return [str(path) for path in paths if path is not None]

        future = asyncio.ensure_future(finalized())
        self._stopping.add(future)
        future.add_done_callback(self._stopping.discard)
        return future

    def _publish_stats(self) -> None:
        now = asyncio.get_running_loop().time()
        frames, octets = self._counters.frames_received, self._counters.bytes_received
        fps = kbps = 0.0
        if self._last_sample is not None:
            then, frames_then, octets_then = self._last_sample
            elapsed = now - then
            if elapsed > 0:
                fps = (frames - frames_then) / elapsed
                kbps = (octets - octets_then) * 8 / 1000 / elapsed
        self._last_sample = (now, frames, octets)
        self.stats = self._stats_snapshot(fps=fps, kbps=kbps)
        self._history.append({"t": round(time.monotonic() - self._started_at, 3),
                              **self.stats})

    async def _publish_stats_while_live(self) -> None:
        self._last_sample = None
        self._publish_stats()
        while self._sessions:
            await asyncio.sleep(STATS_INTERVAL)
            await asyncio.gather(*(session.update_transport_stats()
                                   for session in list(self._sessions.values())))
            self._publish_stats()
        self.stats = self._stats_snapshot(fps=0.0, kbps=0.0)

    # -- closing --------------------------------------------------------------

    async def aclose(self) -> None:
        """Close every session; return once every recording is finalized and ffmpeg has exited."""
        loop = self._loop
        if loop is not None and loop is not _running_loop() and loop.is_running():
            # awaited from another loop (e.g. a subshell's): close on the sessions' loop
            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self._aclose(), loop))
        else:
            await self._aclose()

    async def _aclose(self) -> None:
        if self._view_check is not None:
            self._view_check.cancel()
            self._view_check = None
        await asyncio.gather(*(session.aclose() for session in list(self._unfinished)),
                             *list(self._stopping))
        if self._stats_task is not None:
            self._stats_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._stats_task
            self._stats_task = None
        self.stats = self._stats_snapshot(fps=0.0, kbps=0.0)
        if self.status != "idle":
            self.status = "closed"

    def close(self) -> None:
        """Close the widget; its sessions are closed on the event loop (see :meth:`aclose`)."""
        loop: asyncio.AbstractEventLoop | None = getattr(self, "_loop", None)
        if loop is None:  # construction failed (bad arguments): nothing was started
            super().close()
            return
        if not loop.is_closed() and (
                self._unfinished or self._stopping or self._view_check is not None):
            if loop is _running_loop():
                self._schedule_close()
            else:
                loop.call_soon_threadsafe(self._schedule_close)
        super().close()

    def _schedule_close(self) -> None:
        if self._view_check is not None:
            self._view_check.cancel()
            self._view_check = None
        if self._close_task is None and (self._unfinished or self._stopping):
            self._close_task = asyncio.ensure_future(self._aclose())
