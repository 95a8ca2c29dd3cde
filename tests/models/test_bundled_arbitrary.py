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


def _any_scale_card(tmp_path, arch: str, per_scale: dict[str, dict[str, float]]) -> None:
    """A sidecar card recording one table per factor, as ``ship`` writes an LIIF's."""
    import json

    ev = {f: {k: {"psnr": v} for k, v in sets.items()} for f, sets in per_scale.items()}
    name = bundled_any_scale_name(arch, bands=3).replace(".safetensors", ".json")
    (tmp_path / name).write_text(json.dumps({"arch": arch, "metrics": {"eval": ev}}))


def test_an_arbitrary_scale_network_is_the_default_where_it_measures_best(weights_dir, tmp_path):
    import json

    weights_dir(bundled_file_name("edsr-baseline", scale=3, bands=3))
    (tmp_path / bundled_file_name("edsr-baseline", scale=3, bands=3).replace(
        ".safetensors", ".json")).write_text(json.dumps(
            {"arch": "edsr-baseline", "metrics": {"eval": {
                "set5": {"psnr": 32.8}, "neon": {"psnr": 27.47}}}}))
    weights_dir(bundled_any_scale_name("liif", bands=3))
    # better on Set5, worse on the aerial tiles at x3: the cheaper fixed-scale network stays
    _any_scale_card(tmp_path, "liif", {"x3": {"set5": 33.0, "neon": 27.43},
                                       "x4": {"set5": 99.0, "neon": 99.0}})
    assert bundled.measured_psnr(tmp_path / "liif_3b.safetensors", scale=3) == {
        "set5": 33.0, "neon": 27.43}
    assert default_model_name(3) == "edsr-baseline"
    # better on every set at this factor (the x4 table does not count): the LIIF
    _any_scale_card(tmp_path, "liif", {"x3": {"set5": 33.0, "neon": 27.5},
                                       "x4": {"set5": 1.0, "neon": 1.0}})
    assert default_model_name(3) == "liif"
    # no table at this factor: unmeasured, so the fixed-scale network first
    _any_scale_card(tmp_path, "liif", {"x4": {"set5": 99.0, "neon": 99.0}})
    assert default_model_name(3) == "edsr-baseline"


def test_non_integer_defaults_follow_the_measured_tables_too(weights_dir, tmp_path):
    for arch in ("liif", "metasr"):
        weights_dir(bundled_any_scale_name(arch, bands=3))
    assert default_model_name(2.5) == "liif"  # unmeasured: the preference
    _any_scale_card(tmp_path, "liif", {"x2.5": {"set5": 34.6, "neon": 28.76}})
    _any_scale_card(tmp_path, "metasr", {"x2.5": {"set5": 34.0, "neon": 28.8}})
    assert default_model_name(2.5) == "metasr"  # LIIF costs more and is not better everywhere
    _any_scale_card(tmp_path, "metasr", {"x2.5": {"set5": 34.0, "neon": 28.5}})
    assert default_model_name(2.5) == "liif"


def test_every_network_the_defaults_consider_has_a_cost():
    assert set(bundled.DEFAULT_PREFERENCE + bundled.ARBITRARY_PREFERENCE) <= set(
        bundled.COST_ORDER)
