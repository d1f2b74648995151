"""One echo session: one browser view, one aiortc peer connection, its whole lifecycle.

A session runs as a single task that owns everything it starts: it answers
the offer, then handles what arrives in its inbox (ICE candidates, the
connection coming up, the end) one at a time, and always tears down in the
same place: echo stopped, peer closed, recording finalized.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from aiortc import (
    RTCConfiguration,
    RTCIceCandidate,
    RTCIceServer,
    RTCIceTransportPolicy,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.sdp import SessionDescription

from . import protocol
from ._aiortc_compat import (
    EchoRtpSender,
    on_keyframe_request,
    tap_receiver,
)
from .media import MediaCounters, MediaForwarder
from .recorder import Recorder, RecorderError

logger = logging.getLogger(__name__)

SessionState = Literal["connecting", "connected", "closed", "failed"]

ICE_FAILED_MESSAGE = (
    "Could not connect the browser to the kernel (ICE failed). The kernel is probably on "
    "another machine or behind a NAT/firewall: configure a TURN server that both can reach, "
    "e.g. EchoWidget(ice_servers=[{'urls': 'turn:turn.example.org:3478', 'username': 'u', "
    "'credential': 'p'}]) or the ECHO_WIDGET_ICE_SERVERS environment variable."
)


@dataclass(frozen=True)
class SessionConfig:
    """What a widget hands each of its sessions."""

    ice_servers: list[RTCIceServer] = field(default_factory=list)
    relay_only: bool = False
    """Use only TURN relay candidates (``ice_transport_policy="relay"``)."""
    record_to: Path | None = None
    media_timeout: float = 3.5
    """Seconds without video from a connected browser before the session is closed."""
    connect_timeout: float = 30.0
    """Seconds for the connection to come up before the session fails."""
    watchdog_interval: float = 0.5


@dataclass(frozen=True)
class _End:
    state: SessionState
    message: str = ""


@dataclass(frozen=True)
class _Connected:
    pass


_InboxItem = RTCIceCandidate | None | _End | _Connected
_NO_MORE_CANDIDATES = None
_PEER_CLOSE_TIMEOUT = 5.0


class EchoSession:
    """Answers one browser's offer and echoes its video back until the session ends."""

    def __init__(
        self,
        session_id: str,
        offer_sdp: str,
        config: SessionConfig,
        counters: MediaCounters,
        *,
        send: Callable[[dict[str, Any]], None],
        on_state: Callable[[EchoSession], None],
        on_error: Callable[[EchoSession, str], None],
        on_recording: Callable[[Path], None],
        on_finished: Callable[[EchoSession], None],
    ) -> None:
        self.id = session_id
        self.state: SessionState = "connecting"
        self.forwarder = MediaForwarder(counters)
        self._offer_sdp = offer_sdp
        self._config = config
        self._counters = counters
        self._send = send
        self._on_state = on_state
        self._on_error = on_error
        self._on_recording = on_recording
        self._on_finished = on_finished
        self._inbox: asyncio.Queue[_InboxItem] = asyncio.Queue()
        self._pc: RTCPeerConnection | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self._connected_at: float | None = None
        self._finalizing: set[asyncio.Task[Path | None]] = set()
        """Recordings being finalized by :meth:`stop_recording`; awaited at teardown."""
        self.rtt_ms: float | None = None
        """Round-trip time to the browser from its receiver reports on the echo, if known."""
        self.packets_lost = 0
        """Packets from the browser that never arrived (aiortc's receiver statistics)."""
        self._task: asyncio.Task[None] = asyncio.ensure_future(self._run())

    # -- called by the widget -------------------------------------------------

    def add_ice_candidate(self, candidate: RTCIceCandidate | None) -> None:
        """Queue a remote candidate (None: end of candidates); applied after the offer."""
        self._inbox.put_nowait(candidate)

    def end(self, state: SessionState = "closed", message: str = "") -> None:
        """Ask the session to end (e.g. on ``bye``); returns at once."""
        self._inbox.put_nowait(_End(state, message))

    @property
    def done(self) -> bool:
        return self._task.done()

    @property
    def recorder(self) -> Recorder | None:
        """The recording in progress, if any."""
        return self.forwarder.recorder

    def start_recording(self, path: Path) -> Path:
        """Start recording to ``path`` (or ``stem-N.ext``); returns the reserved path.

        Raises :class:`RecorderError` when already recording, or when ffmpeg or
        the file is not available. The recording starts at the next keyframe,
        which is requested at once.
        """
        if self.done or self.state in ("closed", "failed"):
            raise RecorderError("This session has ended; display the widget again to record.")
        if self.forwarder.recorder is not None:
            raise RecorderError(f"Already recording to {self.forwarder.recorder.path}; "
                                "call stop_recording() first.")
        recorder = self.forwarder.recorder = self._new_recorder(path)
        self.forwarder.request_keyframe()
        return recorder.path

    def _new_recorder(self, path: Path) -> Recorder:
        """A recorder for this session's frames; its problems go to the widget's ``error``."""
        return Recorder.open(path, self._counters,
                             on_error=lambda message: self._on_error(self, message))

    def stop_recording(self) -> asyncio.Task[Path | None] | None:
        """Stop the recording in progress; the task finalizes it (None: nothing to stop)."""
        recorder, self.forwarder.recorder = self.forwarder.recorder, None
        if recorder is None:
            return None
        task = asyncio.ensure_future(self._finalize(recorder))
        self._finalizing.add(task)
        task.add_done_callback(self._finalizing.discard)
        return task

    async def _finalize(self, recorder: Recorder) -> Path | None:
        path = await recorder.aclose()
        if path is not None:
            self._on_recording(path)
        return path

    async def update_transport_stats(self) -> None:
        """Refresh :attr:`rtt_ms` and :attr:`packets_lost` from aiortc's ``getStats``."""
        pc = self._pc
        if pc is None or self.state != "connected":
            return
        try:
            report = await pc.getStats()
        except Exception as exc:  # statistics are best effort; never end a session for them
            logger.debug("session %s: getStats failed: %r", self.id, exc)
            return
        for stats in report.values():
            kind = getattr(stats, "type", "")
            if kind == "remote-inbound-rtp" and getattr(stats, "roundTripTime", None):
                self.rtt_ms = round(float(stats.roundTripTime) * 1000, 1)
            elif kind == "inbound-rtp":
                self.packets_lost = max(0, int(getattr(stats, "packetsLost", 0) or 0))

    async def aclose(self) -> None:
        """End the session and wait until its recording is finalized."""
        if not self._task.done():
            self.end()
        await asyncio.shield(self._task)

    # -- the session's task ---------------------------------------------------

    async def _run(self) -> None:
        try:
            await self._negotiate()
            await self._serve()
        except protocol.ProtocolError as exc:
            self._fail(str(exc))
        except Exception as exc:  # never let one session's failure escape
            logger.exception("echo session %s failed", self.id)
            self._fail(f"The echo session failed: {exc!r}.")
        finally:
            await self._teardown()

    async def _negotiate(self) -> None:
        _check_offer(self._offer_sdp, self.id)
        relay_only = self._config.relay_only
        policy = RTCIceTransportPolicy.RELAY if relay_only else RTCIceTransportPolicy.ALL
        pc = self._pc = RTCPeerConnection(RTCConfiguration(
            iceServers=self._config.ice_servers, iceTransportPolicy=policy))
        pc.on("connectionstatechange", self._on_connection_state)
        await pc.setRemoteDescription(RTCSessionDescription(self._offer_sdp, "offer"))
        video = [t for t in pc.getTransceivers() if t.kind == "video"]
        for transceiver in pc.getTransceivers():
            if transceiver is not video[0]:
                transceiver.direction = "inactive"  # echo one video track, nothing else
        echo = video[0]
        echo.setCodecPreferences([
            codec for codec in RTCRtpSender.getCapabilities("video").codecs
            if codec.mimeType.lower() in ("video/vp8", "video/rtx")
        ])
        tap_receiver(echo.receiver, self.forwarder, self.forwarder.forward)
        self._open_recorder()
        output = EchoRtpSender(echo.sender)
        pc.addTrack(output.track)
        self.forwarder.echo = output
        on_keyframe_request(echo.sender, self.forwarder.on_viewer_keyframe_request)
        await pc.setLocalDescription(await pc.createAnswer())
        self._send(protocol.answer(self.id, pc.localDescription.sdp))
        self._watchdog = asyncio.ensure_future(self._watch_media())

    async def _serve(self) -> None:
        assert self._pc is not None
        while True:
            item = await self._inbox.get()
            if isinstance(item, _End):
                self._set_state(item.state, item.message)
                return
            if isinstance(item, _Connected):
                self._on_connected()
            else:
                try:
                    await self._pc.addIceCandidate(item)
                except Exception as exc:
                    logger.warning("session %s: ICE candidate not added: %r", self.id, exc)
                    self._send(protocol.error(self.id, f"ICE candidate not added: {exc}."))

    def _on_connected(self) -> None:
        loop = asyncio.get_running_loop()
        self._connected_at = loop.time()
        self._set_state("connected")
        self.forwarder.request_keyframe()  # start the echo without waiting for one

    def _open_recorder(self) -> None:
        """Start recording before media flows, so the first keyframe is in the file."""
        if self._config.record_to is None:
            return
        try:
            self.forwarder.recorder = self._new_recorder(self._config.record_to)
        except RecorderError as exc:
            self._on_error(self, str(exc))

    def _on_connection_state(self) -> None:
        assert self._pc is not None
        state = self._pc.connectionState
        if state == "connected":
            self._inbox.put_nowait(_Connected())
        elif state == "failed":
            self.end("failed", ICE_FAILED_MESSAGE if self._connected_at is None else
                     "The connection to the browser was lost.")
        elif state == "closed":
            self.end("closed")

    async def _watch_media(self) -> None:
        """End the session when a connected browser stops sending (closed tab, lost network).

        A tick that comes late means the kernel's own loop was blocked (a long
        cell): the media clock restarts then instead of ending the session.
        """
        config = self._config
        loop = asyncio.get_running_loop()
        started = last_tick = grace_from = loop.time()
        while True:
            await asyncio.sleep(config.watchdog_interval)
            now = loop.time()
            if now - last_tick > 2 * config.watchdog_interval + 0.25:
                grace_from = now
            last_tick = now
            if self._connected_at is None:
                if now - started > config.connect_timeout:
                    self.end("failed", ICE_FAILED_MESSAGE)
                    return
                continue
            last_media = max(self.forwarder.last_packet_at or self._connected_at, grace_from)
            if now - last_media > config.media_timeout:
                self.end("closed", f"The browser sent no video for {config.media_timeout:g} s "
                         "(tab closed or network lost), so the session was closed.")
                return

    async def _teardown(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog
        self.forwarder.stop()
        if self._pc is not None:
            await self._close_peer(self._pc)
        self.stop_recording()
        if self._finalizing:
            await asyncio.gather(*self._finalizing, return_exceptions=True)
        if self.state not in ("closed", "failed"):
            self._set_state("closed")
        self._on_finished(self)

    async def _close_peer(self, pc: RTCPeerConnection) -> None:
        """Close the peer, waiting at most ``_PEER_CLOSE_TIMEOUT``: the recording comes next.

        At interpreter exit asyncio cancels aiortc's own tasks too, and a close() aiortc
        started itself can then stall, leaving ours waiting on it. The close runs in this task
        (not a new one, so it still comes first when it can), with a timer that cancels the
        wait, as ``asyncio.timeout`` does on Python 3.11+.
        """
        task = asyncio.current_task()
        assert task is not None
        expired = False

        def expire() -> None:
            nonlocal expired
            expired = True
            task.cancel()

        timer = asyncio.get_running_loop().call_later(_PEER_CLOSE_TIMEOUT, expire)
        try:
            await pc.close()
        except asyncio.CancelledError:
            if not expired:
                raise
            uncancel = getattr(task, "uncancel", None)  # Python 3.11+: undo our own cancel
            if uncancel is not None:
                uncancel()
            logger.warning("session %s: the peer connection did not close in %g s",
                           self.id, _PEER_CLOSE_TIMEOUT)
        except Exception:
            logger.exception("session %s: closing the peer connection failed", self.id)
        finally:
            timer.cancel()

    def _set_state(self, state: SessionState, message: str = "") -> None:
        self.state = state
        if message:
            self._on_error(self, message)
        self._on_state(self)

    def _fail(self, message: str) -> None:
        self._set_state("failed", message)


def _check_offer(sdp: str, session: str) -> None:
    """Parse an offer and check that it sends and receives VP8 video."""
    try:
        if not sdp.lstrip().startswith("v="):
            raise ValueError("an SDP starts with 'v='")
        description = SessionDescription.parse(sdp)
    except Exception as exc:
        raise protocol.ProtocolError(f"The offer's SDP could not be parsed ({exc!r}).",
                                     session) from exc
    video = [m for m in description.media if m.kind == "video"]
    if not video:
        raise protocol.ProtocolError(
            "The offer has no video: the echo needs the camera's video track.", session)
    first = video[0]
    if not any(codec.mimeType.lower() == "video/vp8" for codec in first.rtp.codecs):
        raise protocol.ProtocolError(
            "The offer's video has no VP8 codec: the echo forwards VP8 only.", session)
    if first.direction not in ("sendrecv", None):
        raise protocol.ProtocolError(
            f"The offer's video is {first.direction}: it must be sendrecv to be echoed.",
            session)
