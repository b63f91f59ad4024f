"""Peak memory of `nst` in a fresh interpreter: :func:`peak_kib` runs this module as a script.

    python -m tests.support.peak_rss checkpoint info seed.safetensors

As a script it runs `nst ARGS...` in its own process and prints ``peak_kib=N exit=C`` as the last
line of stderr; `nst`'s own output is left as it is.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def peak_kib(*argv: str) -> tuple[int, int, str]:
    """(peak RSS in KiB, exit code, stderr) of `nst ARGV` in a fresh interpreter."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NST_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "tests.support.peak_rss", *argv],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    match = re.search(r"peak_kib=(\d+) exit=(\d+)", proc.stderr)
    assert match, proc.stderr
    return int(match[1]), int(match[2]), proc.stderr


if __name__ == "__main__":
    from nst_core.cli import main
    from nst_core.nst.memory import peak_rss

    code = main(sys.argv[1:])
    peak = peak_rss() // 1024  # this program's own peak (VmHWM), not the parent's it was started from
    print(f"peak_kib={peak} exit={code}", file=sys.stderr)
    sys.exit(code)
