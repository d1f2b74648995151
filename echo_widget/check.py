"""The connection check: what the kernel and each view can see, and a verdict in plain words.

``await w.check()`` (or a view's **Check connection**) asks every open view, the notebook's
and the pop-out pages', for a report over the signaling channel::

    kernel -> views  {"type": "check", "check": ID}
    view -> kernel   {"type": "check-report", "session": VIEW, "check": ID,
                      "report": {...}, "offer": SDP | null}
    kernel -> view   {"type": "check-answer", "session": VIEW, "check": ID, "sdp": SDP}

A report says whether the page is a secure context, the camera and microphone permission
states, and the candidate types the view gathered with the widget's ICE servers. Its
``offer`` is a data-channel-only offer gathered with no ICE server: the kernel answers it with
no ICE server either, and whether that probe connects says whether a direct connection works.
Meanwhile the kernel gathers its own candidates and attempts an allocation on every TURN
server configured. Nothing here touches the echo sessions.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aioice import stun, turn
from aiortc import (
    RTCConfiguration,
    RTCIceGatherer,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
)

from .config import server_urls

DIRECT = "direct connection possible"
NEEDS_TURN = "needs TURN"
TURN_UNREACHABLE = "TURN configured but unreachable"
NO_VIEW = "unknown: no view answered"

_TURN_URL = re.compile(
    r"(?P<scheme>turns?):(?P<host>\[[^\]]+\]|[^:?]+)(?::(?P<port>\d+))?(?:\?transport=(?P<transport>udp|tcp))?")
_ids = itertools.count(1)


@dataclass
class TurnResult:
    """One TURN server's allocation attempt."""

    url: str
    error: str | None
    """None: a relay was allocated; else why not, in words."""

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class ViewReport:
    """What one view could see."""

    view: str
    page: str = "notebook"
    front_end: str = "browser"
    secure: bool | None = None
    camera: str = "unknown"
    microphone: str = "unknown"
    candidates: list[str] = field(default_factory=list)
    direct: bool | None = None
    """Whether the no-server probe connected to the kernel (None: no probe)."""
    problem: str = ""

    def describe(self) -> str:
        where = {"notebook": "the notebook's view", "popout": "a pop-out page"}.get(
            self.page, self.page)
        if self.front_end == "vscode":
            where += " (VS Code webview)"
        secure = {True: "a secure context", False: "NOT a secure context (no camera here)",
                  None: "secure context unknown"}[self.secure]
        gathered = ", ".join(self.candidates) or "none"
        direct = {True: "connected", False: "did not connect",
                  None: "not tried"}[self.direct]
        text = (f"{where}: {secure}; camera permission {self.camera}, microphone permission "
                f"{self.microphone}; candidates gathered: {gathered}; direct connection to the "
                f"kernel {direct}.")
        return f"{text} {self.problem}".strip()


@dataclass
class CheckReport:
    """The result of :meth:`EchoWidget.check`; ``str(report)`` says it in plain words."""

    verdict: str
    reason: str
    kernel_candidates: list[str]
    turn: list[TurnResult]
    views: list[ViewReport]

    def lines(self) -> list[str]:
        out = [f"Verdict: {self.verdict}." + (f" {self.reason}" if self.reason else "")]
        gathered = ", ".join(self.kernel_candidates) or "none"
        out.append(f"Kernel: candidates gathered: {gathered}.")
        if not self.turn:
            out.append("TURN: none configured.")
        for result in self.turn:
            out.append(f"TURN {result.url}: " + (
                "reachable (a relay was allocated)." if result.ok else
                f"unreachable: {result.error}."))
        if not self.views:
            out.append("Views: none answered (display the widget, or open its pop-out page).")
        out += [f"View {i}, {view.describe()}" for i, view in enumerate(self.views, 1)]
        return out

    def __str__(self) -> str:
        return "\n".join(self.lines())

    def _repr_html_(self) -> str:
        import html

        return "<pre>" + html.escape(str(self)) + "</pre>"

    def to_dict(self) -> dict[str, Any]:
        """For the views (the widget's ``_check`` trait)."""
        return {"verdict": self.verdict, "text": str(self), "running": False}


