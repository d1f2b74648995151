"""The signaling protocol: JSON over the widget's custom messages.

browser -> kernel::

    {"type": "offer", "session": S, "sdp": str}
    {"type": "ice", "session": S, "candidate": {"candidate": str, "sdpMid": str | None,
                                                "sdpMLineIndex": int | None} | None}
    {"type": "bye", "session": S}
    {"type": "hello", "session": S}        a view started (S: its first session id)
    {"type": "error", "session": S, "message": str, "code"?: str}
                                           a problem the view met (camera, secure context, ICE)
    {"type": "setup", "session": S, "phases": {phase: ms, ...}, "elapsed"?: ms,
     "started_at"?: epoch ms}
                                           how long this session took to its first echo frame

kernel -> browser::

    {"type": "answer", "session": S, "sdp": str}
    {"type": "overlay", "session": S, "timestamp": int | None, "shapes": [shape, ...]}
                                           shapes over the echo frame with that RTP timestamp
    {"type": "error", "session": S | None, "message": str, "code": str, "fatal": bool}
                                           fatal: the session has ended

Every message carries ``session``, an id the JS view makes: each view is its
own session with its own peer connection. An error's ``code`` says what it is
(:data:`~echo_widget.errors.ErrorCode` from the kernel; ``camera-denied``, ... from a
view), so that no side matches on the ``message`` text, which is for people.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import ErrorCode

if TYPE_CHECKING:
    from aiortc import RTCIceCandidate

MAX_SESSION_ID_LENGTH = 128
MAX_SDP_LENGTH = 100_000
MAX_CANDIDATE_LENGTH = 1_000
MAX_ERROR_LENGTH = 1_000
MAX_CODE_LENGTH = 64
SETUP_PHASES = ("camera", "signaling", "connect", "first_frame")
"""What a view measures, in order: the camera opening (a session that reuses an open camera
has none), offer to answer applied, answer to connected (ICE and DTLS), connected to the first
echoed frame shown."""
MAX_PHASE_MS = 600_000.0


class ProtocolError(ValueError):
    """A message that can't be acted on; ``str(error)`` is the reply's message."""

    def __init__(self, message: str, session: str | None = None,
                 code: ErrorCode = "bad-message") -> None:
        super().__init__(message)
        self.session = session
        self.code: ErrorCode = code


@dataclass(frozen=True)
class Offer:
    session: str
    sdp: str


@dataclass(frozen=True)
class Ice:
    session: str
    candidate: RTCIceCandidate | None
    """None: the browser has no more candidates."""


@dataclass(frozen=True)
class Bye:
    session: str


@dataclass(frozen=True)
class Hello:
    session: str


@dataclass(frozen=True)
class BrowserError:
    session: str
    message: str
    code: str | None = None
    """What the view met (``camera-denied``, ``ice-failed``, ...); None from older views."""


@dataclass(frozen=True)
class Setup:
    session: str
    phases: dict[str, float]
    """Milliseconds per phase of :data:`SETUP_PHASES` the view measured."""
    started_at: float | None = None
    """When the view started, in ms since the epoch (sent with its first session only)."""
    elapsed: float | None = None
    """From the first phase's start to the first echoed frame (phases may overlap)."""


Message = Offer | Ice | Bye | Hello | BrowserError | Setup


def parse_message(content: object) -> Message:
    """Check a browser message and turn it into a :data:`Message`, or raise ProtocolError."""
    if not isinstance(content, dict):
        raise ProtocolError(f"A message must be a JSON object, not {type(content).__name__}.")
    session = content.get("session")
    if not isinstance(session, str) or not 0 < len(session) <= MAX_SESSION_ID_LENGTH:
        raise ProtocolError(
            f"A message needs a 'session' string of 1 to {MAX_SESSION_ID_LENGTH} characters."
        )
    kind = content.get("type")
    if kind == "offer":
        sdp = content.get("sdp")
        if not isinstance(sdp, str) or not sdp.strip():
            raise ProtocolError("An offer needs an 'sdp' string.", session)
        if len(sdp) > MAX_SDP_LENGTH:
            raise ProtocolError(f"The offer's SDP is longer than {MAX_SDP_LENGTH} characters.",
                                session)
        return Offer(session, sdp)
    if kind == "ice":
        if "candidate" not in content:
            raise ProtocolError("An ice message needs a 'candidate' (null when done).", session)
        return Ice(session, _parse_candidate(content["candidate"], session))
    if kind == "bye":
        return Bye(session)
    if kind == "hello":
        return Hello(session)
    if kind == "error":
        message = content.get("message")
        if not isinstance(message, str) or not message.strip():
            raise ProtocolError("An error message needs a 'message' string.", session)
        code = content.get("code")
        if code is not None and (not isinstance(code, str)
                                 or not 0 < len(code) <= MAX_CODE_LENGTH):
            raise ProtocolError(f"An error's 'code' must be a string of 1 to {MAX_CODE_LENGTH} "
                                "characters.", session)
        return BrowserError(session, message[:MAX_ERROR_LENGTH], code)
    if kind == "setup":
        return _parse_setup(content, session)
    raise ProtocolError(f"Unknown message type {str(kind)[:40]!r}: expected offer, ice, bye, "
                        "hello, error or setup.", session)


