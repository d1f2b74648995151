"""EchoWidget: the anywidget that shows the webcam and its echo from the kernel.

The widget holds the synced traits and the public methods; its sessions (one per
view) are kept by a :class:`~echo_widget.hub.SessionHub`, settings are checked by
:mod:`echo_widget.config`, statistics are kept by :mod:`echo_widget.stats`.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import logging
import os
from collections.abc import AsyncIterator, Callable
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import anywidget
import traitlets

from . import config
from .hub import SessionHub, running_loop
from .overlay import check_shapes
from .plotting import plot_history
from .protocol import MAX_SESSION_ID_LENGTH
from .stats import Stats

if TYPE_CHECKING:
    import av
    from matplotlib.figure import Figure

    from .check import CheckReport, ConnectionCheck
    from .media.transform import Transform
    from .popout import PopoutLink, PopoutServer
    from .session import SessionConfig

DEFAULT_MAX_SESSIONS = 8

logger = logging.getLogger(__name__)


def _static_file(name: str) -> Path:
    """The widget's JS/CSS: inside the installed package, or js/ in a source checkout."""
    packaged = Path(str(resources.files("echo_widget"))) / "static" / name
    if packaged.exists():
        return packaged
    return Path(__file__).resolve().parent.parent / "js" / name


class _Owner:
    """The widget as the hub's :class:`~echo_widget.hub.HubOwner` (kept off its public API)."""

    def __init__(self, widget: EchoWidget) -> None:
        self._widget = widget

    def send(self, content: dict[str, Any]) -> None:
        popouts = self._widget._popouts
        if popouts is None or not popouts.route(content):  # a pop-out page's: over its socket
            self._widget.send(content)

    def session_config(self) -> SessionConfig:
        from .session import SessionConfig

        w = self._widget
        return SessionConfig(ice_servers=config.to_rtc_ice_servers(w.ice_servers),
                             record_to=w.record_to, relay_only=w.ice_transport_policy == "relay",
                             connect_timeout=w.connect_timeout, audio=w.audio)

    def show_status(self, status: str) -> None:
        self._widget.status = status

    def show_error(self, code: str | None, message: str) -> None:
        self._widget._error_code = code
        self._widget.error = message

    def view_started(self) -> None:
        if self._widget._error_code == "view-timeout":
            self.show_error(None, "")

    def recording_finalized(self, path: Path) -> None:
        self._widget.recordings = [*self._widget.recordings, str(path)]

    def publish_stats(self, stats: Stats) -> None:
        self._widget.stats = dict(stats)


class _Pages:
    """The widget as the pop-out endpoint's :class:`~echo_widget.popout.PopoutHost`."""

    def __init__(self, widget: EchoWidget) -> None:
        self._widget = widget
        self.server: PopoutServer | None = None

    def page_message(self, content: dict[str, Any]) -> None:
        self._widget._view_message(content)

    def page_state(self) -> dict[str, Any]:
        w = self._widget
        return {"video": w.video, "stats": w.stats, "ice_servers": w.ice_servers,
                "ice_transport_policy": w.ice_transport_policy, "_processing": w._processing,
                "status": w.status, "_check": w._check, "_in_popout": True, "audio": w.audio}

    def page_set(self, name: str, value: object) -> None:
        try:
            self._widget.video = cast(dict[str, Any], value)  # validated by the trait
        except traitlets.TraitError as exc:
            raise ValueError(str(exc)) from None

    def page_assets(self) -> tuple[str, str]:
        from .popout import read_assets

        return read_assets(_static_file("widget.js"), _static_file("widget.css"))

    def popout_changed(self, url: str, pages: int) -> None:
        if self._widget._popouts is self.server:  # not a replaced server that stops late
            self._widget._popout = {"url": url, "pages": pages}

    def pages_closed(self, sessions: list[str]) -> None:
        hub = self._widget.hub
        for session in sessions:
            if session in hub.live:
                hub.handle({"type": "bye", "session": session})


