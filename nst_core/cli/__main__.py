"""`python -m nst_core.cli`: the `nst` command (torchrun can launch it as a module)."""

import sys

from nst_core.cli import main

sys.exit(main())
