"""Error codes and the kernel side's user-facing sentences, in one place.

Every error the kernel sends to a view carries a machine-readable ``code`` next to its
``message`` (see :mod:`echo_widget.protocol`), so that neither side recognizes an error by
its text. The view's own sentences (camera, secure context, ...) live in ``js/src/messages.js``.
"""

from __future__ import annotations

from typing import Literal

ErrorCode = Literal[
    "bad-message",        # malformed JSON, unknown type, missing field
    "unknown-session",    # a message for a session the kernel does not know
    "session-ended",      # an offer for a session that has already ended
    "duplicate-offer",    # a second offer on a live session
    "too-many-sessions",  # max_sessions reached
    "bad-offer",          # the SDP can't be parsed or has no sendrecv VP8 video
    "no-loop",            # no running asyncio loop to host the session
    "ice-failed",         # never connected: TURN needed
    "connection-lost",    # connected, then the connection failed
    "no-media",           # a connected browser stopped sending
    "ice-candidate",      # a remote candidate was rejected
    "recording",          # the recording could not start or stopped
    "transform",          # the user's transform failed on a frame (skipped)
    "view-timeout",       # displayed, but no view started in the browser
    "internal",           # a bug: an unexpected exception
]

ICE_FAILED = (
    "Could not connect the browser to the kernel (ICE failed). The kernel is probably on "
    "another machine or behind a NAT/firewall: configure a TURN server that both can reach, "
    "e.g. EchoWidget(ice_servers=[{'urls': 'turn:turn.example.org:3478', 'username': 'u', "
    "'credential': 'p'}]) or the ECHO_WIDGET_ICE_SERVERS environment variable."
)


def ice_failed(seen: str) -> str:
    """:data:`ICE_FAILED`, then how far ICE got on the kernel's side (``seen``): which
    candidates each side had and how the checks went tell a NAT from a proxy that dropped
    the browser's candidates, or a container that offers only its internal address."""
    return f"{ICE_FAILED} What the kernel saw: {seen}."


CONNECTION_LOST = "The connection to the browser was lost."
SESSION_ENDED = "This session has ended; reload the view to start a new one."
DUPLICATE_OFFER = "This session already has an offer; open a new session to reconnect."
NO_LOOP = "EchoWidget needs a running asyncio event loop (as in a Jupyter kernel)."
VIEW_TIMEOUT = (
    "The widget was displayed, but no view of it started in the browser within {timeout:g} s: "
    "its JavaScript did not load or run. Reload the page; make sure the Jupyter server's "
    "environment has anywidget (`pip install anywidget`, then restart Jupyter) and that the "
    "front end supports widgets (JupyterLab 4, Notebook 7); the browser console "
    "(F12) shows the error."
)


def too_many_sessions(limit: int) -> str:
    """The reply to an offer past ``max_sessions``."""
    return (f"This widget already has {limit} live sessions (views). Close some views, or make "
            "it with EchoWidget(max_sessions=...).")


def unknown_session(session: str) -> str:
    """The reply to a message for a session the kernel does not know."""
    return f"Unknown or ended session {session[:40]!r}."


def no_media(seconds: float) -> str:
    """Why a session whose browser stopped sending was closed."""
    return (f"The browser sent no video for {seconds:g} s (tab closed or network lost), so the "
            "session was closed.")


def internal(exc: BaseException) -> str:
    """An unexpected failure, named so that it can be reported."""
    return f"The kernel could not handle this message: {exc!r}"
