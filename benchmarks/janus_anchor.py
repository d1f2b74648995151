"""Janus's echotest, the C forwarding anchor for ``echo_bench.py``'s ``janus`` mode.

Janus (Debian's ``janus`` package) runs inside the benchmark's private namespace with only its
HTTP transport and its echotest plugin, on 127.0.0.1:8088. It skips loopback interfaces when
it gathers candidates, so the namespace gets a veth pair with 10.99.0.1 on one end, and Janus
is told to use only that interface (``ice_enforce_list``); packets to that local address still
travel over loopback. Clients speak Janus's HTTP API: create a session, attach the echotest,
send the (complete, non-trickle) offer with ``{"audio": false, "video": true}``, and read the
answer from the session's long poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

VETH, VETH_PEER, ADDRESS = "echo-veth0", "echo-veth1", "10.99.0.1"
URL = "http://127.0.0.1:8088/janus"
LIBS = Path("/usr/lib/x86_64-linux-gnu/janus")
_transaction = itertools.count()


def available() -> bool:
    echotest = LIBS / "plugins" / "libjanus_echotest.so"
    return shutil.which("janus") is not None and echotest.exists()


@contextlib.contextmanager
def veth() -> Iterator[None]:
    """The veth pair for the time of a run; removed after it, so that the namespace (which
    may be a test run's, shared with other tests) is left as it was found."""
    added = add_veth()
    try:
        yield
    finally:
        if added:
            subprocess.run(["ip", "link", "del", VETH], check=False)


def add_veth() -> bool:
    """Inside the namespace: a veth pair, IPv6 off, ``ADDRESS`` on one end; False if it
    was there already."""
    if subprocess.run(["ip", "link", "show", VETH], capture_output=True).returncode == 0:
        return False  # (/sys/class/net shows the host's interfaces, not this namespace's)
    for command in (
            ["ip", "link", "add", VETH, "type", "veth", "peer", "name", VETH_PEER],
            ["sysctl", "-qw", f"net.ipv6.conf.{VETH}.disable_ipv6=1"],
            ["sysctl", "-qw", f"net.ipv6.conf.{VETH_PEER}.disable_ipv6=1"],
            ["ip", "addr", "add", f"{ADDRESS}/24", "dev", VETH],
            ["ip", "link", "set", VETH, "up"],
            ["ip", "link", "set", VETH_PEER, "up"]):
        subprocess.run(command, check=True)
    return True


def write_config(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    disabled_plugins = ",".join(sorted(
        p.name for p in (LIBS / "plugins").glob("libjanus_*.so") if "echotest" not in p.name))
    disabled_transports = ",".join(sorted(
        p.name for p in (LIBS / "transports").glob("libjanus_*.so") if "http" not in p.name))
    (folder / "janus.jcfg").write_text(f"""general: {{
  configs_folder = "{folder}"
  plugins_folder = "{LIBS / 'plugins'}"
  transports_folder = "{LIBS / 'transports'}"
  events_folder = "{LIBS / 'events'}"
  loggers_folder = "{LIBS / 'loggers'}"
  debug_level = 2
}}
media: {{ }}
nat: {{
  ice_enforce_list = "{VETH}"
  ignore_mdns = true
}}
plugins: {{ disable = "{disabled_plugins}" }}
transports: {{ disable = "{disabled_transports}" }}
events: {{ broadcast = false }}
loggers: {{ disable = "libjanus_jsonlog.so" }}
""")
    (folder / "janus.transport.http.jcfg").write_text("""general: {
  base_path = "/janus"
  http = true
  port = 8088
  ip = "127.0.0.1"
  https = false
}
admin: { admin_http = false }
""")
    (folder / "janus.plugin.echotest.jcfg").write_text("general: { }\n")
    return folder


def start(folder: Path, log: Path) -> subprocess.Popen[bytes]:
    """Start Janus with its config in ``folder`` (the veth pair up); return once its HTTP
    API answers."""
    write_config(folder)
    with log.open("wb") as out:
        process = subprocess.Popen(["janus", "-F", str(folder), "--disable-colors"],
                                   stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 20
    while True:
        try:
            with urllib.request.urlopen(f"{URL}/info", timeout=1):
                return process
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError("Janus did not start:\n" + log.read_text()[-2000:]) from None
            time.sleep(0.1)


class JanusSession:
    """One echotest peer's signaling with Janus over HTTP (tornado's client)."""

    def __init__(self) -> None:
        from tornado.httpclient import AsyncHTTPClient

        self.http = AsyncHTTPClient()
        self.path = ""
        self._keepalive: asyncio.Task[None] | None = None

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        body = {**body, "transaction": str(next(_transaction))}
        response = await self.http.fetch(f"{URL}{path}", method="POST", body=json.dumps(body),
                                         request_timeout=30)
        reply: dict[str, Any] = json.loads(response.body)
        if reply.get("janus") == "error":
            raise RuntimeError(f"Janus: {reply}")
        return reply

    async def exchange(self, sdp: str) -> str:
        """Send the offer to a new echotest handle; return Janus's answer."""
        session = (await self._post("", {"janus": "create"}))["data"]["id"]
        self.path = f"/{session}"
        handle = (await self._post(self.path, {"janus": "attach",
                                               "plugin": "janus.plugin.echotest"}))["data"]["id"]
        await self._post(f"{self.path}/{handle}", {
            "janus": "message", "body": {"audio": False, "video": True},
            "jsep": {"type": "offer", "sdp": sdp}})
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            response = await self.http.fetch(f"{URL}{self.path}?maxev=10", request_timeout=35)
            events = json.loads(response.body)
            for event in events if isinstance(events, list) else [events]:
                jsep = event.get("jsep")
                if jsep and jsep.get("type") == "answer":
                    self._keepalive = asyncio.ensure_future(self._keep_alive())
                    answer: str = jsep["sdp"]
                    return answer
        raise RuntimeError("Janus sent no answer in 20 s")

    async def _keep_alive(self) -> None:
        while True:
            await asyncio.sleep(15)
            await self._post(self.path, {"janus": "keepalive"})

    async def close(self) -> None:
        if self._keepalive is not None:
            self._keepalive.cancel()
        if self.path:
            await self._post(self.path, {"janus": "destroy"})
