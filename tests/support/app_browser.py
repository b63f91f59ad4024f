"""Drive the app in headless Chromium: shared by tests/test_browser.py and docs/take_screenshot.py.

Playwright over Debian's /usr/bin/chromium (Playwright cannot download browsers here; `.ci/run`
installs chromium). The server is started with tests/support/app_server.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import Page, expect, sync_playwright

from nst_core.core.files import atomic_path

from .app_server import CHROMIUM, ROOT

CONTENT = ROOT / "examples" / "content" / "lakeside.jpg"
STYLE = ROOT / "examples" / "style" / "swirls.jpg"
#: A laptop-sized window: the page must show everything at this size without cutting a table.
VIEWPORT = {"width": 1440, "height": 1000}
#: What one run in the browser sets: small enough to finish in about a minute on a 2-core CPU.
SIZE, ITERATIONS = 128, 25


@contextmanager
def browser_page(url: str, viewport: dict = VIEWPORT) -> Iterator[Page]:
    """A fresh headless-Chromium page showing the app at ``url``."""
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            page = browser.new_page(viewport=viewport)
            page.goto(url, wait_until="networkidle")
            yield page
        finally:
            browser.close()


def set_number(page: Page, elem_id: str, value: int) -> None:
    field = page.locator(f"#{elem_id} input[type=number]")
    field.fill(str(value))
    field.press("Enter")


def run_comparison(
    page: Page, content: Path = CONTENT, style: Path = STYLE, size: int = SIZE, iterations: int = ITERATIONS
) -> None:
    """Upload the two images, set size and iterations (no time budget), click Run and wait until the status says
    done and both halves of the slider have loaded."""
    page.locator("#content input[type=file]").set_input_files(str(content))
    page.locator("#style-files input[type=file]").set_input_files(str(style))
    page.locator("#content img").first.wait_for(state="visible", timeout=30_000)
    set_number(page, "size", size)
    set_number(page, "iterations", iterations)
    set_number(page, "time-budget", 0)  # the iterations decide (the CPU default plans to a time instead)
    page.locator("#run").click()
    expect(page.locator("#status")).to_contain_text("done", timeout=240_000)
    slider_images = page.locator("#slider img")
    expect(slider_images).to_have_count(2, timeout=30_000)
    for i in range(2):
        page.wait_for_function(
            "([el]) => el.complete && el.naturalWidth > 0", arg=[slider_images.nth(i).element_handle()], timeout=30_000
        )


def save_screenshot(page: Page, path: Path) -> Path:
    """The whole page, scrolled to the top, as a PNG at ``path`` (written atomically)."""
    page.evaluate("window.scrollTo(0, 0)")
    with atomic_path(path) as tmp:
        page.screenshot(path=str(tmp), type="png", full_page=True)
    return path
