"""Start and stop `python app.py` in a subprocess on a free port (shared by the app and browser tests
and docs/take_screenshot.py)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
#: The browser that tests/support/app_browser.py drives (Debian's chromium; Playwright cannot download one here).
CHROMIUM = os.environ.get("NST_CHROMIUM", "/usr/bin/chromium")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(port: int, *extra: str, env: dict | None = None, inherit_hf: bool = True) -> subprocess.Popen:
    """`python app.py --port PORT ...`; its output goes to a temp file (a pipe nobody reads
    would fill up and block the server), readable with :func:`server_log`. With ``inherit_hf``
    False the server sees no HF_* variables of ours, only those in ``env``."""
    base = {k: v for k, v in os.environ.items() if inherit_hf or not k.startswith(("HF_", "HUGGINGFACE_"))}
    log = tempfile.NamedTemporaryFile("w+", prefix="nst-app-", suffix=".log", delete=False)
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "app.py"), "--port", str(port), *extra],
        cwd=ROOT,
        env={**base, "GRADIO_ANALYTICS_ENABLED": "False", **(env or {})},
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    proc.log_path = log.name
    log.close()
    return proc


def server_log(proc: subprocess.Popen) -> str:
    return Path(proc.log_path).read_text(errors="replace")


def wait_until_serving(proc: subprocess.Popen, url: str, timeout: float = 180) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"app.py exited with {proc.returncode}:\n{server_log(proc)}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"app.py did not serve {url} within {timeout} s")


def stop_server(proc: subprocess.Popen) -> str:
    """Stop the server; returns (and deletes) its log."""
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    out = server_log(proc)
    os.unlink(proc.log_path)
    return out
