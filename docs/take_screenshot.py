"""Refresh docs/screenshot.png, the picture README.md and docs/app.md show.

    python docs/take_screenshot.py                      # random weights, as the browser test runs
    python docs/take_screenshot.py --weights caffe -o /tmp/app.png

Starts `python app.py` on a free port, opens it in headless Chromium (Debian's
/usr/bin/chromium through Playwright), runs the bundled examples `lakeside.jpg` + `swirls.jpg`
at 128 px and 25 iterations, and saves the whole page. It drives the app exactly as
tests/test_browser.py does (same helpers); the test suite itself only writes to a temporary
folder, so refreshing that picture is always this explicit step.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from support.app_browser import browser_page, run_comparison, save_screenshot  # noqa: E402
from support.app_server import free_port, server_log, start_server, stop_server, wait_until_serving  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        default=ROOT / "docs" / "screenshot.png",
        help="where to save (default docs/screenshot.png)",
    )
    parser.add_argument("--weights", default="random", help="the app's --weights (default random: nothing to download)")
    args = parser.parse_args(argv)

    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    server = start_server(port, "--weights", args.weights)
    try:
        wait_until_serving(server, url)
        with browser_page(url) as page:
            run_comparison(page)
            save_screenshot(page, args.output)
    except Exception:
        print(server_log(server), file=sys.stderr)
        raise
    finally:
        stop_server(server)
    print(f"saved {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
