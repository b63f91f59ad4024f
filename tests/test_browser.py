"""The app in a real headless Chromium: upload two images, run, wait for the comparison, and
check that the page lays everything out readably at a laptop-sized window.

Uses Debian's /usr/bin/chromium through Playwright (`.ci/run` installs both). The screenshot goes
to a temporary folder: the README's picture is refreshed on purpose, with
`python docs/take_screenshot.py`, never as a side effect of a test run. Random VGG-19 weights
(none can be downloaded here), so the page also shows the app's random-weights banner.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from support.app_server import CHROMIUM, free_port, start_server, stop_server, wait_until_serving

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(),
        reason=f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium)",
    ),
]
sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright Python package is not installed")
from support.app_browser import CONTENT, STYLE, VIEWPORT, browser_page, run_comparison, save_screenshot  # noqa: E402

# Elements inside `root` whose content is larger than their box and that scroll or clip it
# (leaving out what is hidden from view, like the table's own column-sizing copy).
OVERFLOWING = """(root) => [root, ...root.querySelectorAll('*')].filter(el => {
    if (el.closest('[aria-hidden="true"]') || el.getClientRects().length === 0) return false;
    const style = getComputedStyle(el);
    const clips = v => ['auto', 'scroll', 'hidden'].includes(v);
    return (clips(style.overflowY) && el.scrollHeight > el.clientHeight + 1)
        || (clips(style.overflowX) && el.scrollWidth > el.clientWidth + 1);
}).map(el => el.tagName.toLowerCase() + '.' + el.className)"""

# Width in px of `text` set in `el`'s font (a placeholder's width, which scrollWidth ignores).
TEXT_WIDTH = """(el, text) => {
    const context = document.createElement('canvas').getContext('2d');
    context.font = getComputedStyle(el).font;
    return context.measureText(text).width;
}"""


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
    """A fresh headless-Chromium page showing the app at a laptop-sized window."""
    with browser_page(app_url, VIEWPORT) as page:
        yield page


def box(locator) -> dict:
    found = locator.bounding_box()
    assert found is not None, f"{locator} is not on the page"
    return found


def overlap(a: dict, b: dict) -> bool:
    return (
        a["x"] < b["x"] + b["width"]
        and b["x"] < a["x"] + a["width"]
        and a["y"] < b["y"] + b["height"]
        and b["y"] < a["y"] + a["height"]
    )


def test_upload_run_and_screenshot(page, tmp_path):
    assert CONTENT.exists() and STYLE.exists(), "bundled examples are missing"
    # The random-weights warning is on screen before anything runs.
    assert page.locator("#weights-banner").is_visible()
    assert "results are not meaningful" in page.locator("#weights-banner").inner_text()

    run_comparison(page)
    summary = page.locator("#summary").inner_text()
    assert "speedup vs dense" in summary and "SSIM" in summary

    # Both tables are shown whole: every row is rendered (the table only renders the rows in
    # view) and nothing in them scrolls or clips.
    assert page.locator("#summary [role=row].virtual-row").count() == 15
    assert "judge: style loss ratio vs dense" in summary and "perceptual distance to dense output" in summary
    assert (
        page.locator("#layers [role=row].virtual-row").count() == 15
    )  # conv1_1 .. conv5_3, what the seed preset needs
    assert "conv5_3" in page.locator("#layers").inner_text()
    for table in ("#summary", "#layers"):
        assert page.locator(table).evaluate(OVERFLOWING) == [], f"{table} scrolls or clips its content"

    shot = save_screenshot(page, tmp_path / "screenshot.png")
    with Image.open(shot) as image:
        assert image.format == "PNG" and image.width == VIEWPORT["width"]
    assert shot.stat().st_size > 50_000


def test_the_pruned_network_inputs_are_laid_out_readably(page):
    # The upload's label does not cover its upload icon.
    upload = page.locator("#pruned-upload")
    assert not overlap(
        box(upload.locator("[data-testid=block-label]")), box(upload.locator("[data-testid=upload-icon]"))
    )
    # The dropdown's text ends before its chevron (the field itself runs on under the chevron).
    choice = page.locator("#pruned-choice input[role=combobox]")
    text_end = (
        box(choice)["x"]
        + choice.evaluate("el => parseFloat(getComputedStyle(el).paddingLeft)")
        + choice.evaluate(TEXT_WIDTH, choice.input_value())
    )
    assert choice.input_value().startswith("fast: ~2x")
    assert text_end <= box(page.locator("#pruned-choice .icon-wrap"))["x"]
    # The Hub id box is one line wide enough for its placeholder (it wrapped mid-word in a narrow textarea).
    hub = page.locator("#hub-repo input[type=text]")
    placeholder = hub.get_attribute("placeholder")
    assert placeholder == "OWNER/NAME[:FILE][@REVISION]"
    assert hub.evaluate(TEXT_WIDTH, placeholder) < hub.evaluate("el => el.clientWidth")


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
