"""Packages: nst_core's own, plus the top-level hub_cards/ shipped as nst_core.hub_cards (the model
card templates `nst push` renders, so a wheel install can push). Everything else is in pyproject.toml."""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["nst_core", "nst_core.*"]), "nst_core.hub_cards"],
    package_dir={"nst_core.hub_cards": "hub_cards"},
)
