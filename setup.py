"""Packages are discovered here because the click front end lives in ``cli/`` but installs as
``geosr_cli`` (a package-dir mapping that pyproject's static find cannot express)."""
from setuptools import find_packages, setup

_core = find_packages(include=["geosr", "geosr.*"])
_cli = ["geosr_cli"] + ["geosr_cli." + p for p in find_packages(where="cli")]

setup(packages=_core + _cli, package_dir={"geosr_cli": "cli"})