def _is_ms(value: object, limit: float) -> bool:
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and 0 <= value <= limit)


def _parse_setup(content: dict[str, Any], session: str) -> Setup:
    phases = content.get("phases")
    if not isinstance(phases, dict) or not phases or not set(phases) <= set(SETUP_PHASES):
        raise ProtocolError("A setup message needs 'phases': some of "
                            f"{', '.join(SETUP_PHASES)}.", session)
    if not all(_is_ms(v, MAX_PHASE_MS) for v in phases.values()):
        raise ProtocolError(f"Setup phases must be numbers of ms from 0 to {MAX_PHASE_MS:g}.",
                            session)
    started_at = content.get("started_at")
    if started_at is not None and not _is_ms(started_at, 1e14):
        raise ProtocolError("A setup's 'started_at' must be ms since the epoch.", session)
    elapsed = content.get("elapsed")
    if elapsed is not None and not _is_ms(elapsed, MAX_PHASE_MS):
        raise ProtocolError(f"A setup's 'elapsed' must be ms from 0 to {MAX_PHASE_MS:g}.",
                            session)
    ordered = {name: float(phases[name]) for name in SETUP_PHASES if name in phases}
    return Setup(session, ordered, None if started_at is None else float(started_at),
                 None if elapsed is None else float(elapsed))


def _parse_candidate(value: Any, session: str) -> RTCIceCandidate | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ProtocolError("'candidate' must be an object or null.", session)
    line = value.get("candidate")
    mid = value.get("sdpMid")
    index = value.get("sdpMLineIndex")
    if not isinstance(line, str) or len(line) > MAX_CANDIDATE_LENGTH:
        raise ProtocolError("'candidate.candidate' must be a candidate string.", session)
    if mid is not None and not isinstance(mid, str):
        raise ProtocolError("'candidate.sdpMid' must be a string or null.", session)
    if index is not None and (not isinstance(index, int) or isinstance(index, bool)
                              or index < 0):
        raise ProtocolError("'candidate.sdpMLineIndex' must be a non-negative integer or null.",
                            session)
    if not line:
        return None  # browsers signal end-of-candidates with an empty candidate string
    if mid is None and index is None:
        raise ProtocolError("A candidate needs an sdpMid or an sdpMLineIndex.", session)
    from ._aiortc_compat import parse_candidate  # imported with the session before an offer

    try:
        candidate = parse_candidate(line)
    except Exception as exc:
        raise ProtocolError(f"Could not parse ICE candidate {line[:80]!r}.", session) from exc
    candidate.sdpMid = mid
    candidate.sdpMLineIndex = index
    return candidate


def answer(session: str, sdp: str) -> dict[str, Any]:
    """The kernel's answer to an offer."""
    return {"type": "answer", "session": session, "sdp": sdp}


def overlay(session: str, timestamp: int | None, shapes: list[dict[str, Any]]) -> dict[str, Any]:
    """Shapes to draw over the echo frame with RTP timestamp ``timestamp`` (None: now)."""
    return {"type": "overlay", "session": session, "timestamp": timestamp, "shapes": shapes}


def error(session: str | None, code: ErrorCode, message: str, *,
          fatal: bool = False) -> dict[str, Any]:
    """An error reply; ``session`` is None when the message named no usable session.

    ``fatal``: the session has ended (the view shows it as failed).
    """
    return {"type": "error", "session": session, "code": code, "message": message,
            "fatal": fatal}
