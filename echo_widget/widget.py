"""EchoWidget: the anywidget that shows the webcam and its echo from the kernel.

The widget owns its traits and routes the browser's signaling messages to
sessions (one per view); it keeps the running totals every session adds to
and publishes them as ``stats`` about once a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from importlib import resources
from pathlib import Path
from typing import Any

import anywidget
import traitlets
from aiortc import RTCIceServer

from . import protocol
from .media import MediaCounters
from .session import EchoSession, SessionConfig

logger = logging.getLogger(__name__)

ICE_SERVERS_ENV = "ECHO_WIDGET_ICE_SERVERS"
ICE_POLICY_ENV = "ECHO_WIDGET_ICE_TRANSPORT_POLICY"
STATS_INTERVAL = 1.0
DEFAULT_MAX_SESSIONS = 8


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

    def __init__(
        self,
        *,
        record_to: str | os.PathLike[str] | None = None,
        ice_servers: list[dict[str, Any]] | None = None,
        max_sessions: int = DEFAULT_MAX_SESSIONS,
        ice_transport_policy: str | None = None,
        **kwargs: Any,
    ) -> None:
        """See the class docstring; ``max_sessions`` caps live sessions (views) at once."""
        if max_sessions < 1:
            raise ValueError("max_sessions must be at least 1")
        servers = ice_servers_from_env() if ice_servers is None else check_ice_servers(
            ice_servers)
        policy = ice_transport_policy or os.environ.get(ICE_POLICY_ENV, "all")
        super().__init__(ice_servers=servers, ice_transport_policy=policy, **kwargs)
        if self.ice_transport_policy == "relay" and not any(
                str(u).startswith("turn") for s in self.ice_servers for u in _urls(s)):
            raise ValueError("ice_transport_policy='relay' needs a TURN server in ice_servers")
        self.record_to: Path | None = None if record_to is None else Path(record_to).absolute()
        self.max_sessions = max_sessions
        self._counters = MediaCounters()
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
                               relay_only=self.ice_transport_policy == "relay")
        session = EchoSession(
            offer.session, offer.sdp, config, self._counters,
            send=self.send, on_state=self._on_session_state,
            on_error=self._on_session_error, on_recording=self._on_recording,
            on_finished=self._unfinished.discard,
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
            self._ended_ids[session.id] = None
            if len(self._ended_ids) > 10_000:
                del self._ended_ids[next(iter(self._ended_ids))]

    def _on_session_error(self, session: EchoSession, message: str) -> None:
        logger.warning("echo-widget session %s: %s", session.id, message)
        self.error = message
        self.send(protocol.error(session.id, message))

    def _on_recording(self, path: Path) -> None:
        self.recordings = [*self.recordings, str(path)]

    # -- stats ----------------------------------------------------------------

    def _stats_snapshot(self, *, fps: float, kbps: float) -> dict[str, Any]:
        return {**self._counters.as_dict(), "fps": round(fps, 1), "kbps": round(kbps, 1),
                "sessions": len(self._sessions)}

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

    async def _publish_stats_while_live(self) -> None:
        self._last_sample = None
        self._publish_stats()
        while self._sessions:
            await asyncio.sleep(STATS_INTERVAL)
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
        await asyncio.gather(*(session.aclose() for session in list(self._unfinished)))
        if self._stats_task is not None:
            self._stats_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._stats_task
            self._stats_task = None
        self.stats = self._stats_snapshot(fps=0.0, kbps=0.0)
        if self._latest is not None:
            self.status = "closed"

    def close(self) -> None:
        """Close the widget; its sessions are closed on the event loop (see :meth:`aclose`)."""
        loop = self._loop
        if loop is not None and not loop.is_closed() and self._unfinished:
            if loop is _running_loop():
                self._schedule_close()
            else:
                loop.call_soon_threadsafe(self._schedule_close)
        super().close()

    def _schedule_close(self) -> None:
        if self._close_task is None:
            self._close_task = asyncio.ensure_future(self._aclose())
