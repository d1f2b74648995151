"""The pop-out capture page: the widget's own view in a browser tab, served by the kernel.

Some front ends can't give a widget the camera: VS Code's notebook webviews reject
``getUserMedia``, and a Jupyter page on a plain ``http://`` LAN address is not a secure
context. :class:`PopoutServer` serves the same view as a page of its own, from a small tornado
HTTP + WebSocket endpoint on the kernel's loop, bound to ``127.0.0.1`` on a free port, with a
random token as the first segment of every path::

    GET /TOKEN/            the page: the widget's ES module rendered with a model shim
    GET /TOKEN/widget.js   the widget's ES module (the same bundle the notebook loads)
    GET /TOKEN/widget.css  its stylesheet
    WS  /TOKEN/ws          the shim's channel: the widget's custom messages and traits

A missing or wrong token gets 403 with nothing else; the right token with another path gets
404. WebSocket frames are JSON text: the page sends ``{"custom": message}`` (a signaling
message, handled as the widget's own custom messages are) and ``{"set": {"video": ...}}``; the
kernel sends ``{"state": {trait: value}}`` and ``{"custom": message}``. Replies to a page's
sessions go back over that page's socket only.

The endpoint starts on demand (:meth:`start`), stops when no page has been open for a while
(``linger`` after the last page closed, ``unopened`` when none ever came), and always at
:meth:`aclose`: nothing listens when no pop-out is open.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import html
import json
import logging
import secrets
from pathlib import Path
from typing import Any, Protocol

import tornado.httpserver
import tornado.netutil
import tornado.web
import tornado.websocket

from . import protocol
from .errors import ErrorCode

logger = logging.getLogger(__name__)

MAX_FRAME_BYTES = 256 * 1024
"""Largest WebSocket frame accepted (an offer's SDP is at most 100,000 characters)."""
MAX_PAGES = 8
"""Pages connected at once; another is refused (503)."""
MAX_IDS_PER_PAGE = 256
"""Session ids remembered per page (for routing replies); the oldest are forgotten."""
LINGER = 10.0
"""Seconds the endpoint stays up after its last page closed (a reload reconnects)."""
UNOPENED = 600.0
"""Seconds the endpoint waits for a first page before it stops."""
PAGE_TYPES = frozenset({"offer", "ice", "bye", "hello", "error", "check-start", "check-report"})
"""Signaling messages a page may send (the widget's own, and the connection check's)."""


class PopoutHost(Protocol):
    """What the endpoint needs from the widget."""

    def page_message(self, content: dict[str, Any]) -> None:
        """A page's message, handled as the widget's custom messages are."""

    def page_state(self) -> dict[str, Any]:
        """The synced traits a view reads (``video``, ``stats``, ``ice_servers``, ...)."""

    def page_set(self, name: str, value: object) -> None:
        """A page changed a trait (only ``video``); raises ValueError when refused."""

    def page_assets(self) -> tuple[str, str]:
        """The widget's ES module and CSS."""

    def popout_changed(self, url: str, pages: int) -> None:
        """The endpoint started (url), stopped (``""``) or its open pages changed."""

    def pages_closed(self, sessions: list[str]) -> None:
        """A page went away: end its sessions that are still live."""


def remote_note(url: str) -> str:
    """What a user of a remote kernel must do to open ``url``."""
    port = url.split(":")[2].split("/")[0]
    return (f"The page is served by the kernel, on 127.0.0.1 of the kernel's machine. If the "
            f"kernel runs on another machine (SSH, a container, JupyterHub, Codespaces), "
            f"forward port {port} to your computer first: in VS Code, Ports view > Forward a "
            f"Port > {port}; or ssh -L {port}:127.0.0.1:{port} KERNEL_HOST. The video itself "
            "then still needs a path between your browser and the kernel: a TURN server, as "
            "for any remote kernel (docs/remote-kernels.md).")


class PopoutLink:
    """What ``w.popout()`` returns: the page's URL, shown as a link with the remote note."""

    def __init__(self, url: str) -> None:
        self.url = url

    def __str__(self) -> str:
        return self.url

    def __repr__(self) -> str:
        return f"Open the camera page in a browser tab: {self.url}\n{remote_note(self.url)}"

    def _repr_html_(self) -> str:
        url = html.escape(self.url)
        return (f'<p>Open the camera page in a browser tab: <a href="{url}" target="_blank" '
                f'rel="noopener noreferrer">{url}</a></p>'
                f"<p><small>{html.escape(remote_note(self.url))}</small></p>")


class _Refuse(tornado.web.RequestHandler):
    """Every request that does not carry the token, or asks for an unknown path."""

    def initialize(self, server: PopoutServer) -> None:
        self.server = server

    def prepare(self) -> None:
        self.server.refuse(self)


class _Page(tornado.web.RequestHandler):
    """The page and its two assets, behind the token."""

    def initialize(self, server: PopoutServer) -> None:
        self.server = server

    def prepare(self) -> None:
        if not self.server.token_ok(self.path_args[0] if self.path_args else ""):
            self.server.refuse(self)

    def get(self, _token: str, name: str) -> None:
        esm, css = self.server.host.page_assets()
        body, kind = {
            "": (PAGE_HTML, "text/html; charset=utf-8"),
            "widget.js": (esm, "text/javascript; charset=utf-8"),
            "widget.css": (css, "text/css; charset=utf-8"),
        }.get(name, (None, ""))
        if body is None:
            self.set_status(404)
            self.finish("Not found.\n")
            return
        self.set_header("Content-Type", kind)
        self.finish(body)

    def set_default_headers(self) -> None:
        _plain_headers(self)


def _log_request(handler: tornado.web.RequestHandler) -> None:
    """A debug line per request, without the path (it holds the token); tornado's own
    access log would print it, as a warning for every refusal."""
    logger.debug("echo-widget pop-out: %s -> %d", handler.request.method, handler.get_status())


def _plain_headers(handler: tornado.web.RequestHandler) -> None:
    handler.clear_header("Server")
    handler.set_header("Cache-Control", "no-store")
    handler.set_header("Referrer-Policy", "no-referrer")
    handler.set_header("X-Content-Type-Options", "nosniff")


class _Socket(tornado.websocket.WebSocketHandler):
    """One page's channel: its messages to the widget, the widget's traits and replies to it."""

    def initialize(self, server: PopoutServer) -> None:
        self.server = server
        self.sessions: dict[str, None] = {}

    def set_default_headers(self) -> None:
        _plain_headers(self)

    def prepare(self) -> None:
        if not self.server.token_ok(self.path_args[0] if self.path_args else ""):
            self.server.refuse(self)
        elif len(self.server.sockets) >= MAX_PAGES:
            self.set_status(503)
            self.finish(f"At most {MAX_PAGES} pop-out pages can be open at once.\n")

    def open(self, *_args: str, **_kwargs: str) -> None:
        self.server.page_opened(self)
        self.send({"state": self.server.host.page_state()})

    def on_message(self, message: str | bytes) -> None:
        """Check a frame, then hand its message to the widget; never raises."""
        try:
            self._handle(message)
        except Exception as exc:  # a bug: said to the page, the endpoint goes on
            logger.exception("echo-widget pop-out: could not handle a frame")
            self.refuse_frame(f"The kernel could not handle this frame: {exc!r}", "internal")

    def _handle(self, message: str | bytes) -> None:
        if isinstance(message, bytes):
            self.refuse_frame("Binary frames are not accepted: send JSON text.")
            return
        try:
            frame = json.loads(message)
        except ValueError:
            self.refuse_frame("A frame must be JSON text.")
            return
        if not isinstance(frame, dict) or len(frame) != 1 or not (
                {"custom", "set"} & frame.keys()):
            self.refuse_frame('A frame must be {"custom": message} or {"set": {name: value}}.')
            return
        if "set" in frame:
            self._set(frame["set"])
            return
        content = frame["custom"]
        session = content.get("session") if isinstance(content, dict) else None
        if not isinstance(session, str) or not 0 < len(session) <= \
                protocol.MAX_SESSION_ID_LENGTH:
            self.refuse_frame("A message must be a JSON object with a 'session' string of 1 to "
                              f"{protocol.MAX_SESSION_ID_LENGTH} characters.")
            return
        assert isinstance(content, dict)
        if content.get("type") not in PAGE_TYPES:
            self.refuse_frame(f"Unknown message type {str(content.get('type'))[:40]!r}.",
                              session=session)
            return
        self.own(session)
        self.server.host.page_message(content)

    def _set(self, changes: object) -> None:
        if not isinstance(changes, dict) or set(changes) != {"video"}:
            self.refuse_frame('A page may only set "video".')
            return
        try:
            self.server.host.page_set("video", changes["video"])
        except (ValueError, TypeError) as exc:
            self.refuse_frame(f"video refused: {exc}")

    def own(self, session: str) -> None:
        """Replies for ``session`` go to this page from now on."""
        self.sessions.pop(session, None)
        self.sessions[session] = None
        if len(self.sessions) > MAX_IDS_PER_PAGE:
            del self.sessions[next(iter(self.sessions))]
        self.server.owners[session] = self

    def refuse_frame(self, message: str, code: ErrorCode = "bad-message",
                     session: str | None = None) -> None:
        logger.warning("echo-widget pop-out: %s", message)
        self.send({"custom": protocol.error(session, code, message)})

    def send(self, frame: dict[str, Any]) -> None:
        """Send a frame, unless the page is gone."""
        if self.ws_connection is None or self.ws_connection.is_closing():
            return
        with contextlib.suppress(tornado.websocket.WebSocketClosedError):
            self.write_message(json.dumps(frame))

    def on_close(self) -> None:
        self.server.page_closed(self)


class PopoutServer:
    """The pop-out page's endpoint; one per widget, started on demand."""

    def __init__(self, host: PopoutHost, *, linger: float = LINGER,
                 unopened: float = UNOPENED) -> None:
        self.host = host
        self.linger = linger
        self.unopened = unopened
        self.sockets: set[_Socket] = set()
        self.owners: dict[str, _Socket] = {}
        """The page each pop-out session belongs to, by session id."""
        self.refused = 0
        """Requests refused for a missing or wrong token."""
        self._token = ""
        self._url = ""
        self._http: tornado.httpserver.HTTPServer | None = None
        self._idle: asyncio.TimerHandle | None = None
        self._stopping: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        """The page's URL while the endpoint runs, else ``""``."""
        return self._url

    @property
    def port(self) -> int | None:
        """The port listened on, or None."""
        return int(self._url.split(":")[2].split("/")[0]) if self._url else None

    def start(self) -> str:
        """Listen (if not already) on 127.0.0.1 and a free port; returns the page's URL.

        Must run on the widget's loop (tornado serves on the loop of the caller).
        """
        asyncio.get_running_loop()  # a RuntimeError here, not a server on no loop
        if self._http is None:
            self._token = secrets.token_urlsafe(24)
            app = tornado.web.Application(
                [(r"/([^/]*)/ws", _Socket, {"server": self}),
                 (r"/([^/]*)/(.*)", _Page, {"server": self}),
                 (r".*", _Refuse, {"server": self})],
                websocket_max_message_size=MAX_FRAME_BYTES,
                websocket_ping_interval=5, websocket_ping_timeout=5,
                default_handler_class=_Refuse, default_handler_args={"server": self},
                log_function=_log_request,
            )
            sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
            self._http = tornado.httpserver.HTTPServer(app, xheaders=False,
                                                       max_body_size=MAX_FRAME_BYTES,
                                                       idle_connection_timeout=60)
            self._http.add_sockets(sockets)
            port = sockets[0].getsockname()[1]
            self._url = f"http://127.0.0.1:{port}/{self._token}/"
            self._arm(self.unopened)
            self.host.popout_changed(self._url, 0)
        return self._url

    def token_ok(self, token: str) -> bool:
        return bool(self._token) and hmac.compare_digest(token.encode(), self._token.encode())

    def refuse(self, handler: tornado.web.RequestHandler) -> None:
        """403 and nothing else."""
        self.refused += 1
        handler.clear()
        handler.clear_header("Server")
        handler.set_status(403)
        handler.finish()

    # -- pages ------------------------------------------------------------------

    def page_opened(self, socket: _Socket) -> None:
        self.sockets.add(socket)
        self._disarm()
        self.host.popout_changed(self._url, len(self.sockets))

    def page_closed(self, socket: _Socket) -> None:
        if socket not in self.sockets:
            return
        self.sockets.discard(socket)
        for session in socket.sessions:
            if self.owners.get(session) is socket:
                del self.owners[session]
        self.host.pages_closed(list(socket.sessions))
        if self._http is not None:
            self.host.popout_changed(self._url, len(self.sockets))
            if not self.sockets:
                self._arm(self.linger)

    def route(self, content: dict[str, Any]) -> bool:
        """Send a kernel message for a pop-out session over its page's socket.

        Returns False when ``content`` is not for a pop-out session (the widget sends it).
        """
        socket = self.owners.get(str(content.get("session")))
        if socket is None:
            return False
        socket.send({"custom": content})
        return True

    def broadcast(self, frame: dict[str, Any]) -> None:
        """Send a frame (``{"custom": ...}`` or ``{"state": ...}``) to every page."""
        for socket in list(self.sockets):
            socket.send(frame)

    # -- stopping ---------------------------------------------------------------

    def _arm(self, delay: float) -> None:
        self._disarm()
        self._idle = asyncio.get_running_loop().call_later(delay, self._stop_idle)

    def _disarm(self) -> None:
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None

    def _stop_idle(self) -> None:
        self._idle = None
        if not self.sockets and self._stopping is None:
            self._stopping = asyncio.ensure_future(self._stop())

    async def aclose(self) -> None:
        """Close every page's socket and stop listening; returns once nothing listens."""
        self._disarm()
        if self._stopping is None:
            self._stopping = asyncio.ensure_future(self._stop())
        stopping = self._stopping
        await stopping
        if self._stopping is stopping:
            self._stopping = None

    async def _stop(self) -> None:
        http, self._http = self._http, None
        if http is None:
            return
        http.stop()  # no new connections: the port is closed from here on
        self._url, self._token = "", ""
        for socket in list(self.sockets):
            socket.close(1001, "The widget closed.")
            self.page_closed(socket)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(http.close_all_connections(), 5)
        self.owners.clear()
        self.host.popout_changed("", 0)
        self._stopping = None

    def close_soon(self) -> None:
        """Start :meth:`aclose` from synchronous code on the widget's loop."""
        if self._http is not None and self._stopping is None:
            self._disarm()
            self._stopping = asyncio.ensure_future(self._stop())

    @property
    def stopping(self) -> asyncio.Task[None] | None:
        return self._stopping


def read_assets(esm: Path | str, css: Path | str) -> tuple[str, str]:
    """The widget's ES module and CSS, from files or from strings."""
    def text(source: Path | str) -> str:
        return source.read_text() if isinstance(source, Path) else source

    return text(esm), text(css)


PAGE_HTML = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>echo-widget camera page</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="widget.css">
<style>
  body { font-family: system-ui, sans-serif; margin: 1rem auto; max-width: 72rem;
         padding: 0 1rem; color: #222; background: #fff; }
  h1 { font-size: 1.1rem; font-weight: 600; }
  .echo-popout-note { color: #555; font-size: 0.9rem; }
</style>
</head>
<body>
<h1>echo-widget: camera page</h1>
<p class="echo-popout-note">This page is one more view of the notebook's widget, served by the
kernel. Closing it ends its session.</p>
<main id="echo-popout"></main>
<script type="module">
import widget, { popoutPage } from "./widget.js";
popoutPage(widget, document.getElementById("echo-popout"));
</script>
</body>
</html>
"""
