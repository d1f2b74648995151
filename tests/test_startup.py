"""A fresh kernel shows the widget before it imports the media stack (aiortc, PyAV)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("aiortc", "av", "numpy", "tornado.web", "echo_widget.session")
"""Modules ``import echo_widget`` leaves out: the media stack, numpy, the pop-out server."""


def _run(code: str) -> dict[str, object]:
    """Run ``code`` in a fresh interpreter; its last printed line is parsed as JSON."""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, cwd=ROOT, check=False)
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_importing_echo_widget_leaves_the_media_stack_out() -> None:
    result = _run(f"""
import json, sys
import echo_widget
from echo_widget import EchoWidget
w = EchoWidget()
print(json.dumps({{"imported": [m for m in {HEAVY!r} if m in sys.modules]}}))
""")
    assert result == {"imported": []}


def test_a_shown_widget_imports_the_media_stack_on_the_loop_right_after() -> None:
    result = _run(f"""
import asyncio, json, sys
from echo_widget import EchoWidget

async def main():
    w = EchoWidget()
    w._repr_mimebundle_()  # as the kernel shows it
    shown = [m for m in {HEAVY!r} if m in sys.modules]
    await asyncio.sleep(0)
    after = [m for m in {HEAVY!r} if m in sys.modules]
    await w.aclose()
    return {{"shown": shown, "after": after}}

print(json.dumps(asyncio.run(main())))
""")
    assert result["shown"] == []
    assert result["after"] == ["aiortc", "av", "echo_widget.session"]


def test_an_offer_before_the_media_stack_is_imported_is_answered() -> None:
    """An offer that comes first (the widget never shown here) imports what it needs."""
    result = _run("""
import asyncio, json, sys
from echo_widget import EchoWidget

async def main():
    w = EchoWidget(ice_servers=[])
    sent = []
    w.send = lambda content, buffers=None: sent.append(content)
    before = "echo_widget.session" in sys.modules
    from aiortc import RTCConfiguration, RTCPeerConnection
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("video", direction="sendrecv")
    await pc.setLocalDescription(await pc.createOffer())
    w._handle_custom_msg({"type": "offer", "session": "s1",
                          "sdp": pc.localDescription.sdp}, [])
    for _ in range(200):
        if any(m.get("type") == "answer" for m in sent):
            break
        await asyncio.sleep(0.02)
    await pc.close()
    await w.aclose()
    return {"before": before, "kinds": sorted({m.get("type") for m in sent})}

print(json.dumps(asyncio.run(main())))
""")
    assert result["before"] is False
    assert "answer" in result["kinds"], result
    assert "error" not in result["kinds"], result


def test_a_media_stack_that_does_not_import_is_said_in_the_widget() -> None:
    """An aiortc this version does not support fails the import after display: said, no crash."""
    result = _run("""
import asyncio, json
from echo_widget import EchoWidget, hub

hub.MEDIA_STACK = "echo_widget._not_a_module"  # stands for a failing import

async def main():
    unhandled = []
    asyncio.get_running_loop().set_exception_handler(lambda loop, context: unhandled.append(
        repr(context.get("exception"))))
    w = EchoWidget()
    w._repr_mimebundle_()
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    state = {"error": w.error, "code": w._error_code, "unhandled": unhandled}
    await w.aclose()
    return state

print(json.dumps(asyncio.run(main())))
""")
    assert result["code"] == "internal"
    assert "echo-widget could not start" in str(result["error"])
    assert "_not_a_module" in str(result["error"])
    assert result["unhandled"] == []
