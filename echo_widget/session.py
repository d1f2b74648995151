"""One echo session: one browser view, one aiortc peer connection, its whole lifecycle.

A session runs as a single task that owns everything it starts: it answers
the offer, then handles what arrives in its inbox (ICE candidates, the
connection coming up, the end) one at a time, and always tears down in the
same place: echo stopped, peer closed, recording finalized. It reports to its
owner (the hub) through one :class:`SessionListener`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import av
from aiortc import (
    RTCConfiguration,
    RTCIceCandidate,
    RTCIceServer,
    RTCIceTransportPolicy,
    RTCPeerConnection,
    RTCRtpSender,
    RTCRtpTransceiver,
    RTCSessionDescription,
)

from . import errors, protocol
from ._aiortc_compat import (
    EchoRtpSender,
    FastReceive,
    OfferedMedia,
    OperationError,
    cap_remb,
    ice_summary,
    offered_media,
    on_keyframe_request,
    on_sender_report,
    packets_lost,
    round_trip_time,
    set_answer_parameters,
    tap_receiver,
)
from .errors import ErrorCode
from .media.audio import OPUS, AudioDecoder, AudioPackets
from .media.decoder import DecodedFrame, FrameDecoder, clone_frame
from .media.forwarder import MediaForwarder
from .media.frames import VideoFrames
from .media.transform import ProcessedTrack, Transform, TransformWorker
from .media.vp8 import VP8
from .recording import Recorder, RecorderError
from .recording.files import holds_audio
from .recording.recorder import AudioInput
from .recording.sync import SenderClock
from .stats import MediaCounters, SessionStats, percentile

logger = logging.getLogger(__name__)

SessionState = Literal["connecting", "connected", "closed", "failed"]



class SessionListener(Protocol):
    """What a session tells its owner."""

    def send(self, content: dict[str, Any]) -> None:
        """Send a signaling message to the session's view."""

    def session_state_changed(self, session: EchoSession) -> None:
        """``session.state`` changed."""

    def session_error(self, session: EchoSession, code: ErrorCode, message: str) -> None:
        """A problem the user should see (``message`` says what to do)."""

    def recording_finalized(self, session: EchoSession, path: Path) -> None:
        """A recording of the session is complete on disk."""

    def session_finished(self, session: EchoSession) -> None:
        """The session has torn down: peer closed, recordings finalized."""

    def frame_decoded(self, session: EchoSession, frame: av.VideoFrame) -> None:
        """A decoded camera frame for the frame consumers (on the loop)."""

    def audio_decoded(self, session: EchoSession, frame: av.AudioFrame) -> None:
        """A decoded microphone frame for the audio consumers (on the loop)."""


@dataclass(frozen=True)
class SessionConfig:
    """What a widget hands each of its sessions."""

    ice_servers: list[RTCIceServer] = field(default_factory=list)
    relay_only: bool = False
    """Use only TURN relay candidates (``ice_transport_policy="relay"``)."""
    record_to: Path | None = None
    audio: bool = False
    """Echo (and record) the microphone when the view offers it."""
    media_timeout: float = 3.5
    """Seconds without video from a connected browser before the session is closed."""
    connect_timeout: float = 30.0
    """Seconds for the connection to come up before the session fails."""
    watchdog_interval: float = 0.5


@dataclass(frozen=True)
class _End:
    state: SessionState
    code: ErrorCode | None = None
    message: str = ""


@dataclass(frozen=True)
class _Connected:
    pass


_InboxItem = RTCIceCandidate | None | _End | _Connected
_NO_MORE_CANDIDATES = None
REMB_BITRATE: int | None = 2_500_000
"""The bandwidth estimate (REMB) sent for the camera, in bit/s: WebRTC's default most for one
video stream, so it never limits the camera, and the browser starts at full quality.
``None``: aiortc's own delay-based estimator (the benchmark's baseline)."""
LEAN_PATH = True
"""Whether media packets take the lean path: read in the socket's callback
(:class:`FastReceive`), handled by :class:`LeanHandling` and sent without the transports'
coroutine layers; ``False``: aiortc's and aioice's usual path (the benchmark's baseline)."""
_PEER_CLOSE_TIMEOUT = 5.0


