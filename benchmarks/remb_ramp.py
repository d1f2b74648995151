"""What Chromium sends in the first seconds of an echo: with the kernel's fixed REMB, and with
aiortc's own delay-based estimate, in JupyterLab with Debian's Chromium and its fake camera.

    python benchmarks/remb_ramp.py                 # both, 10 s each
    python benchmarks/remb_ramp.py --seconds 5 --variants cap

The cell is ``w = EchoWidget(); w`` (for ``aiortc``, after ``echo_widget.session.REMB_BITRATE =
None``). Every half second the page's peer connection is asked (``getStats()``) for the
browser's bandwidth estimate (``availableOutgoingBitrate``, from the kernel's REMB), the
encoder's target bitrate and the frame width it sends. Everything runs in a private
loopback-only network namespace (re-executed through tools/netns-run), ``iceServers=[]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CELLS = {
    "cap": "from echo_widget import EchoWidget\nw = EchoWidget()\nw",
    "aiortc": ("import echo_widget.session\necho_widget.session.REMB_BITRATE = None\n"
               "from echo_widget import EchoWidget\nw = EchoWidget()\nw"),
}


def ramp(browser: Any, server: Any, variant: str, seconds: float) -> list[tuple[float, Any]]:
    """(seconds after the cell ran, what the page sends) every half second."""
    from tests.ui.conftest import KEEP_PEERS, SENDING, new_page, open_and_run_all, write_notebook

    notebook = write_notebook(server, f"ramp-{variant}.ipynb", [CELLS[variant]])
    page = new_page(browser, init_script=KEEP_PEERS)
    open_and_run_all(page, server, notebook)
    start = time.monotonic()
    page.wait_for_function("() => window.__peers.length > 0", timeout=30_000)
    samples = []
    while (now := time.monotonic() - start) < seconds:
        samples.append((now, page.evaluate(SENDING)))
        time.sleep(0.5)
    page.context.close()
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--variants", default="cap,aiortc", help="cap, aiortc or both")
    args = parser.parse_args()
    if os.environ.get("ECHO_NETNS") != "1":  # the browser's peer only on a private loopback
        os.execv(str(ROOT / "tools" / "netns-run"),
                 [str(ROOT / "tools" / "netns-run"), sys.executable, *sys.argv])
    sys.path.insert(0, str(ROOT))
    from playwright.sync_api import sync_playwright

    from tests.ui.conftest import BASE_ARGS, CHROMIUM, GRANT_CAMERA, start_server, stop_server

    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as playwright:
        server = start_server("lab", Path(tmp))
        browser = playwright.chromium.launch(executable_path=CHROMIUM,
                                             args=[*BASE_ARGS, GRANT_CAMERA])
        try:
            for variant in args.variants.split(","):
                print(f"\n{variant}: s after the cell | estimate kb/s | target kb/s | width")
                for at, sent in ramp(browser, server, variant, args.seconds):
                    estimate, target = sent.get("available"), sent.get("target")
                    print(f"{at:5.1f} | {estimate / 1000 if estimate else '-'} | "
                          f"{target / 1000 if target else '-'} | {sent.get('width', '-')}",
                          flush=True)
        finally:
            browser.close()
            stop_server(server.process)


if __name__ == "__main__":
    main()
