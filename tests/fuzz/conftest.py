"""Hypothesis profiles for the fuzz suite.

``ci`` (default, fast) and ``deep`` (NST_FUZZ_PROFILE=deep, many more examples).
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

# No example database: it would write .hypothesis/ into the checkout on every run.
_COMMON = dict(
    deadline=None,
    database=None,
    derandomize=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.register_profile("ci", max_examples=int(os.environ.get("NST_FUZZ_EXAMPLES", "60")), **_COMMON)
settings.register_profile("deep", max_examples=int(os.environ.get("NST_FUZZ_EXAMPLES", "2000")), **_COMMON)
settings.load_profile(os.environ.get("NST_FUZZ_PROFILE", "ci"))