class EchoSession:
    """Answers one browser's offer and echoes its video back until the session ends."""

    def __init__(
        self,
        session_id: str,
        offer_sdp: str,
        config: SessionConfig,
        counters: MediaCounters,
        listener: SessionListener,
        audio_counters: MediaCounters | None = None,
    ) -> None:
        self.id = session_id
        self.state: SessionState = "connecting"
        self.forwarder = MediaForwarder(counters, VP8)
        self.video = VideoFrames(counters, self.forwarder)
        self.forwarder.tap(self.video.add)
        self.audio: AudioPackets | None = None
        """The microphone's packets, when the view sent audio and the widget echoes it."""
        self._audio_counters = audio_counters or MediaCounters()
        self._audio_channels = 1
        self.clocks = {"video": SenderClock(90_000), "audio": SenderClock(48_000)}
        """The browser's clock for each track, from its sender reports."""
        self._audio_decoder: AudioDecoder | None = None
        self.processed: ProcessedTrack | None = None
        """The processed video's track, when the view offered a second video m-line."""
        self._decoder: FrameDecoder | None = None
        self._transformer: TransformWorker | None = None
        self._deliver_frames = False
        self._stopping: set[asyncio.Task[None]] = set()
        """Decoders and transform workers being stopped and joined; awaited at teardown."""
        self._decoded_before = 0
        self._skipped_before = 0
        """Frames decoded and skipped by workers that have stopped."""
        self._offer_sdp = offer_sdp
        self._config = config
        self._counters = counters
        self._listener = listener
        self._inbox: asyncio.Queue[_InboxItem] = asyncio.Queue()
        self._pc: RTCPeerConnection | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self._fast_receive: list[FastReceive] = []
        self._connected_at: float | None = None
        self._finalizing: set[asyncio.Task[Path | None]] = set()
        """Recordings being finalized by :meth:`stop_recording`; awaited at teardown."""
        self.rtt_ms: float | None = None
        """Round-trip time to the browser from its receiver reports on the echo, if known."""
        self.setup_ms: dict[str, float] | None = None
        """How long this session took to its first echoed frame, by phase (from its view)."""
        self.packets_lost = 0
        """Packets from the browser that never arrived, video and microphone (aiortc's
        receiver statistics)."""
        self._echo_sender: RTCRtpSender | None = None
        """aiortc's sender of the echo's video, whose receiver reports give :attr:`rtt_ms`."""
        self._loop = asyncio.get_running_loop()
        self._task: asyncio.Task[None] = asyncio.ensure_future(self._run())

    # -- called by the widget -------------------------------------------------

    def add_ice_candidate(self, candidate: RTCIceCandidate | None) -> None:
        """Queue a remote candidate (None: end of candidates); applied after the offer."""
        self._inbox.put_nowait(candidate)

    def end(self, state: SessionState = "closed", code: ErrorCode | None = None,
            message: str = "") -> None:
        """Ask the session to end (e.g. on ``bye``); returns at once."""
        self._inbox.put_nowait(_End(state, code, message))

    @property
    def done(self) -> bool:
        return self._task.done()

    @property
    def queued(self) -> int:
        """Messages from the view (candidates, the end) not handled yet."""
        return self._inbox.qsize()

    @property
    def live(self) -> bool:
        """Connecting or connected."""
        return self.state in ("connecting", "connected")

    @property
    def recorder(self) -> Recorder | None:
        """The recording in progress, if any."""
        return next((s for s in self.video.sinks if isinstance(s, Recorder)), None)

    def record_setup(self, phases: dict[str, float], elapsed: float | None,
                     view_ms: float | None) -> None:
        """The view's measure of this session's setup: its phases (which may overlap), the
        time they took in all (None: their sum), and ``view_ms``, display to view start."""
        setup = {"view": view_ms} if view_ms is not None else {}
        setup.update({name: round(ms, 1) for name, ms in phases.items()})
        way = sum(phases.values()) if elapsed is None else elapsed
        setup["total"] = round((view_ms or 0.0) + way, 1)
        self.setup_ms = setup

    def stats(self) -> SessionStats:
        """This session's own figures."""
        width, height = self.video.frame_size
        recorder = self.recorder
        audio_level = self.audio.level.dbfs(time.monotonic()) if self.audio else None
        decoded, skipped = self._decoded_before, self._skipped_before
        if self._decoder is not None:
            decoded += self._decoder.decoded
        transform_ms: dict[str, float] | None = None
        processed_fps = 0.0
        age_ms: float | None = None
        worker = self._transformer
        if worker is not None:
            skipped += worker.skipped
            took, count, age = worker.stats(time.monotonic())
            processed_fps = float(count)
            if took:
                transform_ms = {"p50": round(percentile(took, 50) * 1000, 1),
                                "p95": round(percentile(took, 95) * 1000, 1)}
            age_ms = round(age * 1000, 1) if age is not None else None
        return SessionStats(
            width=width, height=height, rtt_ms=self.rtt_ms, packets_lost=self.packets_lost,
            recording=recorder is not None,
            recording_bytes=recorder.size if recorder is not None else 0,
            recording_seconds=recorder.duration if recorder is not None else 0.0,
            frames_decoded=decoded, frames_skipped=skipped, transform_ms=transform_ms,
            processed_fps=processed_fps, processed_age_ms=age_ms, audio_level=audio_level,
            av_offset_ms=recorder.av_offset_ms if recorder is not None else None,
            setup_ms=self.setup_ms)

    # -- the kernel can see -------------------------------------------------

    @property
    def decoding(self) -> bool:
        """Whether a decoder runs for this session."""
        return self._decoder is not None

    def set_decoding(self, *, frames: bool, transform: Callable[[], Transform | None] | None,
                     audio: bool = False) -> None:
        """Decode for the frame consumers (``frames``), the audio consumers (``audio``) and/or
        run ``transform``; stop what is no longer wanted. Returns at once: workers that stop
        are joined in the background (and at teardown)."""
        if not self.live:
            frames, transform, audio = False, None, False
        self._set_audio_decoding(audio)
        if transform is None or self.processed is None:
            transform = None
        self._deliver_frames = frames
        if transform is not None and self._transformer is None:
            assert self.processed is not None
            self._transformer = TransformWorker(transform, self.processed,
                                                self._transform_error)
        elif transform is None and self._transformer is not None:
            worker, self._transformer = self._transformer, None
            self._skipped_before += worker.skipped
            self._stop_worker(worker.aclose())
        wanted = frames or self._transformer is not None
        if wanted and self._decoder is None:
            self._decoder = FrameDecoder(self._on_decoded)
            self.video.attach(self._decoder)
        elif not wanted and self._decoder is not None:
            decoder, self._decoder = self._decoder, None
            self.video.detach(decoder)
            self._stop_worker(self._retire_decoder(decoder))

    def _set_audio_decoding(self, wanted: bool) -> None:
        packets = self.audio
        if wanted and packets is not None and self._audio_decoder is None:
            self._audio_decoder = AudioDecoder(self._on_audio_decoded, self._audio_channels)
            packets.attach(self._audio_decoder)
        elif not wanted and self._audio_decoder is not None:
            decoder, self._audio_decoder = self._audio_decoder, None
            if packets is not None:
                packets.detach(decoder)
            self._stop_worker(decoder.aclose())

    @property
    def decoding_audio(self) -> bool:
        """Whether an audio decoder runs for this session."""
        return self._audio_decoder is not None

    def _on_audio_decoded(self, frame: av.AudioFrame) -> None:
        """In the audio decoder's thread: to the consumers, on the loop."""
        with contextlib.suppress(RuntimeError):  # the loop is closed
            self._loop.call_soon_threadsafe(self._deliver_audio, frame)

    def _deliver_audio(self, frame: av.AudioFrame) -> None:
        if self._audio_decoder is not None:
            self._listener.audio_decoded(self, frame)

    async def _retire_decoder(self, decoder: FrameDecoder) -> None:
        await decoder.aclose()
        self._decoded_before += decoder.decoded

    def _stop_worker(self, closing: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(closing)
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)

    def _on_decoded(self, decoded: DecodedFrame) -> None:
        """In the decoder's thread: to the transform, and to the consumers on the loop."""
        worker = self._transformer
        if self._deliver_frames:
            # copied before the transform may touch the frame (see clone_frame)
            frame = decoded.frame if worker is None else clone_frame(decoded.frame)
            with contextlib.suppress(RuntimeError):  # the loop is closed
                self._loop.call_soon_threadsafe(self._deliver, frame)
        if worker is not None:
            worker.offer(decoded)

    def _deliver(self, frame: av.VideoFrame) -> None:
        if self._deliver_frames:
            self._listener.frame_decoded(self, frame)

    def _transform_error(self, message: str) -> None:
        if self.live:
            self._listener.session_error(self, "transform", message)

    def _processed_keyframe_request(self) -> None:
        worker = self._transformer
        if worker is not None:
            worker.request_keyframe()

    def echo_timestamp(self, rtp_timestamp: int) -> int | None:
        """The echo's RTP timestamp for a camera frame's (None before the echo started)."""
        return self.forwarder.echo_timestamp(rtp_timestamp)

    def start_recording(self, path: Path) -> Path:
        """Start recording to ``path`` (or ``stem-N.ext``); returns the reserved path.

        Raises :class:`RecorderError` when already recording, or when ffmpeg or
        the file is not available. The recording starts at the next keyframe,
        which is requested at once.
        """
        if self.done or not self.live:
            raise RecorderError("This session has ended; display the widget again to record.")
        if self.recorder is not None:
            raise RecorderError(f"Already recording to {self.recorder.path}; "
                                "call stop_recording() first.")
        audio = None if self.audio is None or not holds_audio(path) else AudioInput(
            self._audio_channels, self.clocks["video"], self.clocks["audio"])
        recorder = Recorder.open(path, self._counters, on_error=self._recording_error,
                                 audio=audio)
        self.video.attach(recorder)
        if self.audio is not None and audio is not None:
            self.audio.attach(recorder)
        return recorder.path

    def _recording_error(self, message: str) -> None:
        self._listener.session_error(self, "recording", message)

    def stop_recording(self) -> asyncio.Task[Path | None] | None:
        """Stop the recording in progress; the task finalizes it (None: nothing to stop)."""
        recorder = self.recorder
        if recorder is None:
            return None
        self.video.detach(recorder)
        if self.audio is not None and recorder.audio is not None:
            self.audio.detach(recorder)
        task = asyncio.ensure_future(self._finalize(recorder))
        self._finalizing.add(task)
        task.add_done_callback(self._finalizing.discard)
        return task

    async def _finalize(self, recorder: Recorder) -> Path | None:
        path = await recorder.aclose()
        if path is not None:
            self._listener.recording_finalized(self, path)
        return path

    def update_transport_stats(self) -> None:
        """Refresh :attr:`rtt_ms` (the echo's, from the browser's receiver reports) and
        :attr:`packets_lost` (of every stream from the browser) from aiortc's receiver and
        sender statistics."""
        pc = self._pc
        if pc is None or self.state != "connected":
            return
        try:
            lost = sum(packets_lost(t.receiver) for t in pc.getTransceivers())
            rtt = round_trip_time(self._echo_sender) if self._echo_sender is not None else None
        except Exception as exc:  # statistics are best effort; never end a session for them
            logger.debug("session %s: statistics not read: %r", self.id, exc)
            return
        self.packets_lost = max(0, lost)
        if rtt is not None:
            self.rtt_ms = round(rtt * 1000, 1)

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
            self._set_state("failed", exc.code, str(exc))
        except Exception as exc:  # never let one session's failure escape
            logger.exception("echo session %s failed", self.id)
            self._set_state("failed", "internal", f"The echo session failed: {exc!r}.")
        finally:
            await self._teardown()

    async def _negotiate(self) -> None:
        offered = _check_offer(self._offer_sdp, self.id)
        relay_only = self._config.relay_only
        policy = RTCIceTransportPolicy.RELAY if relay_only else RTCIceTransportPolicy.ALL
        pc = self._pc = RTCPeerConnection(RTCConfiguration(
            iceServers=self._config.ice_servers, iceTransportPolicy=policy))
        pc.on("connectionstatechange", self._on_connection_state)
        try:
            await pc.setRemoteDescription(RTCSessionDescription(self._offer_sdp, "offer"))
        except (ValueError, AttributeError, KeyError, IndexError, OperationError) as exc:
            # aiortc parses leniently, then fails on what is missing (ICE credentials,
            # DTLS fingerprint or role, ...): the offer is unusable, not the kernel broken.
            raise protocol.ProtocolError(f"The offer could not be used ({exc!r}).", self.id,
                                         "bad-offer") from exc
        video = [t for t in pc.getTransceivers() if t.kind == "video"]
        offered_video = [m for m in offered if m.kind == "video"]
        echo = video[0]
        processed = video[1] if len(video) > 1 and _can_receive(offered_video[1]) else None
        audio = None
        offered_audio = [m for m in offered if m.kind == "audio"]
        if self._config.audio and offered_audio and _can_echo_audio(offered_audio[0]):
            audio = next(t for t in pc.getTransceivers() if t.kind == "audio")
        for transceiver in pc.getTransceivers():
            if transceiver not in (echo, processed, audio):
                transceiver.direction = "inactive"  # nothing else is echoed or sent
        vp8 = [codec for codec in RTCRtpSender.getCapabilities("video").codecs
               if codec.mimeType.lower() in ("video/vp8", "video/rtx")]
        echo.setCodecPreferences(vp8)
        tap_receiver(echo.receiver, self.forwarder, self.forwarder.forward, lean=LEAN_PATH)
        if REMB_BITRATE is not None:
            cap_remb(echo.receiver, REMB_BITRATE)
        on_sender_report(echo.receiver, self._video_sender_report)
        if audio is not None:
            self._echo_audio(audio, offered_audio[0])
        self._open_recorder()
        output = EchoRtpSender(echo.sender, lean=LEAN_PATH)
        self._echo_sender = echo.sender
        pc.addTrack(output.track)
        self.forwarder.start_echo(output)
        on_keyframe_request(echo.sender, self.forwarder.on_viewer_keyframe_request)
        if processed is not None:
            processed.setCodecPreferences(vp8)
            self.processed = ProcessedTrack()
            processed.sender.replaceTrack(self.processed)
            processed.direction = "sendonly"
            on_keyframe_request(processed.sender, self._processed_keyframe_request)
        try:
            await pc.setLocalDescription(await pc.createAnswer())
        except (ValueError, AttributeError, KeyError, IndexError) as exc:
            raise protocol.ProtocolError(f"No answer could be made to the offer ({exc!r}).",
                                         self.id, "bad-offer") from exc
        self._listener.send(protocol.answer(self.id, pc.localDescription.sdp))
        self._watchdog = asyncio.ensure_future(self._watch_media())

    def _echo_audio(self, transceiver: RTCRtpTransceiver, offered: OfferedMedia) -> None:
        """Echo the microphone as the camera: Opus packets re-stamped, never decoded."""
        fmtp = offered.parameters.get("audio/opus", {})
        # the answer mirrors the offer: in-band FEC asked for, stereo as offered, and the
        # echo sends what the browser sends (sprop-stereo)
        wanted: dict[str, Any] = {k: fmtp[k] for k in (
            "minptime", "useinbandfec", "stereo", "sprop-stereo") if k in fmtp}
        set_answer_parameters(transceiver, "audio/opus", wanted)
        self._audio_channels = 2 if str(fmtp.get("sprop-stereo", "0")) == "1" else 1
        forwarder = MediaForwarder(self._audio_counters, OPUS)
        self.audio = AudioPackets(forwarder)
        tap_receiver(transceiver.receiver, self.audio, forwarder.forward, lean=LEAN_PATH)
        on_sender_report(transceiver.receiver, self._audio_sender_report)
        output = EchoRtpSender(transceiver.sender, "audio", lean=LEAN_PATH)
        transceiver.sender.replaceTrack(output.track)
        transceiver.direction = "sendrecv"
        forwarder.start_echo(output)

    def _video_sender_report(self, ssrc: int, ntp: int, rtp_timestamp: int) -> None:
        self.clocks["video"].update(ntp, rtp_timestamp)
        self.forwarder.sender_report(ssrc, ntp, rtp_timestamp)

    def _audio_sender_report(self, ssrc: int, ntp: int, rtp_timestamp: int) -> None:
        self.clocks["audio"].update(ntp, rtp_timestamp)
        if self.audio is not None:
            self.audio.forwarder.sender_report(ssrc, ntp, rtp_timestamp)

    async def _serve(self) -> None:
        assert self._pc is not None
        while True:
            item = await self._inbox.get()
            if isinstance(item, _End):
                self._set_state(item.state, item.code, item.message)
                return
            if isinstance(item, _Connected):
                self._on_connected()
            else:
                try:
                    await self._pc.addIceCandidate(item)
                except Exception as exc:
                    logger.warning("session %s: ICE candidate not added: %r", self.id, exc)
                    self._listener.send(protocol.error(
                        self.id, "ice-candidate", f"ICE candidate not added: {exc}."))

    def _on_connected(self) -> None:
        loop = asyncio.get_running_loop()
        self._connected_at = loop.time()
        self._set_state("connected")
        self.forwarder.request_keyframe()  # start the echo without waiting for one
        if LEAN_PATH and not self._fast_receive and self._pc is not None:
            transports = {id(t.receiver.transport): t.receiver.transport  # one when bundled
                          for t in self._pc.getTransceivers()}
            self._fast_receive = [FastReceive(t) for t in transports.values()]

    def _open_recorder(self) -> None:
        """Start recording before media flows, so the first keyframe is in the file."""
        if self._config.record_to is None:
            return
        try:
            self.start_recording(self._config.record_to)
        except RecorderError as exc:
            self._recording_error(str(exc))

    def _on_connection_state(self) -> None:
        assert self._pc is not None
        state = self._pc.connectionState
        if state == "connected":
            self._inbox.put_nowait(_Connected())
        elif state == "failed":
            if self._connected_at is None:
                self._not_connected("ICE failed")
            else:
                self.end("failed", "connection-lost", errors.CONNECTION_LOST)
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
                    self._not_connected(f"not connected in {config.connect_timeout:g} s")
                    return
                continue
            last_media = max(self.forwarder.last_packet_at or self._connected_at, grace_from)
            if now - last_media > config.media_timeout:
                self.end("closed", "no-media", errors.no_media(config.media_timeout))
                return

    def _not_connected(self, why: str) -> None:
        """Fail as ICE failed, saying how far ICE got (in the error and the kernel's log), so
        a failure that is not the usual "behind a NAT" one can be told apart."""
        try:
            seen = (ice_summary(self._pc, "kernel", "browser") if self._pc is not None
                    else "no peer connection")
        except Exception as exc:  # a diagnostic: never in the way of ending the session
            seen = f"ICE state unreadable ({exc!r})"
        logger.warning("session %s: %s: %s", self.id, why, seen)
        self.end("failed", "ice-failed", errors.ice_failed(seen))

    async def _teardown(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog
        self.forwarder.stop()
        if self.audio is not None:
            self.audio.forwarder.stop()
        self.set_decoding(frames=False, transform=None)
        if self.processed is not None:
            self.processed.stop()
        for fast in self._fast_receive:
            await fast.aclose()
        if self._pc is not None:
            await self._close_peer(self._pc)
        if self._stopping:
            await asyncio.gather(*self._stopping, return_exceptions=True)
        self.stop_recording()
        if self._finalizing:
            await asyncio.gather(*self._finalizing, return_exceptions=True)
        if self.live:
            self._set_state("closed")
        self._listener.session_finished(self)

    async def _close_peer(self, pc: RTCPeerConnection) -> None:
        """Close the peer, waiting at most ``_PEER_CLOSE_TIMEOUT``: the recording comes next.

        At interpreter exit asyncio cancels aiortc's own tasks too, and a close() aiortc
        started itself can then stall, leaving ours waiting on it. The close runs in this task
        (not a new one, so it still comes first when it can), bounded by ``asyncio.timeout``.
        """
        try:
            async with asyncio.timeout(_PEER_CLOSE_TIMEOUT):
                await pc.close()
        except TimeoutError:
            logger.warning("session %s: the peer connection did not close in %g s",
                           self.id, _PEER_CLOSE_TIMEOUT)
        except Exception:
            logger.exception("session %s: closing the peer connection failed", self.id)

    def _set_state(self, state: SessionState, code: ErrorCode | None = None,
                   message: str = "") -> None:
        self.state = state
        if code is not None:
            self._listener.session_error(self, code, message)
        self._listener.session_state_changed(self)


def _can_receive(media: OfferedMedia) -> bool:
    """Whether the view can receive processed video on this m-line (VP8, recvonly/sendrecv)."""
    return "video/vp8" in media.codecs and media.direction in ("recvonly", "sendrecv")


def _can_echo_audio(media: OfferedMedia) -> bool:
    """Whether the view sends and receives Opus on this m-line."""
    return "audio/opus" in media.codecs and media.direction == "sendrecv"


def _check_offer(sdp: str, session: str) -> list[OfferedMedia]:
    """Parse an offer and check that it sends and receives VP8 video."""
    try:
        media = offered_media(sdp)
    except ValueError as exc:
        raise protocol.ProtocolError(f"The offer's SDP could not be parsed ({exc}).",
                                     session, "bad-offer") from exc
    video = [m for m in media if m.kind == "video"]
    if not video:
        raise protocol.ProtocolError(
            "The offer has no video: the echo needs the camera's video track.", session,
            "bad-offer")
    first = video[0]
    if "video/vp8" not in first.codecs:
        raise protocol.ProtocolError(
            "The offer's video has no VP8 codec: the echo forwards VP8 only.", session,
            "bad-offer")
    if first.direction != "sendrecv":
        raise protocol.ProtocolError(
            f"The offer's video is {first.direction or 'without a direction'}: it must be "
            "sendrecv to be echoed.", session, "bad-offer")
    return media