def _call_on(loop: asyncio.AbstractEventLoop, call: Callable[[], object]) -> None:
    """Call now when on ``loop``, else hand the call to it (from any thread)."""
    if loop is running_loop():
        call()
    elif not loop.is_closed():
        loop.call_soon_threadsafe(call)


def _log_check_failure(task: asyncio.Task[CheckReport]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("echo-widget: the connection check failed", exc_info=task.exception())


PAGE_TRAITS = ("video", "stats", "ice_servers", "ice_transport_policy", "_processing", "status",
               "_check", "audio")
"""Traits the pop-out pages follow."""
VIEW_REQUESTS = frozenset({"popout-start", "check-start", "check-report"})
"""Messages from views handled by the widget itself, not the session hub."""


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
    audio = traitlets.Bool(
        False, help="Echo and record the microphone too (from the next session on). The "
        "echoed audio plays muted until the view's Listen control is used."
    ).tag(sync=True)
    _processing = traitlets.Bool(
        False, help="Whether a transform is set: the view shows the processed video."
    ).tag(sync=True)
    _popout = traitlets.Dict(
        {"url": "", "pages": 0}, help="The pop-out page: its URL ('' when none) and open pages."
    ).tag(sync=True)
    _check = traitlets.Dict(help="The latest connection check, for the views.").tag(sync=True)

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
        audio: bool = False,
        **kwargs: Any,
    ) -> None:
        """See the class docstring.

        ``max_sessions`` caps live sessions (views) at once; ``video`` sets the
        camera constraints (e.g. ``{"width": 1280, "height": 720, "frameRate": 30}``);
        ``connect_timeout`` is how long a view may take to connect before it fails;
        ``audio=True`` echoes and records the microphone as well (takes effect at the next
        session when changed later).
        """
        if connect_timeout <= 0:
            raise ValueError("connect_timeout must be positive")
        servers = (config.ice_servers_from_env() if ice_servers is None
                   else config.check_ice_servers(ice_servers))
        policy = ice_transport_policy or config.ice_policy_from_env()
        camera = config.DEFAULT_VIDEO if video is None else config.check_video(video)
        self._error_code: str | None = None
        self._popouts: PopoutServer | None = None
        self._retired: set[PopoutServer] = set()
        self._checking: asyncio.Task[CheckReport] | None = None
        self._check_run: ConnectionCheck | None = None
        self.hub = SessionHub(_Owner(self), max_sessions=max_sessions)
        """The sessions of this widget (see :class:`~echo_widget.hub.SessionHub`)."""
        super().__init__(ice_servers=servers, ice_transport_policy=policy, video=camera,
                         audio=bool(audio), **kwargs)
        config.check_relay_policy(self.ice_transport_policy, self.ice_servers)
        self.record_to = record_to
        self.connect_timeout = connect_timeout
        self.stats = dict(self.hub.snapshot())
        self.on_msg(self._on_custom_msg)

    @traitlets.validate("ice_servers")
    def _validate_ice_servers(self, proposal: Any) -> list[dict[str, Any]]:
        return config.check_ice_servers(proposal["value"])

    @traitlets.validate("video")
    def _validate_video(self, proposal: Any) -> dict[str, Any]:
        return config.check_video(proposal["value"])

    @property
    def record_to(self) -> Path | None:
        """Where the next session records (absolute; ``stem-N.ext`` if taken), or None."""
        return self._record_to

    @record_to.setter
    def record_to(self, value: str | os.PathLike[str] | None) -> None:
        self._record_to = None if value is None else Path(value).absolute()

    @property
    def max_sessions(self) -> int:
        """How many sessions (views) may be live at once; an offer past it is refused."""
        return self.hub.max_sessions

    @max_sessions.setter
    def max_sessions(self, value: int) -> None:
        if value < 1:
            raise ValueError("max_sessions must be at least 1")
        self.hub.max_sessions = value

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
        self.hub.expect_view(self.view_timeout)
        return data, metadata

    def _fallback_text(self) -> str:
        return (f"EchoWidget(status={self.status!r}) — this front end can't show widgets, so "
                "the webcam echo is not visible here. Open the notebook in JupyterLab 4 or "
                "Jupyter Notebook 7 with `pip install echo-widget` (which brings anywidget) in "
                "the kernel's environment.")

    def _on_custom_msg(self, _widget: object, content: object, _buffers: object) -> None:
        if isinstance(content, dict) and content.get("type") in VIEW_REQUESTS:
            self._on_widget_loop(self._view_message, content)
        else:
            self.hub.deliver(content)

    # -- statistics -------------------------------------------------------------

    @property
    def stats_history(self) -> list[dict[str, Any]]:
        """``stats`` sampled about once a second while streaming (last hour), oldest first.

        Each sample adds ``t``: seconds since the widget was made. See :meth:`plot`.
        """
        return self.hub.book.history

    def plot(self) -> Figure:
        """Plot fps, bitrate and round-trip time from :attr:`stats_history` (needs matplotlib).

        ``pip install "echo-widget[plot]"`` brings matplotlib.
        """
        return plot_history(self.stats_history)

    # -- the kernel can see -------------------------------------------------------

    async def snapshot(self, timeout: float = 10.0) -> av.VideoFrame:  # noqa: ASYNC109
        """The next frame decoded from the latest session's camera.

        ``frame.pts`` is the browser's RTP timestamp (``time_base`` 1/90000);
        ``frame.to_ndarray(format="rgb24")`` gives an HxWx3 array. Raises ``TimeoutError``
        saying why when no frame comes within ``timeout`` seconds.
        """
        slot = self.hub.subscribe()
        try:
            frame = await asyncio.wait_for(slot.get(), timeout)
        except TimeoutError:
            raise TimeoutError(f"No camera frame within {timeout:g} s: "
                               f"{self._why_no_frame()}") from None
        finally:
            self.hub.unsubscribe(slot)
        if frame is None:
            raise RuntimeError("The widget was closed before a frame came.")
        return frame

    def _why_no_frame(self) -> str:
        session = self.hub.current
        if session is None:
            return ("no live session. Display the widget (the last line of a cell) and allow "
                    "the camera.")
        if session.state != "connected":
            return f"the session is still {session.state}; is the browser tab open?"
        return "the session is connected, but no camera frames have arrived yet."

    async def frames(self) -> AsyncIterator[av.VideoFrame]:
        """Decoded frames of the latest session, newest first: a slow loop skips frames
        (counted in ``stats["frames_skipped"]``), never falls behind.

        Ends when the widget closes; leaving the loop stops the decoding it asked for.
        Work that takes long belongs in a thread (``await asyncio.to_thread(...)``) or in
        :attr:`transform`: the kernel's loop also carries the echo.
        """
        slot = self.hub.subscribe()
        try:
            while (frame := await slot.get()) is not None:
                yield frame
        finally:
            self.hub.unsubscribe(slot)

    async def audio_frames(self) -> AsyncIterator[av.AudioFrame]:
        """Decoded microphone audio of the latest session (``audio=True``), newest first.

        Each ``av.AudioFrame`` is 48 kHz, decoded from one Opus packet; ``pts`` is the
        browser's RTP timestamp (``time_base`` 1/48000). Opus is decoded in a thread only while
        a loop iterates; a loop slower than the packets skips frames, never falls behind.
        Ends when the widget closes.
        """
        slot = self.hub.subscribe_audio()
        try:
            while (frame := await slot.get()) is not None:
                yield frame
        finally:
            self.hub.unsubscribe_audio(slot)

    @property
    def transform(self) -> Transform | None:
        """``fn(frame) -> av.VideoFrame | numpy array (HxWx3 rgb24) | None``, run on the
        newest frame in a worker thread; its results are shown as "Processed by kernel"
        (``None`` from ``fn`` keeps the last picture). Set None to stop."""
        return self.hub.transform

    @transform.setter
    def transform(self, fn: Transform | None) -> None:
        if fn is not None and not callable(fn):
            raise TypeError(f"transform must be a function of one frame, or None, not "
                            f"{type(fn).__name__}")
        self.hub.set_transform(fn)
        self._processing = fn is not None

    def annotate(self, frame: av.VideoFrame | None, shapes: list[dict[str, Any]]) -> None:
        """Draw ``shapes`` over the echo, on the echo frame that ``frame`` became.

        Shapes are dicts in the frame's pixel coordinates: ``{"type": "box", "x", "y", "w",
        "h", "label"?, "color"?}``, ``{"type": "text", "x", "y", "text", "color"?}``,
        ``{"type": "points", "points": [[x, y], ...], "color"?, "closed"?}``. They stay until
        the next annotation and go after 1 s without one; ``annotate(None, [])`` clears them.
        A malformed shape raises ``ValueError`` naming the field.
        """
        checked = check_shapes(shapes)
        import av  # a frame from snapshot() or frames() means it is imported already

        if frame is not None and not isinstance(frame, av.VideoFrame):
            raise TypeError(f"frame must be an av.VideoFrame from snapshot() or frames(), or "
                            f"None, not {type(frame).__name__}")
        timestamp = frame.pts if frame is not None else None
        if timestamp is not None and not isinstance(timestamp, int):
            raise ValueError("the frame has no pts: use a frame from snapshot() or frames()")
        self.hub.annotate(timestamp, checked)

    # -- recording control ----------------------------------------------------

    def start_recording(self, path: str | os.PathLike[str] | None = None) -> list[str]:
        """Start recording every live session to ``path`` (default: ``record_to``).

        Returns the files reserved (``stem-N.ext`` when several sessions or a
        file exists). The recording starts at the next keyframe, requested at once.
        """
        target = Path(path).absolute() if path is not None else self.record_to
        if target is None:
            raise ValueError("start_recording() needs a path (or set record_to first)")
        return self.hub.start_recording(target)

    def stop_recording(self) -> asyncio.Future[list[str]]:
        """Stop every recording in progress; ``await`` the result for the finalized paths.

        The files are finalized (and added to ``recordings``) even if it is not awaited.
        """
        return self.hub.stop_recording()

    # -- pop-out page and connection check ------------------------------------

    def popout(self) -> PopoutLink:
        """Serve this widget's view as a page of its own, and return its link.

        For front ends whose page can't use the camera (VS Code's notebook view, a Jupyter
        page on plain ``http://`` that is not a secure context): the page runs the same view
        in a browser tab, as one more session of this widget. It is served by the kernel on
        ``127.0.0.1`` and a free port, behind a random token; the endpoint stops when no page
        has been open for a while, and at :meth:`aclose`. On a remote kernel, forward the
        port first (the link's note says how).
        """
        from .popout import PopoutLink, PopoutServer  # tornado's server: only when asked for

        loop = running_loop()
        if loop is None or (self.hub.loop is not None and loop is not self.hub.loop):
            raise RuntimeError("popout() must be called on the kernel's main loop (in a cell).")
        if self.hub.loop is None:
            self.hub.loop = loop
        if self._popouts is None or self._popouts.stopping is not None:
            self._retired = {old for old in self._retired if old.stopping is not None}
            if self._popouts is not None:  # still stopping: awaited by aclose()
                self._retired.add(self._popouts)
            pages = _Pages(self)
            self._popouts = pages.server = PopoutServer(pages)
        return PopoutLink(self._popouts.start())

    async def check(self, timeout: float = 5.0) -> CheckReport:  # noqa: ASYNC109
        """Check what the kernel and every open view can see, and say what it means.

        Reports each view's secure context, camera and microphone permission states and
        gathered candidate types, the kernel's candidate types, an allocation attempt on
        each TURN server, and a verdict: "direct connection possible", "needs TURN" or
        "TURN configured but unreachable: ...". ``str(report)`` says it in plain words.
        Takes up to about ``timeout`` + 2 seconds.
        """
        return await asyncio.shield(self._start_check(timeout))

    def _start_check(self, timeout: float) -> asyncio.Task[CheckReport]:
        """The running check, or a new one (a failure is logged when nobody awaits it)."""
        if self._checking is None or self._checking.done():
            self._checking = asyncio.ensure_future(self._run_check(timeout))
            self._checking.add_done_callback(_log_check_failure)
        return self._checking

    async def _run_check(self, timeout: float) -> CheckReport:  # noqa: ASYNC109
        from .check import ConnectionCheck

        run = ConnectionCheck(self._send_to_views, self.ice_servers,
                              config.to_rtc_ice_servers(self.ice_servers),
                              relay_only=self.ice_transport_policy == "relay", timeout=timeout)
        self._check_run = run
        self._check = {"running": True, "verdict": "", "text": "Checking the connection…"}
        try:
            report = await run.run()
        except BaseException:
            self._check = {"running": False, "verdict": "", "text": ""}
            raise
        finally:
            self._check_run = None
        self._check = report.to_dict()
        return report

    def _send_to_views(self, content: dict[str, Any]) -> None:
        """A message for every view: the notebook's and the pop-out pages'."""
        if self._popouts is None or not self._popouts.route(content):
            self.send(content)
            if self._popouts is not None and "session" not in content:
                self._popouts.broadcast({"custom": content})

    def _view_message(self, content: dict[str, Any]) -> None:
        """A pop-out or check request from a view, or a signaling message from a page."""
        kind = content.get("type")
        session = content.get("session")
        if not isinstance(session, str) or not 0 < len(session) <= MAX_SESSION_ID_LENGTH:
            self.hub.handle(content)  # refused there, with the reply every bad message gets
        elif kind == "popout-start":
            try:
                self.popout()
            except (OSError, RuntimeError) as exc:
                self._popout_error(f"Could not start the pop-out page: {exc}")
        elif kind == "check-start":
            self._start_check(5.0)
        elif kind == "check-report":
            if self._check_run is not None:
                self._check_run.report(content)
        else:
            self.hub.handle(content)

    def _popout_error(self, message: str) -> None:
        self._error_code = "popout"
        self.error = message

    def _on_widget_loop(self, fn: Any, content: dict[str, Any]) -> None:
        loop = self.hub.loop
        if loop is not None and loop is not running_loop() and not loop.is_closed():
            loop.call_soon_threadsafe(fn, content)
        else:
            fn(content)

    @traitlets.observe(*PAGE_TRAITS)
    def _page_trait_changed(self, change: dict[str, Any]) -> None:
        if self._popouts is not None and self._popouts.sockets:
            self._popouts.broadcast({"state": {change["name"]: change["new"]}})

    # -- closing --------------------------------------------------------------

    async def aclose(self) -> None:
        """Close every session and the pop-out endpoint; return once every recording is
        finalized and ffmpeg has exited."""
        for server in [*self._retired, *([self._popouts] if self._popouts else [])]:
            await server.aclose()
        self._retired.clear()
        if self._checking is not None:
            self._checking.cancel()
            with contextlib.suppress(BaseException):
                await self._checking
        await self.hub.aclose()

    def close(self) -> None:
        """Close the widget; its sessions are closed on the event loop (see :meth:`aclose`)."""
        hub: SessionHub | None = getattr(self, "hub", None)
        if hub is not None:  # None: construction failed (bad arguments), nothing was started
            hub.close_soon()
        popouts: PopoutServer | None = getattr(self, "_popouts", None)
        if popouts is not None and hub is not None and hub.loop is not None:
            _call_on(hub.loop, popouts.close_soon)
        checking: asyncio.Task[CheckReport] | None = getattr(self, "_checking", None)
        if checking is not None:
            _call_on(checking.get_loop(), checking.cancel)
        super().close()
