"""Fixtures of the browser tests: a real ``airflow api-server`` and Debian's Chromium driven by Playwright.

Chromium comes from the OS (``apt-get install chromium``); Playwright never downloads a browser here.
A missing browser fails the tests rather than skipping them: CI must run them.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.harness.airflow_stack import AirflowStack

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from playwright.sync_api import Browser, Page

    from airflow_provider_oes.testing.simulator import OESSimulator

REPO_ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO_ROOT / "artifacts" / "ui"
CHROMIUM = os.environ.get("OES_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: Every Playwright wait (explicit waits only, no sleeps) gives up after this many milliseconds.
WAIT_MS = 30_000


@pytest.fixture(scope="module")
def airflow_ui(oes_simulator_session: OESSimulator) -> Iterator[AirflowStack]:
    """A fresh Airflow (the harness's PostgreSQL, all-admins simple auth, test-connection enabled) with its API server up.

    :param oes_simulator_session: started first, so the API server can reach it when a connection is tested.
    """
    with AirflowStack(env={"AIRFLOW__CORE__TEST_CONNECTION": "Enabled"}) as stack:
        stack.migrate()
        stack.start_api_server()
        yield stack


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Headless Debian Chromium under Playwright."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium not found at {CHROMIUM}: `apt-get install -y chromium` (or set OES_CHROMIUM)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A new browser page; its last state is saved to ``artifacts/ui/<test>-last.png`` after the test."""
    context = browser.new_context(viewport={"width": 1400, "height": 1100})
    context.set_default_timeout(WAIT_MS)
    new_page = context.new_page()
    try:
        yield new_page
    finally:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        try:
            new_page.screenshot(path=str(screenshot_path(request.node.name, "last")), full_page=True)
        finally:
            context.close()


def screenshot_path(test_name: str, what: str) -> Path:
    """Where a test's screenshot goes: ``artifacts/ui/<test>-<what>.png`` (made filename-safe)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS / (re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{test_name}-{what}") + ".png")


@pytest.fixture
def screenshot(page: Page, request: pytest.FixtureRequest) -> Callable[[str], Path]:
    """Return ``save(what)``: saves the full page to ``artifacts/ui/<test>-<what>.png`` and returns the path."""

    def save(what: str) -> Path:
        path = screenshot_path(request.node.name, what)
        page.screenshot(path=str(path), full_page=True)
        return path

    return save
