"""The app in a real headless Chromium: upload two images, run, wait for the comparison.

Uses Debian's /usr/bin/chromium through Playwright (`.ci/run` installs both). Saves the page
to docs/screenshot.png, the picture README shows. Random VGG-19 weights (none can be
downloaded here), so the screenshot also shows the app's random-weights banner.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from app_server import ROOT, free_port, start_server, stop_server, wait_until_serving

CHROMIUM = os.environ.get("NST_CHROMIUM", "/usr/bin/chromium")
SCREENSHOT = ROOT / "docs" / "screenshot.png"
CONTENT = ROOT / "examples" / "content" / "lakeside.jpg"
STYLE = ROOT / "examples" / "style" / "swirls.jpg"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium)"),
]
sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright Python package is not installed")


@pytest.fixture(scope="module")
def app_url():
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    proc = start_server(port, "--weights", "random")
    try:
        wait_until_serving(proc, url)
        yield url
    finally:
        stop_server(proc)


@pytest.fixture
def page(app_url):
    """A fresh headless-Chromium page showing the app."""
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
        )
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(app_url, wait_until="networkidle")
            yield page
        finally:
            browser.close()


def set_number(page, elem_id: str, value: int) -> None:
    field = page.locator(f"#{elem_id} input[type=number]")
    field.fill(str(value))
    field.press("Enter")


def test_upload_run_and_screenshot(page, tmp_path):
    assert CONTENT.exists() and STYLE.exists(), "bundled examples are missing"
    # The random-weights warning is on screen before anything runs.
    assert page.locator("#weights-banner").is_visible()
    assert "results are not meaningful" in page.locator("#weights-banner").inner_text()

    page.locator("#content input[type=file]").set_input_files(str(CONTENT))
    page.locator("#style-files input[type=file]").set_input_files(str(STYLE))
    page.locator("#content img").first.wait_for(state="visible", timeout=30_000)
    set_number(page, "size", 128)
    set_number(page, "iterations", 25)

    page.locator("#run").click()
    status = page.locator("#status")
    sync_api.expect(status).to_contain_text("done", timeout=240_000)

    # Both halves of the comparison slider and the table are filled in.
    slider_images = page.locator("#slider img")
    sync_api.expect(slider_images).to_have_count(2, timeout=30_000)
    for i in range(2):
        page.wait_for_function(
            "([el]) => el.complete && el.naturalWidth > 0", arg=[slider_images.nth(i).element_handle()], timeout=30_000
        )
    summary = page.locator("#summary").inner_text()
    assert "speedup vs dense" in summary and "SSIM" in summary

    page.locator("#slider").scroll_into_view_if_needed()
    page.evaluate("window.scrollTo(0, 0)")
    shot = tmp_path / "screenshot.png"
    page.screenshot(path=str(shot), full_page=True)
    SCREENSHOT.parent.mkdir(exist_ok=True)
    shutil.copyfile(shot, SCREENSHOT)  # only a finished run replaces the README's picture
    assert SCREENSHOT.stat().st_size > 50_000


def test_a_bad_upload_shows_a_readable_error_on_the_page(page, tmp_path):
    not_an_image = tmp_path / "notes.png"
    not_an_image.write_text("this is not an image\n")
    page.locator("#content input[type=file]").set_input_files(str(not_an_image))
    page.locator("#style-files input[type=file]").set_input_files(str(STYLE))
    page.locator("#style-files").get_by_text("swirls").wait_for(timeout=30_000)
    page.locator("#run").click()
    toast = page.locator("[data-testid='toast-body']").first
    sync_api.expect(toast).to_contain_text("content image 'notes.png': not an image", timeout=60_000)
    assert "Traceback" not in toast.inner_text()
