"""A remote kernel's setup on loopback: both peers forced through a TURN server (coturn)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser

from .conftest import (
    Server,
    assert_playing,
    kernel_json,
    new_page,
    open_and_run_all,
    screenshot,
    wait_for_status,
    write_notebook,
)

pytestmark = pytest.mark.usefixtures("peer_network")

TURN_USER, TURN_PASSWORD = "echo", "test-secret"


def free_udp_and_tcp_port() -> int:
    """A port free for UDP and for TCP on 127.0.0.1 (coturn listens on both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port: int = udp.getsockname()[1]
            with socket.socket() as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise AssertionError("no port free for both UDP and TCP")


def relay_ports(count: int = 100) -> tuple[int, int]:
    """A relay port range outside the ephemeral range, so no client socket can hold one."""
    low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    if high + count < 65536:
        return high + 1, high + count
    assert low - count > 1024, f"no room for relay ports beside the ephemeral {low}-{high}"
    return low - count, low - 1


@pytest.fixture(scope="module")
def coturn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """coturn on 127.0.0.1:3478 (inside the test's namespace) with one long-term user."""
    binary = shutil.which("turnserver")
    assert binary, "coturn is needed for the TURN test (apt install coturn)"
    port = free_udp_and_tcp_port()
    low, high = relay_ports()
    process = subprocess.Popen(
        [binary, "--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1", f"--listening-port={port}",
         f"--min-port={low}", f"--max-port={high}", "--lt-cred-mech",
         f"--user={TURN_USER}:{TURN_PASSWORD}", "--realm=echo-widget.test",
         "--allow-loopback-peers", "--no-tls", "--no-dtls", "--no-cli", "--fingerprint",
         "--no-software-attribute",
         f"--pidfile={tmp_path_factory.mktemp('coturn') / 'turnserver.pid'}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    bound = f"0100007F:{port:04X}"  # 127.0.0.1:port, as /proc/net/udp lists it
    deadline = time.monotonic() + 10
    while bound not in Path("/proc/net/udp").read_text():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise AssertionError("coturn did not start listening")
        time.sleep(0.05)
    yield f"turn:127.0.0.1:{port}"
    process.terminate()
    process.wait(10)


def test_the_echo_plays_through_a_turn_relay(lab: Server, browser: Browser, coturn: str) -> None:
    servers = [{"urls": coturn, "username": TURN_USER, "credential": TURN_PASSWORD}]
    notebook = write_notebook(lab, "turn.ipynb", [
        "from echo_widget import EchoWidget\n"
        f"w = EchoWidget(ice_servers={servers!r}, ice_transport_policy='relay')\nw"])
    page = new_page(browser)
    open_and_run_all(page, lab, notebook)
    wait_for_status(page, "connected", timeout=45_000)
    assert_playing(page)
    page.wait_for_function("() => document.querySelector('.echo-widget').dataset.candidates",
                           timeout=10_000)
    candidates = page.locator(".echo-widget").get_attribute("data-candidates")
    assert candidates == "relay/relay", f"selected candidate pair: {candidates}"
    assert "via relay" in page.locator(".echo-widget-status").inner_text()
    kernel = lab.kernel(notebook)
    state = kernel_json(
        kernel, "import json; print(json.dumps([w.status, w.stats['frames_forwarded']]))")
    assert state[0] == "connected"
    assert state[1] > 0
    screenshot(page, "jupyterlab-turn-relay")
    kernel_json(kernel, "await w.aclose()\nimport json; print(json.dumps(w.status))")
    page.context.close()


def test_relay_without_a_turn_server_is_refused() -> None:
    from echo_widget import EchoWidget

    with pytest.raises(ValueError, match="needs a TURN server"):
        EchoWidget(ice_servers=[], ice_transport_policy="relay")
    with pytest.raises(Exception, match="relay"):
        EchoWidget(ice_servers=[{"urls": "turn:x:3478"}], ice_transport_policy="sometimes")
