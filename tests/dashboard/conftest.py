"""Debian's Chromium driven by Playwright, and the dashboard page open in it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, sync_playwright

from tests.conftest import ROOT

CHROMIUM = "/usr/bin/chromium"  # the system browser (.ci/run installs it); Playwright's own builds are never downloaded


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Module-scoped: Playwright's sync API holds an event loop running in the main thread while it is open,
    which the suite's asyncio tests cannot run beside."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh tab (its own sessionStorage) whose console errors, CSP violations and script errors fail the test."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda message: _keep_errors(message, problems))
    page.on("pageerror", lambda error: problems.append(f"script error: {error}"))
    try:
        yield page
    finally:
        context.close()
    assert problems == []


def _keep_errors(message: ConsoleMessage, problems: list[str]) -> None:
    # The browser logs the failed fetch of a refused token as a console error; the page shows it (asserted).
    if message.type == "error" and "status of 401" not in message.text:
        problems.append(message.text)


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """Where the tests leave screenshots: $GATEWAY_TEST_ARTIFACTS, else artifacts/ at the repository root."""
    path = Path(os.environ.get("GATEWAY_TEST_ARTIFACTS") or ROOT / "artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path