def verdict(turn_results: list[TurnResult], views: list[ViewReport],
            relay_only: bool = False) -> tuple[str, str]:
    """The verdict and its reason, from the TURN attempts and the views' probes."""
    failed = [r for r in turn_results if not r.ok]
    if turn_results and len(failed) == len(turn_results):
        return (f"{TURN_UNREACHABLE}: {failed[0].error}",
                "Check the TURN server's address, port, username and credential, and that it "
                "is running and reachable from the kernel.")
    relay = any(r.ok for r in turn_results)
    if relay_only:
        return ("relay through TURN (ice_transport_policy='relay')",
                "Direct connections are not used; the TURN server is reachable.")
    if not views:
        return NO_VIEW, "Display the widget or open its pop-out page, then check again."
    if any(v.direct for v in views):
        return DIRECT, ("The browser reached the kernel without any server" +
                        ("; the TURN server is there if a network needs it." if relay else "."))
    if relay:
        return NEEDS_TURN, ("The browser could not reach the kernel directly; the configured "
                            "TURN server is reachable, so connections go through it.")
    return NEEDS_TURN, ("The browser could not reach the kernel directly (a remote kernel, NAT "
                        "or firewall): configure a TURN server that both can reach "
                        "(ice_servers=..., see docs/remote-kernels.md).")


def parse_report(content: dict[str, Any]) -> tuple[ViewReport, str | None]:
    """A view's report and its probe offer; fields of the wrong type are taken as unknown."""
    raw = content.get("report")
    report: dict[str, Any] = raw if isinstance(raw, dict) else {}

    def word(key: str, default: str) -> str:
        value = report.get(key)
        return value[:40] if isinstance(value, str) and value else default

    candidates = report.get("candidates")
    kinds = sorted({c for c in candidates if c in ("host", "srflx", "prflx", "relay")}
                   ) if isinstance(candidates, list) else []
    secure = report.get("secure")
    offer = content.get("offer")
    view = ViewReport(
        view=str(content.get("session"))[:128], page=word("page", "notebook"),
        front_end=word("frontEnd", "browser"),
        secure=secure if isinstance(secure, bool) else None,
        camera=word("camera", "unknown"), microphone=word("microphone", "unknown"),
        candidates=kinds, problem=_text(report, "problem"))
    return view, offer if isinstance(offer, str) and 0 < len(offer) <= 100_000 else None


def _text(report: dict[str, Any], key: str) -> str:
    value = report.get(key)
    return value[:300] if isinstance(value, str) else ""


class _Closed(asyncio.DatagramProtocol):
    """Notices when a TURN transport has deleted its allocation and closed."""

    def __init__(self) -> None:
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


async def allocate(url: str, username: str | None, credential: str | None,
                   timeout: float) -> TurnResult:  # noqa: ASYNC109
    """Try to allocate a relay on one TURN server; the allocation is deleted at once."""
    match = _TURN_URL.fullmatch(url)
    if match is None:
        return TurnResult(url, "not a turn: or turns: URL this check understands")
    secure = match["scheme"] == "turns"
    host = match["host"].strip("[]")
    port = int(match["port"] or (5349 if secure else 3478))
    transport = match["transport"] or ("tcp" if secure else "udp")
    protocol: _Closed | None = None

    def made() -> _Closed:
        nonlocal protocol
        protocol = _Closed()
        return protocol

    try:
        async with asyncio.timeout(timeout):
            relay, _ = await turn.create_turn_endpoint(
                made, server_addr=(host, port), username=username, password=credential,
                ssl=secure, transport=transport)
    except TimeoutError:
        return TurnResult(url, f"no answer from {host}:{port} ({transport}) within "
                               f"{timeout:g} s")
    except stun.TransactionFailed as exc:
        code = exc.response.attributes.get("ERROR-CODE")
        said = f"{code[0]} {code[1]}" if code else "an error"
        hint = ": check the username and credential" if code and code[0] in (401, 441) else ""
        return TurnResult(url, f"the server answered {said}{hint}")
    except (OSError, stun.TransactionError, ConnectionError, ValueError) as exc:
        return TurnResult(url, f"{type(exc).__name__}: {exc}")
    relay.close()
    if protocol is not None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2):
                await protocol.closed
    return TurnResult(url, None)


