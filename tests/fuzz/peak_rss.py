"""Run `nst ARGS...` in this process and print its peak RSS in KiB (for memory bounds measured in a subprocess).

    python -m tests.fuzz.peak_rss checkpoint info seed.safetensors

Prints ``peak_kib=N exit=C`` as the last line of stderr; `nst`'s own output is left as it is.
"""

from __future__ import annotations

import resource
import sys

from nst_core.cli import main

if __name__ == "__main__":
    code = main(sys.argv[1:])
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(f"peak_kib={peak} exit={code}", file=sys.stderr)
    sys.exit(code)
