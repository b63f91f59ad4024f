"""Run `nst ARGS...` in this process and print its peak RSS in KiB (for memory bounds measured in a subprocess).

    python -m tests.fuzz.peak_rss checkpoint info seed.safetensors

Prints ``peak_kib=N exit=C`` as the last line of stderr; `nst`'s own output is left as it is.
"""

from __future__ import annotations

import sys

from nst_core.cli import main
from nst_core.nst.memory import peak_rss

if __name__ == "__main__":
    code = main(sys.argv[1:])
    peak = peak_rss() // 1024  # this program's own peak (VmHWM), not the parent's it was started from
    print(f"peak_kib={peak} exit={code}", file=sys.stderr)
    sys.exit(code)
