"""Jupyter Notebook 7 + Chromium: the demo notebook works there too."""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser

from .conftest import Server
from .demo_flow import run_demo

pytestmark = pytest.mark.usefixtures("peer_network")


def test_demo_notebook_in_notebook7(notebook7: Server, browser: Browser) -> None:
    run_demo(notebook7, browser, "notebook7-echo")
