"""Bundled weights of arbitrary-scale networks: one file for every scale, and the default model
for non-integer scales (file names only, no torch)."""
from __future__ import annotations

import pytest

from geosr.models import bundled
from geosr.models.bundled import (bundled_any_scale_name, bundled_file_name, bundled_weights,
                                  default_model_name, list_bundled)


@pytest.fixture
def weights_dir(monkeypatch, tmp_path):
    monkeypatch.setattr(bundled, "WEIGHTS_DIR", tmp_path)
    monkeypatch.setattr(bundled, "_package_dirs", lambda: ())  # no installed weights packages

    def add(name: str) -> None:
        (tmp_path / name).write_bytes(b"")

    return add


def test_one_file_serves_every_scale(weights_dir):
    weights_dir(bundled_any_scale_name("LIIF", bands=3))
    weights_dir(bundled_file_name("edsr-baseline", scale=2, bands=3))
    rows = {(b["arch"], b["scale"], b["bands"]) for b in list_bundled()}
    assert rows == {("liif", None, 3), ("edsr-baseline", 2, 3)}
    for s in (2, 2.5, 3, 7.25):
        assert bundled_weights("liif", scale=s, bands=3).name == "liif_3b.safetensors"
    assert bundled_weights("liif", scale=2.5, bands=1) is None
    assert bundled_weights("edsr-baseline", scale=2.5, bands=3) is None  # fixed-scale: x2 only


def test_default_model_for_non_integer_scales(weights_dir):
    weights_dir(bundled_file_name("edsr-baseline", scale=2, bands=3))
    assert default_model_name(2.5) == "bicubic"  # nothing arbitrary-scale bundled
    assert default_model_name(2) == "edsr-baseline"
    weights_dir(bundled_any_scale_name("liif", bands=3))
    assert default_model_name(2.5) == "liif"
    assert default_model_name(2) == "edsr-baseline"  # a fixed-scale network first
    assert default_model_name(8) == "liif"  # no fixed-scale x8 ships
    weights_dir(bundled_any_scale_name("liif-rdn", bands=3))
    assert default_model_name(2.5) == "liif-rdn"  # the better network
    # non-8-bit data: the 1-band variant decides, as for fixed-scale weights
    assert default_model_name(2.5, n_bands=1, dtype="uint16") == "liif-rdn"
