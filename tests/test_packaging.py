"""pyproject.toml alone says how geosr installs: its package list covers every package folder."""
from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_pyproject_lists_every_package_and_maps_the_cli():
    tomllib = pytest.importorskip("tomllib")
    from setuptools import find_packages

    conf = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(conf["packages"])
    found = set(find_packages(where=str(ROOT), include=["geosr", "geosr.*"]))
    found |= {"geosr_cli"} | {"geosr_cli." + p for p in find_packages(where=str(ROOT / "cli"))}
    assert listed == found
    assert conf["package-dir"] == {"geosr_cli": "cli"}
    assert not (ROOT / "setup.py").exists()
