"""Every docstring example in nst_core runs, so the examples a reader copies stay true.

Examples marked ``# doctest: +SKIP`` need the Hub or a download and are only shown.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil
import warnings

import pytest

import nst_core
from nst_core.model.weights import RandomWeightsWarning

MODULES = sorted(
    info.name
    for info in pkgutil.walk_packages(nst_core.__path__, "nst_core.")
    if not info.name.endswith("__main__")  # running it is running the CLI
)


def _examples(module_name: str) -> int:
    module = importlib.import_module(module_name)
    return sum(len(test.examples) for test in doctest.DocTestFinder().find(module))


@pytest.mark.parametrize("module_name", MODULES)
def test_docstring_examples_run(module_name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # examples that write files write them here
    module = importlib.import_module(module_name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomWeightsWarning)  # examples use random:N weights on purpose
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples in {module_name} failed (see above)"


def test_the_public_modules_have_examples():
    """The examples are found at all (a finder that sees none would make the test above vacuous)."""
    assert sum(_examples(name) for name in MODULES) >= 100