async def kernel_candidates(servers: list[RTCIceServer],
                            timeout: float) -> list[str]:  # noqa: ASYNC109
    """The candidate types the kernel gathers with the STUN servers (TURN is tried apart)."""
    stun_only = [RTCIceServer(urls=u) for s in servers for u in
                 ([s.urls] if isinstance(s.urls, str) else s.urls) if u.startswith("stun")]
    gatherer = RTCIceGatherer(iceServers=stun_only)
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            await gatherer.gather()
    return sorted({c.type for c in gatherer.getLocalCandidates()})


class ConnectionCheck:
    """One run of the check; :meth:`report` takes the views' reports while it runs."""

    def __init__(self, send: Callable[[dict[str, Any]], None], servers: list[dict[str, Any]],
                 rtc_servers: list[RTCIceServer], *, relay_only: bool = False,
                 wait: float = 3.0, timeout: float = 5.0) -> None:
        self.id = next(_ids)
        self._send = send
        self._servers = servers
        self._rtc_servers = rtc_servers
        self._relay_only = relay_only
        self._wait = wait
        self._timeout = timeout
        self._views: dict[str, ViewReport] = {}
        self._probes: set[asyncio.Task[None]] = set()
        self._collecting = True

    def report(self, content: dict[str, Any]) -> None:
        """A view's ``check-report`` (ignored when for another run or too late)."""
        if content.get("check") != self.id or not self._collecting:
            return
        view, offer = parse_report(content)
        if view.view in self._views:
            return
        self._views[view.view] = view
        if offer is not None:
            task = asyncio.ensure_future(self._probe(view, offer))
            self._probes.add(task)

    async def run(self) -> CheckReport:
        """Ask the views, probe, gather, allocate; the report once each answered or timed out."""
        self._send({"type": "check", "check": self.id})
        turns = [(url, s.get("username"), s.get("credential")) for s in self._servers
                 for url in server_urls(s) if isinstance(url, str) and url.startswith("turn")]
        gathering = asyncio.ensure_future(kernel_candidates(self._rtc_servers, self._timeout))
        allocating = asyncio.gather(
            *(allocate(url, user, secret, self._timeout) for url, user, secret in turns))
        try:
            await asyncio.sleep(self._wait)
            self._collecting = False
            candidates = await gathering
            turn_results = list(await allocating)
            if self._probes:
                await asyncio.gather(*self._probes)
        finally:
            self._collecting = False
            gathering.cancel()
            allocating.cancel()
            for task in self._probes:
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(gathering, allocating, *self._probes,
                                     return_exceptions=True)
        if any(r.ok for r in turn_results):
            candidates = sorted({*candidates, "relay"})
        views = list(self._views.values())
        said, reason = verdict(turn_results, views, self._relay_only)
        return CheckReport(said, reason, candidates, turn_results, views)

    async def _probe(self, view: ViewReport, offer: str) -> None:
        """Answer a view's no-server offer; ``view.direct``: whether ICE completed in time."""
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        done = asyncio.Event()

        @pc.on("iceconnectionstatechange")
        def changed() -> None:
            if pc.iceConnectionState in ("completed", "failed", "closed"):
                done.set()

        try:
            await pc.setRemoteDescription(RTCSessionDescription(offer, "offer"))
            await pc.setLocalDescription(await pc.createAnswer())
            self._send({"type": "check-answer", "session": view.view, "check": self.id,
                        "sdp": pc.localDescription.sdp})
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._timeout):
                    await done.wait()
            view.direct = pc.iceConnectionState == "completed"
        except Exception as exc:  # a malformed offer: said in the report, the check goes on
            view.direct = False
            view.problem = f"Its probe offer was refused: {exc}."[:300]
        finally:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5):
                    await pc.close()
