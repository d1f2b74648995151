"""The session registry of one widget: routing, limits, the loop hand-off, recording, closing.

:class:`SessionHub` takes the views' signaling messages (from whatever thread the kernel
delivers them on), routes them to :class:`~echo_widget.session.EchoSession`\\ s on the one
loop where they all live, enforces ``max_sessions``, remembers ended session ids, watches
that a displayed widget's view starts, fans recording requests out to the live sessions,
publishes statistics while any session is live, and closes everything. It reports to its
owner (the widget) through a :class:`HubOwner`; tests drive it with any object that has
those methods.

It also keeps the kernel's frame consumers (``snapshot()``, ``frames()``: one newest-wins
slot each, fed from the current session) and the transform, and tells each session whether
to decode: only while someone wants frames.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from . import errors, protocol
from .errors import ErrorCode
from .media.workers import AsyncLatestSlot
from .recording import RecorderError
from .stats import Stats, StatsBook

if TYPE_CHECKING:
    import av

    from .media.transform import Transform
    from .session import EchoSession, SessionConfig

logger = logging.getLogger(__name__)
MEDIA_STACK = "echo_widget.session"
"""The module whose import brings aiortc, PyAV and the media path."""


T = TypeVar("T")

STATS_INTERVAL = 1.0
ENDED_IDS_KEPT = 10_000
"""Ended session ids remembered, so that a late offer for one is refused."""


class HubOwner(Protocol):
    """What the hub tells the widget (or a test)."""

    def send(self, content: dict[str, Any]) -> None:
        """Send a signaling message to the views."""

    def session_config(self) -> SessionConfig:
        """The settings for a new session, as they are now."""

    def show_status(self, status: str) -> None:
        """The state of the most recent session changed."""

    def show_error(self, code: str | None, message: str) -> None:
        """A problem the user should see; ``("", None)`` clears it."""

    def view_started(self) -> None:
        """A view of the widget started in the browser."""

    def recording_finalized(self, path: Path) -> None:
        """A recording is complete on disk."""

    def publish_stats(self, stats: Stats) -> None:
        """New statistics to show."""


def running_loop() -> asyncio.AbstractEventLoop | None:
    """The running event loop of this thread, if any."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class SessionHub:
    """Every session of one widget, and the one loop they run on."""

    def __init__(self, owner: HubOwner, *, max_sessions: int) -> None:
        if max_sessions < 1:
            raise ValueError("max_sessions must be at least 1")
        self.max_sessions = max_sessions
        self.book = StatsBook()
        self.loop: asyncio.AbstractEventLoop | None = running_loop()
        """The loop every session runs on: the kernel's, where the widget was made."""
        self.views_started = 0
        self.displayed_at: float | None = None
        """When the widget was last displayed (time.time()), for the setup phases."""
        self.sessions_started = 0
        self._owner = owner
        self._sessions: dict[str, EchoSession] = {}
        self._unfinished: set[EchoSession] = set()
        self._ended_ids: dict[str, None] = {}
        self._latest: EchoSession | None = None
        self._stats_task: asyncio.Task[None] | None = None
        self._stopping: set[asyncio.Future[list[str]]] = set()
        self._close_task: asyncio.Task[None] | None = None
        self._view_check: asyncio.TimerHandle | None = None
        self._consumers: set[AsyncLatestSlot[av.VideoFrame]] = set()
        self._audio_consumers: set[AsyncLatestSlot[av.AudioFrame]] = set()
        self._transform: Transform | None = None
        self._closed = False

    # -- state ----------------------------------------------------------------

    @property
    def live(self) -> dict[str, EchoSession]:
        """Live sessions by id (a copy)."""
        return dict(self._sessions)

    @property
    def unfinished(self) -> frozenset[EchoSession]:
        """Sessions whose teardown (recording finalized) is not done yet, live ones included."""
        return frozenset(self._unfinished)

    @property
    def closing(self) -> asyncio.Task[None] | None:
        """The task closing everything, once :meth:`close_soon` started it on this loop."""
        return self._close_task

    @property
    def busy(self) -> bool:
        """Whether anything is left to close: sessions, recordings, a pending view check."""
        return bool(self._unfinished or self._stopping or self._view_check is not None)

    @property
    def current(self) -> EchoSession | None:
        """The session frames come from: the latest one started, else the newest live one."""
        live = list(self._sessions.values())
        return self._latest if self._latest in live else (live[-1] if live else None)

    def snapshot(self) -> Stats:
        """Statistics now, with the rates of the last sample."""
        live = list(self._sessions.values())
        latest = self._latest if self._latest in live else (live[-1] if live else None)
        return self.book.snapshot([s.stats() for s in live],
                                  latest.stats() if latest is not None else None)

    # -- messages from the views ----------------------------------------------

    def deliver(self, content: object) -> None:
        """Take one message from a view, on whatever thread the kernel delivers it.

        JupyterLab may deliver widget messages through a kernel subshell, a thread
        with its own event loop; they are handed to the hub's loop (the kernel's
        main loop), where all sessions live.
        """
        current = running_loop()
        if self.loop is None:
            self.loop = current
        if self.loop is not None and current is not self.loop and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self.handle, content)
        else:
            self.handle(content)

    def handle(self, content: object) -> None:
        """Route one message from a view; never raises."""
        try:
            self._route(protocol.parse_message(content))
        except protocol.ProtocolError as exc:
            logger.warning("echo-widget: %s (message: %.200r)", exc, content)
            # A refused offer leaves its view with no session: fatal, so the view stops
            # waiting. A second offer on a live session leaves that session running.
            refused = (isinstance(content, dict) and content.get("type") == "offer"
                       and exc.session not in self._sessions)
            self._owner.send(protocol.error(exc.session, exc.code, str(exc), fatal=refused))
        except Exception as exc:
            logger.exception("echo-widget: could not handle %.200r", content)
            session = content.get("session") if isinstance(content, dict) else None
            self._owner.send(protocol.error(session if isinstance(session, str) else None,
                                            "internal", errors.internal(exc)))

    def _route(self, message: protocol.Message) -> None:
        if isinstance(message, protocol.Hello):
            self.views_started += 1
            self._owner.view_started()
            return
        if isinstance(message, protocol.BrowserError):
            logger.warning("echo-widget view %s: %s", message.session[:40], message.message)
            if message.code == "view-crashed":  # its script ran: not a view that never started
                self.views_started += 1
            self._owner.show_error(message.code or "view", message.message)
            return
        if isinstance(message, protocol.Offer):
            self._start_session(message)
            return
        session = self._sessions.get(message.session)
        if session is None:
            raise protocol.ProtocolError(errors.unknown_session(message.session),
                                         message.session, "unknown-session")
        if isinstance(message, protocol.Ice):
            session.add_ice_candidate(message.candidate)
        elif isinstance(message, protocol.Setup):
            session.record_setup(message.phases, message.elapsed,
                                 self._view_ms(message.started_at))
        else:
            session.end("closed")

    def _view_ms(self, started_at: float | None) -> float | None:
        """Display to view start, when both clocks are this machine's (else None)."""
        if started_at is None or self.displayed_at is None:
            return None
        view_ms = started_at - self.displayed_at * 1000
        return round(view_ms, 1) if 0 <= view_ms <= protocol.MAX_PHASE_MS else None

    def _start_session(self, offer: protocol.Offer) -> None:
        sid = offer.session
        if sid in self._ended_ids:
            raise protocol.ProtocolError(errors.SESSION_ENDED, sid, "session-ended")
        if sid in self._sessions:
            raise protocol.ProtocolError(errors.DUPLICATE_OFFER, sid, "duplicate-offer")
        if len(self._sessions) >= self.max_sessions:
            raise protocol.ProtocolError(errors.too_many_sessions(self.max_sessions), sid,
                                         "too-many-sessions")
        if running_loop() is None:
            raise protocol.ProtocolError(errors.NO_LOOP, sid, "no-loop")
        from .session import EchoSession  # the media stack: see _import_media_stack()

        session = EchoSession(sid, offer.sdp, self._owner.session_config(),
                              self.book.counters, self, self.book.audio_counters)
        self._sessions[sid] = session
        self._unfinished.add(session)
        self._latest = session
        self.sessions_started += 1
        self._update_decoding()
        self._owner.show_error(None, "")
        self._owner.show_status(session.state)
        if self._stats_task is None or self._stats_task.done():
            self._stats_task = asyncio.ensure_future(self._publish_stats_while_live())

    # -- a displayed widget's view must start ---------------------------------

    def expect_view(self, timeout: float) -> None:
        """Say so (``view-timeout``) if no view starts within ``timeout`` seconds from now."""
        self.displayed_at = time.time()
        loop = self.loop
        if loop is None or loop.is_closed():
            return
        if MEDIA_STACK not in sys.modules:
            loop.call_soon(self._import_media_stack)
        if self._view_check is not None:
            return
        started = self.views_started
        expected_at = loop.time() + timeout

        def check() -> None:
            self._view_check = None
            if loop.time() - expected_at > 1.0:  # the kernel was busy: a hello may be queued
                self._view_check = loop.call_later(1.0, check)
                return
            if self.views_started == started:
                self._owner.show_error("view-timeout", errors.VIEW_TIMEOUT.format(
                    timeout=timeout))

        self._view_check = loop.call_later(timeout, check)

    def _import_media_stack(self) -> None:
        """Import aiortc, PyAV and the media path: about 250 ms in a fresh kernel.

        ``import echo_widget`` leaves them out, so a fresh kernel shows the widget sooner; a
        displayed widget imports them on the kernel's loop right after, while the browser
        starts the view and opens the camera, so the first offer finds them ready. An offer
        that comes first imports them itself. An import that fails (an aiortc this version
        does not support) is said in the widget; the offer will fail with it too.
        """
        try:
            importlib.import_module(MEDIA_STACK)
        except Exception as exc:
            logger.exception("echo-widget: could not import aiortc and PyAV")
            self._owner.show_error("internal", f"echo-widget could not start: {exc}")

    # -- SessionListener --------------------------------------------------------

    def send(self, content: dict[str, Any]) -> None:
        self._owner.send(content)

    def session_state_changed(self, session: EchoSession) -> None:
        if session is self._latest:
            self._owner.show_status(session.state)
        if not session.live and self._sessions.get(session.id) is session:
            del self._sessions[session.id]
            self.book.packets_lost_ended += session.packets_lost
            self._ended_ids[session.id] = None
            if len(self._ended_ids) > ENDED_IDS_KEPT:
                del self._ended_ids[next(iter(self._ended_ids))]
            self._update_decoding()

    def session_error(self, session: EchoSession, code: ErrorCode, message: str) -> None:
        logger.warning("echo-widget session %s: %s", session.id, message)
        self._owner.show_error(code, message)
        self._owner.send(protocol.error(session.id, code, message, fatal=not session.live))

    def recording_finalized(self, session: EchoSession, path: Path) -> None:
        self._owner.recording_finalized(path)
        self._owner.publish_stats(self.snapshot())

    def session_finished(self, session: EchoSession) -> None:
        """Forget a session that has torn down (a re-run cell's old widget keeps none)."""
        self._unfinished.discard(session)
        figures = session.stats()
        self.book.decoded_ended += figures.frames_decoded
        self.book.skipped_ended += figures.frames_skipped
        if session is self._latest:
            self._latest = None

    def frame_decoded(self, session: EchoSession, frame: av.VideoFrame) -> None:
        if session is not self.current:
            return
        from .media.decoder import clone_frame

        slots = list(self._consumers)
        # each consumer its own frame object, copied before any of them can use the original
        frames = [frame, *(clone_frame(frame) for _ in slots[1:])]
        for slot, own in zip(slots, frames, strict=True):
            if slot.put(own):
                self.book.counters.frames_skipped += 1

    def audio_decoded(self, session: EchoSession, frame: av.AudioFrame) -> None:
        if session is not self.current:
            return
        for slot in list(self._audio_consumers):
            slot.put(frame)  # audio frames are not converted in threads: one object will do

    # -- the kernel can see -----------------------------------------------------

    def subscribe(self) -> AsyncLatestSlot[av.VideoFrame]:
        """A new frame consumer: a slot the current session's newest frames go to."""
        return self._join(self._consumers)

    def unsubscribe(self, slot: AsyncLatestSlot[av.VideoFrame]) -> None:
        """The consumer is gone; decoding stops with the last one."""
        self._leave(self._consumers, slot)

    def subscribe_audio(self) -> AsyncLatestSlot[av.AudioFrame]:
        """A new audio consumer: a slot the current session's newest audio frames go to."""
        return self._join(self._audio_consumers)

    def unsubscribe_audio(self, slot: AsyncLatestSlot[av.AudioFrame]) -> None:
        """The audio consumer is gone; audio decoding stops with the last one."""
        self._leave(self._audio_consumers, slot)

    def _join(self, consumers: set[AsyncLatestSlot[T]]) -> AsyncLatestSlot[T]:
        slot: AsyncLatestSlot[T] = AsyncLatestSlot()
        if self._closed:
            slot.close()
            return slot
        consumers.add(slot)
        self._update_decoding()
        return slot

    def _leave(self, consumers: set[AsyncLatestSlot[T]], slot: AsyncLatestSlot[T]) -> None:
        consumers.discard(slot)
        slot.close()
        self._update_decoding()

    @property
    def consumers(self) -> int:
        return len(self._consumers)

    @property
    def transform(self) -> Transform | None:
        return self._transform

    def set_transform(self, transform: Transform | None) -> None:
        """Run ``transform`` on every session that can show processed video (None: stop)."""
        self._transform = transform
        self._update_decoding()

    def _current_transform(self) -> Transform | None:
        return self._transform

    def _update_decoding(self) -> None:
        current = self.current
        wants_transform = self._transform is not None and not self._closed
        for session in list(self._sessions.values()):
            session.set_decoding(
                frames=bool(self._consumers) and session is current,
                transform=self._current_transform if wants_transform else None,
                audio=bool(self._audio_consumers) and session is current)

    def annotate(self, rtp_timestamp: int | None, shapes: list[dict[str, Any]]) -> bool:
        """Send shapes to the current session's view, stamped with the echo's timestamp of
        the camera frame ``rtp_timestamp`` (None: draw at once). ``(None, [])`` clears every
        view. Returns whether a view was sent anything."""
        targets = list(self._sessions.values()) if rtp_timestamp is None and not shapes else (
            [self.current] if self.current is not None else [])
        for session in targets:
            assert session is not None
            timestamp = None if rtp_timestamp is None else session.echo_timestamp(rtp_timestamp)
            self._owner.send(protocol.overlay(session.id, timestamp, shapes))
        return bool(targets)

    # -- recording --------------------------------------------------------------

    def start_recording(self, target: Path) -> list[str]:
        """Start recording every live session to ``target``; returns the reserved paths."""
        live = [s for s in self._sessions.values() if s.live]
        if not live:
            raise RuntimeError("No live session to record: display the widget (the last line "
                               "of a cell) and wait until it is connected.")
        started: list[str] = []
        for session in live:
            try:
                started.append(str(session.start_recording(target)))
            except RecorderError as exc:
                self._owner.show_error("recording", str(exc))
                raise
            finally:
                self._owner.publish_stats(self.snapshot())
        return started

    def stop_recording(self) -> asyncio.Future[list[str]]:
        """Stop every recording in progress; the future gives the finalized paths."""
        tasks = [task for session in self._sessions.values()
                 if (task := session.stop_recording()) is not None]

        async def finalized() -> list[str]:
            paths = await asyncio.gather(*tasks)
            return [str(path) for path in paths if path is not None]

        future = asyncio.ensure_future(finalized())
        self._stopping.add(future)
        future.add_done_callback(self._stopping.discard)
        return future

    # -- statistics -------------------------------------------------------------

    async def _publish_stats_while_live(self) -> None:
        book = self.book
        book.reset_rates()
        self._sample()
        while self._sessions:
            await asyncio.sleep(STATS_INTERVAL)
            self._update_transport_stats()
            self._sample()
        book.reset_rates()
        self._owner.publish_stats(self.snapshot())

    def _update_transport_stats(self) -> None:
        """Each live session's loss and round trip, read in a frame of its own (a loop variable
        left in the stats task's frame would keep the last session alive while it sleeps)."""
        for session in list(self._sessions.values()):
            session.update_transport_stats()

    def _sample(self) -> None:
        live = list(self._sessions.values())
        latest = self._latest if self._latest in live else (live[-1] if live else None)
        assert self.loop is not None
        self._owner.publish_stats(self.book.sample(
            self.loop.time(), [s.stats() for s in live],
            latest.stats() if latest is not None else None))

    # -- closing ----------------------------------------------------------------

    async def aclose(self) -> None:
        """Close every session; return once every recording is finalized."""
        loop = self.loop
        if loop is not None and loop is not running_loop() and loop.is_running():
            # awaited from another loop (e.g. a subshell's): close on the sessions' loop
            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self._aclose(), loop))
        else:
            await self._aclose()

    async def _aclose(self) -> None:
        self._cancel_view_check()
        self._closed = True
        for slot in self._consumers:
            slot.close()
        for audio_slot in self._audio_consumers:
            audio_slot.close()
        self._consumers.clear()
        self._audio_consumers.clear()
        await asyncio.gather(*(session.aclose() for session in list(self._unfinished)),
                             *list(self._stopping))
        if self._stats_task is not None:
            self._stats_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._stats_task
            self._stats_task = None
        self.book.reset_rates()
        self._owner.publish_stats(self.snapshot())
        if self.sessions_started:
            self._owner.show_status("closed")

    def close_soon(self) -> asyncio.Task[None] | None:
        """Start closing on the hub's loop, from any thread; the task, if on this loop."""
        loop = self.loop
        if loop is None or loop.is_closed() or not self.busy:
            return None
        if loop is not running_loop():
            loop.call_soon_threadsafe(self._schedule_close)
            return None
        return self._schedule_close()

    def _schedule_close(self) -> asyncio.Task[None] | None:
        self._cancel_view_check()
        if self._close_task is None and (self._unfinished or self._stopping):
            self._close_task = asyncio.ensure_future(self._aclose())
        return self._close_task

    def _cancel_view_check(self) -> None:
        if self._view_check is not None:
            self._view_check.cancel()
            self._view_check = None
