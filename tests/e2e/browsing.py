"""Screenshots of pages, shared by the browser tests."""

from pathlib import Path

SHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"


def shot(page, name: str) -> None:
    """A full-page screenshot named by page and width. Nothing may scroll sideways: every
    page must work at 375 px (wide parts such as tables scroll inside their own box)."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    width = page.viewport_size["width"]
    page.screenshot(path=str(SHOTS / f"{name}-{width}.png"), full_page=True)
    assert page.evaluate("document.documentElement.scrollWidth") <= width
