"""Shared by the browser tests: Debian's Chromium driven by Playwright (the `browser`
fixture, imported by each test module), and screenshots."""

from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

SHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def browser():
    assert Path(CHROMIUM).exists(), "Debian's chromium package is missing (make test installs it)"
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"],
        )
        yield browser
        browser.close()


def shot(page, name: str) -> None:
    """A full-page screenshot named by page and width. Nothing may scroll sideways: every
    page must work at 375 px (wide parts such as tables scroll inside their own box)."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    width = page.viewport_size["width"]
    page.screenshot(path=str(SHOTS / f"{name}-{width}.png"), full_page=True)
    assert page.evaluate("document.documentElement.scrollWidth") <= width
