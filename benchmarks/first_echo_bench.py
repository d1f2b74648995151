"""First echo: from running a cell to the first echoed frame, by phase, in JupyterLab with
Debian's Chromium and its fake camera.

    python benchmarks/first_echo_bench.py              # 5 warm-kernel and 5 fresh-kernel runs
    python benchmarks/first_echo_bench.py --runs 3 --json first-echo.json

The timed cell is ``t0 = time.time(); from echo_widget import EchoWidget; w = EchoWidget(); w``.
A warm run re-runs it in a kernel that imported echo_widget before; a fresh run restarts the
kernel first. Each kind runs in two pages, alternately: as users get it (the camera already
allowed, so the view negotiates while the camera opens), and with the Permissions API made
to say "prompt", so the view opens the camera first and negotiates after (as before
2026-12-02, and as it still does when the browser may ask the user). A third page's cell
imports the media stack (aiortc, PyAV) before the widget, as ``import echo_widget`` did before
2026-12-02; a shown widget now imports it on the kernel's loop while the view starts.

Phases: ``kernel`` (cell start to the widget displayed: on a fresh kernel mostly
the import), then the view's own measure, as in ``stats["setup_ms"]``: ``view`` (display to
the view asking for the camera), ``camera``, ``signaling`` (offer to answer applied),
``connect`` (ICE and DTLS), ``first_frame`` (connected to the first echoed frame), and
``total`` (cell start to the first echoed frame). Everything runs in a private loopback-only
network namespace (re-executed through tools/netns-run), ``iceServers=[]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PHASES = ("kernel", "view", "camera", "signaling", "connect", "first_frame", "total")
CELL = ("import time\nt0 = time.time()\nfrom echo_widget import EchoWidget\n"
        "w = EchoWidget()\nw")
EAGER_CELL = CELL.replace("from echo_widget import",
                          "import echo_widget.session\nfrom echo_widget import")
"""The media stack (aiortc, PyAV) imported before the widget is shown, as before 2026-12-02."""
READ = ("import json\nsetup = w.hub.snapshot()['setup_ms']\n"
        "print(json.dumps({'t0': t0} if setup is None or w.hub.displayed_at is None else "
        "{'t0': t0, 'kernel': round((w.hub.displayed_at - t0) * 1000, 1), **setup}))")
RESTART = "() => window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.restart()"
PROMPT = """(() => {
  const query = navigator.permissions.query.bind(navigator.permissions);
  navigator.permissions.query = (what) =>
    what && what.name === "camera" ? Promise.resolve({ state: "prompt" }) : query(what);
})();"""
VARIANTS = (("", None, CELL), (", camera first", PROMPT, CELL),
            (", media stack first", None, EAGER_CELL))
KINDS = tuple(kind + variant for kind in ("warm", "fresh") for variant, _, _ in VARIANTS)


def one_run(page: Any, server: Any, notebook: str, *, fresh: bool) -> dict[str, float]:
    """Run the cell again (after a kernel restart if ``fresh``) and read its phases."""
    from tests.ui.conftest import kernel_json, run_all

    before = None if fresh else _read(server, notebook).get("t0")

    if fresh:
        page.evaluate(RESTART)
        page.wait_for_function(
            "() => window.jupyterapp.shell.currentWidget.sessionContext.session.kernel"
            ".status === 'idle'", timeout=60_000)
    run_all(page)
    kernel = server.kernel(notebook)
    deadline = time.monotonic() + 60
    while True:
        try:
            phases = kernel_json(kernel, READ, timeout=30)
        except Exception:  # the cell has not defined w or t0 yet
            phases = None
        if phases is not None and phases["t0"] != before and "first_frame" in phases:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"no first echoed frame within 60 s: {phases}; "
                               f"{_what_went_wrong(page, kernel)}")
        time.sleep(0.1)
    kernel_json(kernel, "await w.aclose()\nprint('{}')")  # one live echo at a time
    kernel.stop_channels()
    phases["total"] = round(phases["total"] + phases["kernel"], 1)
    return {name: float(phases[name]) for name in PHASES if name in phases}


WHY = ("import json\nprint(json.dumps({'status': w.status, 'error': w.error, "
       "'sessions': w.hub.sessions_started, 'views': w.hub.views_started}))")


def _what_went_wrong(page: Any, kernel: Any) -> str:
    """The widget's status and error line, its sessions and views, and a screenshot's path."""
    from tests.ui.conftest import kernel_json

    try:
        said = kernel_json(kernel, WHY, timeout=30)
    except Exception as exc:
        said = {"unread": repr(exc)}
    shot = Path(tempfile.gettempdir()) / f"first-echo-timeout-{os.getpid()}.png"
    try:
        page.screenshot(path=str(shot), full_page=True)
    except Exception as exc:
        return f"widget: {said}; no screenshot ({exc!r})"
    return f"widget: {said}; screenshot: {shot}"


def _read(server: Any, notebook: str) -> dict[str, Any]:
    from tests.ui.conftest import kernel_json

    kernel = server.kernel(notebook)
    try:
        result: dict[str, Any] = kernel_json(kernel, READ, timeout=30)
        return result
    finally:
        kernel.stop_channels()


def print_table(results: dict[str, list[dict[str, float]]]) -> None:
    kinds = list(results)
    print("| phase | " + " | ".join(f"{kind} p50 ms (runs)" for kind in kinds) + " |")
    print("|---|" + "---|" * len(kinds))
    for phase in PHASES:
        cells = []
        for kind in kinds:
            values = [run[phase] for run in results[kind] if phase in run]
            runs = ", ".join(f"{v:.0f}" for v in values)
            cells.append(f"{statistics.median(values):.0f} ({runs})" if values else "-")
        print(f"| {phase} | " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="runs of each kind")
    parser.add_argument("--json", type=Path, help="also write every run's phases here")
    args = parser.parse_args()
    if os.environ.get("ECHO_NETNS") != "1":  # the browser's peer only on a private loopback
        os.execv(str(ROOT / "tools" / "netns-run"),
                 [str(ROOT / "tools" / "netns-run"), sys.executable, *sys.argv])
    sys.path.insert(0, str(ROOT))
    from playwright.sync_api import sync_playwright

    from tests.ui.conftest import (
        BASE_ARGS,
        CHROMIUM,
        GRANT_CAMERA,
        new_page,
        open_and_run_all,
        start_server,
        stop_server,
        write_notebook,
    )

    results: dict[str, list[dict[str, float]]] = {kind: [] for kind in KINDS}
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as playwright:
        server = start_server("lab", Path(tmp))
        browser = playwright.chromium.launch(executable_path=CHROMIUM,
                                             args=[*BASE_ARGS, GRANT_CAMERA])
        try:
            pages = {}
            for variant, script, cell in VARIANTS:
                notebook = write_notebook(server, f"first-echo{len(pages)}.ipynb", [cell])
                page = new_page(browser, init_script=script)
                open_and_run_all(page, server, notebook)  # the first run warms kernel and page
                one_run(page, server, notebook, fresh=False)
                pages[variant] = (page, notebook)
            for kind in ("warm", "fresh"):
                for _ in range(args.runs):
                    for variant, (page, notebook) in pages.items():
                        run = one_run(page, server, notebook, fresh=kind == "fresh")
                        results[kind + variant].append(run)
                        print(f"# {kind}{variant}: {run}", file=sys.stderr, flush=True)
        finally:
            browser.close()
            stop_server(server.process)
    print(f"\nmachine: {os.cpu_count()} cores; JupyterLab, Chromium's fake camera (640x480); "
          f"{args.runs} runs each\n")
    print_table(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
