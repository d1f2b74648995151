"""Settings from the user and the environment: checked, then turned into aiortc's types.

* ICE servers: ``EchoWidget(ice_servers=...)`` or ``$ECHO_WIDGET_ICE_SERVERS`` (JSON), a list
  of RTCIceServer dicts ``{"urls", "username"?, "credential"?, "credentialType"?}``;
* the ICE transport policy: ``"all"`` or ``"relay"``, or ``$ECHO_WIDGET_ICE_TRANSPORT_POLICY``;
* camera constraints: ``{"width", "height", "frameRate", "deviceId", "facingMode"}``.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aiortc import RTCIceServer

ICE_SERVERS_ENV = "ECHO_WIDGET_ICE_SERVERS"
ICE_POLICY_ENV = "ECHO_WIDGET_ICE_TRANSPORT_POLICY"
ICE_POLICIES = ("all", "relay")
ICE_SERVER_KEYS = frozenset({"urls", "username", "credential", "credentialType"})
DEFAULT_VIDEO: dict[str, Any] = {"width": 640, "height": 480, "frameRate": 30}
VIDEO_KEYS = frozenset({"width", "height", "frameRate", "deviceId", "facingMode"})
MAX_VIDEO_SIDE = 8192


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


def ice_policy_from_env() -> str:
    """``$ECHO_WIDGET_ICE_TRANSPORT_POLICY``, or ``"all"``; checked."""
    policy = os.environ.get(ICE_POLICY_ENV, "").strip() or "all"
    if policy not in ICE_POLICIES:
        raise ValueError(f"{ICE_POLICY_ENV} must be 'all' or 'relay', not {policy!r}")
    return policy


def check_ice_servers(value: object) -> list[dict[str, Any]]:
    """Check a list of RTCIceServer dicts; return a copy."""
    if not isinstance(value, list):
        raise ValueError("ice_servers must be a list of {'urls': ..., 'username': ..., "
                         "'credential': ...} dicts")
    for server in value:
        urls = server_urls(server) if isinstance(server, dict) else None
        if not urls or not all(isinstance(u, str) and u.split(":", 1)[0] in (
                "stun", "turn", "turns") for u in urls):
            raise ValueError(f"ice server {server!r} needs 'urls': a stun:, turn: or turns: URL "
                             "or a list of them")
        assert isinstance(server, dict)
        extra = set(server) - ICE_SERVER_KEYS
        if extra:
            raise ValueError(f"ice server {server!r} has unknown keys {sorted(extra)}")
        for key in ("username", "credential", "credentialType"):
            if server.get(key) is not None and not isinstance(server[key], str):
                raise ValueError(f"ice server {server!r}: {key!r} must be a string")
    return [dict(server) for server in value]


def check_relay_policy(policy: str, servers: list[dict[str, Any]]) -> None:
    """``"relay"`` needs a TURN server to relay through."""
    if policy == "relay" and not any(
            u.startswith("turn") for server in servers for u in server_urls(server)):
        raise ValueError("ice_transport_policy='relay' needs a TURN server in ice_servers")


def server_urls(server: dict[str, Any]) -> list[Any]:
    """A server's ``urls`` as a list (it may be one string)."""
    urls = server.get("urls")
    if isinstance(urls, str):
        return [urls]
    return list(urls) if isinstance(urls, list) else []


def to_rtc_ice_servers(servers: list[dict[str, Any]]) -> list[RTCIceServer]:
    """aiortc's ``RTCIceServer`` objects for checked server dicts, every field kept."""
    from aiortc import RTCIceServer

    return [RTCIceServer(urls=s["urls"], username=s.get("username"),
                         credential=s.get("credential"),
                         credentialType=s.get("credentialType") or "password")
            for s in servers]


def check_video(value: object) -> dict[str, Any]:
    """Check camera constraints; return a copy."""
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
                                   or not 0 < number <= MAX_VIDEO_SIDE):
            raise ValueError(f"video[{key!r}] must be a positive number, not {number!r}")
    for key in ("deviceId", "facingMode"):
        if value.get(key) is not None and not isinstance(value[key], str):
            raise ValueError(f"video[{key!r}] must be a string")
    return dict(value)
